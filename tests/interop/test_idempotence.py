"""Idempotent producers against a broker killed with SIGKILL mid-stream.

confluent-kafka (enable.idempotence=true) and kafka-python 3.x (idempotent
by default) each produce 100,000 small messages while the broker is killed
and restarted on the same port; the clients retry what was in flight, and
afterwards every message must be stored exactly once, in order per
partition.
"""

import threading
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING
from kafka import KafkaProducer

from interop_helpers import CLIENT_TIMEOUT_S, consume, create_topic, producer, watermarks

TOTAL = 100_000
PARTITIONS = 3
KILL_AFTER = 30_000  # acknowledged messages before the SIGKILL
DOWN_S = 0.5  # how long the broker stays down


def restart_on_same_port(b, kill=True):
    """Stop (SIGKILL by default) and start again on the same port, so the
    clients' connections to this broker come back without new metadata."""
    port = b.port
    b.kill() if kill else b.stop()
    time.sleep(DOWN_S)
    command = type(b).command.__get__(b)

    def same_port():
        cmd = command()
        i = cmd.index("--listen") + 1
        return cmd[:i] + [f"127.0.0.1:{port}"] + cmd[i + 1:]

    b.command = same_port
    b.start()
    assert b.port == port, f"restarted on port {b.port}, expected {port}"


class Killer(threading.Thread):
    """Kills and restarts the broker once `acked()` reaches KILL_AFTER.

    The thread then stays alive until `release()`: the broker it started
    runs under `setpriv --pdeathsig KILL`, which fires when the *thread*
    that spawned it ends.
    """

    def __init__(self, broker, acked):
        super().__init__(daemon=True)
        self.broker = broker
        self.acked = acked
        self.killed_at = None
        self.restarted = threading.Event()
        self.error = None
        self._release = threading.Event()

    def run(self):
        try:
            deadline = time.monotonic() + 60
            while self.acked() < KILL_AFTER:
                assert time.monotonic() < deadline, f"only {self.acked()} messages acknowledged within 60 s"
                time.sleep(0.005)
            self.killed_at = self.acked()
            restart_on_same_port(self.broker)
        except BaseException as e:  # reported by the test thread
            self.error = e
        finally:
            self.restarted.set()
        self._release.wait()

    def release(self):
        self._release.set()
        self.join(timeout=5)


@pytest.fixture
def killer(request):
    """Factory for Killer threads, released after the broker is stopped
    (this fixture is set up before `broker`, so it is torn down after it)."""
    threads = []

    def make(broker, acked):
        k = Killer(broker, acked)
        threads.append(k)
        k.start()
        return k

    yield make
    for k in threads:
        k.release()


def value(i):
    return b"%d" % i


def assert_exactly_once_in_order(b, topic):
    """Each partition p holds exactly the messages i with i % PARTITIONS == p, in order."""
    for p in range(PARTITIONS):
        want = [value(i) for i in range(p, TOTAL, PARTITIONS)]
        low, high = watermarks(b.bootstrap, topic, p)
        assert (low, high) == (0, len(want)), f"partition {p}: watermarks {(low, high)}, expected (0, {len(want)})"
        got = [m.value() for m in consume(b.bootstrap, topic, p, OFFSET_BEGINNING, len(want), timeout=60)]
        if got != want:
            seen, dups = set(), []
            for v in got:
                if v in seen:
                    dups.append(v)
                seen.add(v)
            first = next(i for i, (g, w) in enumerate(zip(got, want)) if g != w)
            raise AssertionError(
                f"partition {p}: {len(dups)} duplicates (first {dups[:3]}), first difference at offset "
                f"{first}: {got[first]!r} != {want[first]!r}"
            )


def test_confluent_idempotent_producer_survives_sigkill_without_duplicates(killer, broker, topic):
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = producer(
        broker.bootstrap,
        **{
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        },
    )
    acked = [0]
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[0] += 1

    k = killer(broker, lambda: acked[0])
    for i in range(TOTAL):
        while True:
            try:
                p.produce(topic, value=value(i), partition=i % PARTITIONS, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(90)
    assert k.restarted.wait(CLIENT_TIMEOUT_S), "kill/restart did not finish"
    assert k.error is None, f"kill/restart failed: {k.error!r}"
    assert k.killed_at is not None and k.killed_at < TOTAL, "the broker was not killed mid-stream"
    assert left == 0, f"{left} messages undelivered"
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[0]}"
    assert acked[0] == TOTAL
    assert_exactly_once_in_order(broker, topic)


def test_kafka_python_default_producer_survives_sigkill_without_duplicates(killer, broker, topic):
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    # kafka-python 3.x defaults: enable_idempotence=True, acks=all, retries=inf.
    p = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        client_id="strom-interop-kp",
        linger_ms=5,
        request_timeout_ms=10000,
        delivery_timeout_ms=60000,
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=500,
    )
    acked = [0]
    errors = []
    lock = threading.Lock()

    def ok(_):
        with lock:
            acked[0] += 1

    def failed(e):
        errors.append(e)

    k = killer(broker, lambda: acked[0])
    try:
        for i in range(TOTAL):
            p.send(topic, value=value(i), partition=i % PARTITIONS).add_callback(ok).add_errback(failed)
        p.flush(timeout=90)
    finally:
        p.close(timeout=10)
    assert k.restarted.wait(CLIENT_TIMEOUT_S), "kill/restart did not finish"
    assert k.error is None, f"kill/restart failed: {k.error!r}"
    assert k.killed_at is not None and k.killed_at < TOTAL, "the broker was not killed mid-stream"
    assert not errors, f"{len(errors)} deliveries failed, first: {errors[0]!r}"
    assert acked[0] == TOTAL
    assert_exactly_once_in_order(broker, topic)
