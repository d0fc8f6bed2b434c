"""Consumer groups, judged by real clients: confluent-kafka (librdkafka 2.16)
and kafka-python form groups against strom, split partitions, take over
from members that leave or die, and resume from committed offsets after
the broker restarts (SIGTERM and kill -9)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import NewPartitions

from interop_helpers import admin, assert_delivered, create_topic, produce, producer, wait_until

# A short initial rebalance delay keeps the tests quick; the default (3 s)
# is exercised by every other group that starts in this suite's brokers.
GROUP_CONFIG = {"group.initial.rebalance.delay.ms": 300}
SESSION_MS = 6000


def ck_consumer(bootstrap, group, name, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return Consumer(conf)


def produce_values(bootstrap, topic, values):
    reports = produce(producer(bootstrap), topic, [{"key": v, "value": v} for v in values])
    assert_delivered(reports)


def poll_once(consumers, seen):
    """Polls every consumer once (this also runs librdkafka's rebalances)."""
    for name, c in consumers.items():
        m = c.poll(0.1)
        if m is None:
            continue
        assert m.error() is None, f"{name}: {m.error()}"
        seen.setdefault(m.value(), []).append((name, m.partition(), m.offset()))


def poll_into(consumers, seen, want, timeout=30):
    """Polls every consumer until `want` distinct values were seen."""
    deadline = time.monotonic() + timeout
    while len(seen) < want:
        assert time.monotonic() < deadline, f"consumed {len(seen)} of {want} within {timeout}s"
        poll_once(consumers, seen)


def assigned(c):
    return sorted(tp.partition for tp in c.assignment())


def test_two_confluent_consumers_split_partitions_and_one_takes_over(start_broker, topic):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=6)
    produce_values(broker.bootstrap, topic, [b"a%d" % i for i in range(600)])

    c1 = ck_consumer(broker.bootstrap, "split", "c1")
    c2 = ck_consumer(broker.bootstrap, "split", "c2")
    for c in (c1, c2):
        c.subscribe([topic])
    seen = {}
    consumers = {"c1": c1, "c2": c2}
    wait_until(
        lambda: (poll_once(consumers, seen), assigned(c1) and assigned(c2))[1],
        timeout=30,
        what="both consumers to get partitions",
    )
    assert sorted(assigned(c1) + assigned(c2)) == list(range(6)), (assigned(c1), assigned(c2))
    poll_into(consumers, seen, 600)
    for c in (c1, c2):
        c.commit(asynchronous=False)

    c1.close()  # LeaveGroup: c2 must own all six partitions well within the session timeout
    wait_until(lambda: (c2.poll(0.1), assigned(c2) == list(range(6)))[1], timeout=SESSION_MS / 1000 + 5,
               what="c2 to own all 6 partitions")
    produce_values(broker.bootstrap, topic, [b"b%d" % i for i in range(60)])
    poll_into({"c2": c2}, seen, 660)
    c2.close()

    duplicates = {v: where for v, where in seen.items() if len(where) > 1}
    assert not duplicates, f"consumed more than once: {list(duplicates.items())[:5]}"
    assert len(seen) == 660


