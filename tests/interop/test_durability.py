"""Restarts: SIGTERM (clean) and SIGKILL (kill -9), judged by real clients."""

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING
from confluent_kafka.admin import ConfigResource, ResourceType

from interop_helpers import (
    CLIENT_TIMEOUT_S,
    admin,
    assert_delivered,
    consume,
    create_topic,
    kcat,
    partition_count,
    produce,
    producer,
    topic_names,
    watermarks,
)


def acked_by_partition(reports):
    """{partition: {offset: (key, value)}} of the successful deliveries."""
    out = {}
    for err, p, off, key, value in reports:
        if err is None:
            assert off not in out.setdefault(p, {}), f"offset {off} acknowledged twice on partition {p}"
            out[p][off] = (key, value)
    return out


def assert_present(bootstrap, topic, acked):
    """Every acknowledged record is readable at its acknowledged offset."""
    for p, records in acked.items():
        if not records:
            continue
        last = max(records)
        got = consume(bootstrap, topic, p, OFFSET_BEGINNING, last + 1)
        stored = {m.offset(): (m.key(), m.value()) for m in got}
        missing = [o for o in records if o not in stored]
        assert not missing, f"partition {p}: {len(missing)} acknowledged offsets missing, first {missing[:5]}"
        wrong = [o for o in records if stored[o] != records[o]]
        assert not wrong, f"partition {p}: offset {wrong[0]} holds {stored[wrong[0]]}, acknowledged {records[wrong[0]]}"


def test_2000_acks_all_records_survive_sigterm_restart_at_same_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    msgs = [{"key": b"key-%d" % i, "value": b"value-%d" % i} for i in range(2000)]
    reports = produce(producer(broker.bootstrap, acks="all"), topic, msgs)
    assert_delivered(reports)
    acked = acked_by_partition(reports)
    assert sum(len(r) for r in acked.values()) == 2000

    broker.restart()  # SIGTERM, exit code 0 checked, same data dir
    assert partition_count(broker.bootstrap, topic) == 3
    assert_present(broker.bootstrap, topic, acked)
    for p, records in acked.items():
        assert watermarks(broker.bootstrap, topic, p) == (0, len(records))

    # The log continues where it stopped.
    more = produce(producer(broker.bootstrap, acks="all"), topic, [{"partition": 0, "value": b"after"}])
    assert_delivered(more)
    assert more[0][2] == len(acked.get(0, {}))


def test_acked_records_survive_kill9_after_flush(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    msgs = [{"key": b"k%d" % i, "value": b"kill9-%d" % i} for i in range(2000)]
    reports = produce(producer(broker.bootstrap, acks="all"), topic, msgs)
    assert_delivered(reports)
    acked = acked_by_partition(reports)

    broker.restart(kill=True)  # SIGKILL: no flush, no checkpoint, no clean-shutdown marker
    assert_present(broker.bootstrap, topic, acked)
    for p, records in acked.items():
        assert watermarks(broker.bootstrap, topic, p) == (0, len(records))


def test_acked_records_survive_kill9_while_producing(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, acks="all", linger_ms=2, message_timeout_ms=10000,
                 retries=0, socket_timeout_ms=5000)
    reports = []
    ok = [0]

    def cb(err, msg):
        reports.append((err, msg.partition(), msg.offset(), msg.key(), msg.value()))
        ok[0] += err is None

    i = 0
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    # Keep producing; kill -9 once 1000 records are acknowledged.
    while ok[0] < 1000:
        assert time.monotonic() < deadline, f"only {len(reports)} deliveries within {CLIENT_TIMEOUT_S}s"
        try:
            p.produce(topic, key=b"k%d" % i, value=b"live-%d" % i, on_delivery=cb)
            i += 1
        except BufferError:
            pass
        p.poll(0.001)
    broker.kill()
    # Collect what was in flight (acknowledged before the kill, or failed).
    p.purge()
    p.flush(15)
    assert sum(1 for r in reports if r[0] is None) >= 1000
    acked = acked_by_partition(reports)

    broker.start()
    assert_present(broker.bootstrap, topic, acked)


def test_topic_configs_and_partition_counts_survive_restart(broker, topic):
    t6, t1 = topic + "-six", topic + "-one"
    create_topic(broker.bootstrap, t6, partitions=6, config={"retention.ms": "3600000", "max.message.bytes": "65536"})
    create_topic(broker.bootstrap, t1, partitions=1)
    for kill in (False, True):
        broker.restart(kill=kill)
        assert partition_count(broker.bootstrap, t6) == 6, f"after {'kill -9' if kill else 'SIGTERM'}"
        assert partition_count(broker.bootstrap, t1) == 1
        fs = admin(broker.bootstrap).describe_configs([ConfigResource(ResourceType.TOPIC, t6)])
        (f,) = fs.values()
        configs = {k: v.value for k, v in f.result(timeout=CLIENT_TIMEOUT_S).items()}
        assert configs.get("retention.ms") == "3600000", configs
        assert configs.get("max.message.bytes") == "65536", configs


def test_deleted_topic_stays_deleted_after_restart(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": 0, "value": b"x"}]))
    admin(broker.bootstrap).delete_topics([topic])[topic].result(timeout=CLIENT_TIMEOUT_S)
    broker.restart()
    assert topic not in topic_names(broker.bootstrap)
    assert broker.partition_dirs(topic) == []


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_100k_keyed_lz4_and_zstd_messages_replay_in_order_across_restarts(broker, topic, kcat_bin):
    """The issue's end-to-end scenario: 3 partitions, acks=all, lz4 + zstd,
    consume everything in per-partition order, then SIGTERM restart and
    kill -9 restart, replaying everything from offset 0 each time."""
    create_topic(broker.bootstrap, topic, partitions=3)
    expected = {0: [], 1: [], 2: []}  # per partition, in acknowledged-offset order
    n = 0
    for codec in ("lz4", "zstd"):
        msgs = [{"key": b"key-%06d" % (i % 5000), "value": b"%s-%06d" % (codec.encode(), i)}
                for i in range(n, n + 50_000)]
        n += 50_000
        reports = produce(producer(broker.bootstrap, acks="all", compression_type=codec, linger_ms=20), topic, msgs)
        assert_delivered(reports)
        for _err, p, off, key, value in sorted(reports, key=lambda r: (r[1], r[2])):
            assert off == len(expected[p]), f"partition {p}: offset {off}, expected {len(expected[p])}"
            expected[p].append((key, value))
    assert sum(len(v) for v in expected.values()) == 100_000

    def replay(label):
        for p, records in expected.items():
            got = consume(broker.bootstrap, topic, p, OFFSET_BEGINNING, len(records), timeout=120)
            assert len(got) == len(records)
            mismatch = next((i for i, m in enumerate(got)
                             if (m.offset(), m.key(), m.value()) != (i, *records[i])), None)
            assert mismatch is None, f"{label}: partition {p} differs at offset {mismatch}"
        # And the old client generation agrees on the count and order.
        r = kcat(kcat_bin, broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                 "-f", "%p %o\\n", timeout=180)
        seen = {0: 0, 1: 0, 2: 0}
        for line in r.stdout.splitlines():
            p, o = map(int, line.split())
            assert o == seen[p], f"{label}: kcat saw partition {p} offset {o}, expected {seen[p]}"
            seen[p] += 1
        assert seen == {p: len(v) for p, v in expected.items()}, f"{label}: kcat counts {seen}"

    replay("before restart")
    broker.restart()
    replay("after SIGTERM restart")
    broker.restart(kill=True)
    replay("after kill -9 restart")