CRASHING_MEMBER = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "client.id": "doomed",
                  "session.timeout.ms": %d, "heartbeat.interval.ms": 500, "enable.auto.commit": False})
    c.subscribe([sys.argv[3]])
    while True:
        c.poll(0.1)
        if c.assignment():
            print("assigned", flush=True)
    """
    % SESSION_MS
)


def test_a_group_takes_up_partitions_added_while_it_runs(start_broker, topic):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_values(broker.bootstrap, topic, [b"before-%d" % i for i in range(20)])
    # librdkafka notices new partitions when it refreshes metadata (5 min by
    # default); the leader then rejoins and the group is given all of them.
    extra = {"topic.metadata.refresh.interval.ms": 1000}
    consumers = {n: ck_consumer(broker.bootstrap, "grows", n, **extra) for n in ("c1", "c2")}
    for c in consumers.values():
        c.subscribe([topic])
    seen = {}
    poll_into(consumers, seen, 20)

    fs = admin(broker.bootstrap).create_partitions([NewPartitions(topic, 4)])
    fs[topic].result(timeout=30)
    wait_until(
        lambda: (poll_once(consumers, seen),
                 sorted(p for c in consumers.values() for p in assigned(c)) == [0, 1, 2, 3])[1],
        timeout=30,
        what="the group assigned all 4 partitions",
    )
    reports = produce(producer(broker.bootstrap), topic,
                      [{"partition": p, "value": b"after-%d" % p} for p in range(4)])
    assert_delivered(reports)
    poll_into(consumers, seen, 24)
    assert {v for v in seen if v.startswith(b"after")} == {b"after-%d" % p for p in range(4)}
    for c in consumers.values():
        c.close()


def test_a_member_that_dies_is_expired_and_its_partitions_move(start_broker, topic, tmp_path):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=6)
    survivor = ck_consumer(broker.bootstrap, "crash", "survivor")
    survivor.subscribe([topic])
    script = tmp_path / "member.py"
    script.write_text(CRASHING_MEMBER)
    doomed = subprocess.Popen([sys.executable, str(script), broker.bootstrap, "crash", topic],
                              stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (survivor.poll(0.1), 0 < len(assigned(survivor)) < 6)[1], timeout=30,
                   what="the group to split between the two members")
        os.kill(doomed.pid, signal.SIGKILL)  # no LeaveGroup: only the session timeout can tell
        doomed.wait(10)
        wait_until(lambda: (survivor.poll(0.1), assigned(survivor) == list(range(6)))[1],
                   timeout=SESSION_MS / 1000 + 10, what="the survivor to own all 6 partitions")
    finally:
        if doomed.poll() is None:
            doomed.kill()
        survivor.close()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_committed_offsets_survive_a_broker_restart(start_broker, topic, how):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_values(broker.bootstrap, topic, [b"x%d" % i for i in range(300)])

    c = ck_consumer(broker.bootstrap, "resume", "first")
    c.subscribe([topic])
    seen = {}
    poll_into({"first": c}, seen, 300)
    committed = c.commit(asynchronous=False)
    assert all(tp.error is None for tp in committed), committed
    c.close()
    expected = {tp.partition: tp.offset for tp in committed}
    assert sum(expected.values()) == 300, expected

    broker.restart(kill=(how == "kill9"))
    produce_values(broker.bootstrap, topic, [b"y%d" % i for i in range(30)])

    c = ck_consumer(broker.bootstrap, "resume", "second")
    got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
    assert {tp.partition: tp.offset for tp in got} == expected
    c.subscribe([topic])
    after = {}
    poll_into({"second": c}, after, 30)
    # Nothing below the committed offsets is read again.
    assert all(v.startswith(b"y") for v in after), sorted(after)[:5]
    for value, where in after.items():
        for _, partition, offset in where:
            assert offset >= expected[partition], (value, partition, offset)
    c.close()


def test_commit_metadata_and_group_admin_round_trip(start_broker, topic):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_values(broker.bootstrap, topic, [b"m%d" % i for i in range(10)])
    c = ck_consumer(broker.bootstrap, "admin-group", "solo")
    c.subscribe([topic])
    poll_into({"solo": c}, {}, 10)
    c.commit(offsets=[TopicPartition(topic, 0, 3, metadata="checkpoint-A")], asynchronous=False)
    (tp,) = c.committed([TopicPartition(topic, 0)], timeout=20)
    assert (tp.offset, tp.metadata) == (3, "checkpoint-A")

    a = admin(broker.bootstrap)
    listed = {g.group_id: g.state for g in a.list_consumer_groups(request_timeout=20).result().valid}
    assert listed.get("admin-group") == ConsumerGroupState.STABLE
    desc = a.describe_consumer_groups(["admin-group"])["admin-group"].result()
    assert desc.state == ConsumerGroupState.STABLE
    (member,) = desc.members
    assert member.client_id == "solo"
    assert sorted(tp.partition for tp in member.assignment.topic_partitions) == [0, 1]

    # A group with members cannot be deleted; an empty one can, with its offsets.
    with pytest.raises(Exception) as busy:
        a.delete_consumer_groups(["admin-group"])["admin-group"].result()
    assert "NON_EMPTY_GROUP" in str(busy.value)
    c.close()
    a.delete_consumer_groups(["admin-group"])["admin-group"].result()
    assert "admin-group" not in {g.group_id for g in a.list_consumer_groups().result().valid}
    fresh = ck_consumer(broker.bootstrap, "admin-group", "again")
    (tp,) = fresh.committed([TopicPartition(topic, 0)], timeout=20)
    assert tp.offset < 0, "offsets of a deleted group are gone"
    fresh.close()


def test_deleting_a_topic_drops_its_committed_offsets(start_broker, topic):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=1)
    c = ck_consumer(broker.bootstrap, "topic-gone", "solo")
    c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    c.close()
    a = admin(broker.bootstrap)
    a.delete_topics([topic])[topic].result()
    create_topic(broker.bootstrap, topic, partitions=1)
    c = ck_consumer(broker.bootstrap, "topic-gone", "solo")
    (tp,) = c.committed([TopicPartition(topic, 0)], timeout=20)
    assert tp.offset < 0
    c.close()


# ------------------------------------------------------------------ kafka-python


def kp_consumer(bootstrap, group, topic, name):
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=name,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=500,
        request_timeout_ms=20000,
    )


def kp_poll_into(consumers, seen, want, timeout=30):
    deadline = time.monotonic() + timeout
    while len(seen) < want:
        assert time.monotonic() < deadline, f"consumed {len(seen)} of {want} within {timeout}s"
        for name, c in consumers.items():
            for tp, records in c.poll(timeout_ms=100).items():
                for r in records:
                    seen.setdefault(r.value, []).append((name, tp.partition, r.offset))


class KpMember:
    """A kafka-python group member polling in its own thread, as applications
    run it. kafka-python 3.0.12 must not be polled round-robin with another
    consumer from one thread: its IO thread finishes JoinGroup/SyncGroup in
    the background, and a join that completes while the application is not
    inside poll() is thrown away (`ensure_active_group_async` starts a new
    join when `_join_task.is_done`, without reading its result). The next
    poll sends JoinGroup again; from the leader that forces a rebalance (in
    Kafka's coordinator as in strom's), so two members polled alternately
    with short timeouts never settle. A one-line client fix (reuse a join
    task that finished without error) makes them settle in one rebalance."""

    def __init__(self, bootstrap, group, topic, name, seen, lock):
        self.name = name
        self.seen, self.lock = seen, lock
        self.partitions = set()
        self.error = None
        self._stop = threading.Event()
        self._consumer = kp_consumer(bootstrap, group, topic, name)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self):
        c = self._consumer
        try:
            while not self._stop.is_set():
                batches = c.poll(timeout_ms=100)
                with self.lock:
                    for tp, records in batches.items():
                        for r in records:
                            self.seen.setdefault(r.value, []).append((self.name, tp.partition, r.offset))
                if batches:
                    c.commit()
                self.partitions = {tp.partition for tp in c.assignment()}
            c.commit()
        except Exception as e:  # surfaced by close()
            self.error = e
        finally:
            c.close()  # leaves the group

    def close(self):
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), f"{self.name} did not close"
        assert self.error is None, f"{self.name}: {self.error!r}"


def wait_consumed(seen, lock, want, timeout=30):
    def enough():
        with lock:
            return len(seen) >= want

    wait_until(enough, timeout=timeout, what=f"{want} distinct values consumed")


def test_kafka_python_consumers_split_take_over_and_resume(start_broker, topic):
    broker = start_broker(GROUP_CONFIG)
    create_topic(broker.bootstrap, topic, partitions=6)
    produce_values(broker.bootstrap, topic, [b"k%d" % i for i in range(600)])

    seen, lock = {}, threading.Lock()
    k1 = KpMember(broker.bootstrap, "kp-group", topic, "k1", seen, lock)
    k2 = KpMember(broker.bootstrap, "kp-group", topic, "k2", seen, lock)
    try:
        def split():
            a1, a2 = k1.partitions, k2.partitions
            return a1 and a2 and a1 | a2 == set(range(6)) and not a1 & a2

        wait_until(split, timeout=40, what="kafka-python consumers to split 6 partitions")
        wait_consumed(seen, lock, 600)
        k1.close()
        wait_until(lambda: k2.partitions == set(range(6)),
                   timeout=SESSION_MS / 1000 + 10, what="k2 to own all 6 partitions")
        produce_values(broker.bootstrap, topic, [b"l%d" % i for i in range(60)])
        wait_consumed(seen, lock, 660)
    finally:
        k1.close()
        k2.close()
    assert not {v: w for v, w in seen.items() if len(w) > 1}, "consumed more than once"

    broker.restart(kill=True)
    produce_values(broker.bootstrap, topic, [b"n%d" % i for i in range(12)])
    k3 = kp_consumer(broker.bootstrap, "kp-group", topic, "k3")
    after = {}
    kp_poll_into({"k3": k3}, after, 12, timeout=40)
    k3.close()
    assert sorted(after) == sorted(b"n%d" % i for i in range(12)), "resumed exactly after the committed offsets"

