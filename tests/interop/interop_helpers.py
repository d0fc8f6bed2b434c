"""Small helpers around confluent-kafka and kcat shared by the tests.

Every wait here is bounded; a helper that times out fails the test with a
message saying what it was waiting for.
"""

import os
import struct
import subprocess
import time

import kafka_wire

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLIENT_TIMEOUT_S = 30


def wait_until(pred, timeout=20, what="condition", interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- confluent-kafka


class Errors:
    """Collects librdkafka error callbacks (they are logged, never fatal here)."""

    def __init__(self):
        self.errors = []

    def __call__(self, err):
        self.errors.append(err)


def producer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "client.id": "strom-interop-ck",
        "message.timeout.ms": 20000,
        "socket.timeout.ms": 10000,
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Producer(base)


def produce(p, topic, messages, flush_each=False):
    """Produce [(partition|None, key, value, headers|None, timestamp|None)] or dicts.

    Returns the delivery reports in production order as
    (err, partition, offset, key, value).
    """
    reports = [None] * len(messages)

    def cb_for(i):
        def cb(err, msg):
            reports[i] = (err, msg.partition(), msg.offset(), msg.key(), msg.value())

        return cb

    for i, m in enumerate(messages):
        kwargs = dict(m)
        if kwargs.get("partition") is None:
            kwargs.pop("partition", None)
        for k in ("headers", "timestamp", "key"):
            if kwargs.get(k) is None:
                kwargs.pop(k, None)
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if flush_each:
            left = p.flush(CLIENT_TIMEOUT_S)
            assert left == 0, f"{left} messages still undelivered after {CLIENT_TIMEOUT_S}s"
    left = p.flush(CLIENT_TIMEOUT_S)
    assert left == 0, f"{left} messages still undelivered after {CLIENT_TIMEOUT_S}s"
    assert all(r is not None for r in reports), "some delivery reports never arrived"
    return reports


def assert_delivered(reports):
    errs = [(i, r[0]) for i, r in enumerate(reports) if r[0] is not None]
    assert not errs, f"{len(errs)} deliveries failed, first: #{errs[0][0]}: {errs[0][1]}"


def consumer(bootstrap, **conf):
    base = {
        "bootstrap.servers": bootstrap,
        "group.id": "strom-interop",  # mandatory for librdkafka; unused with assign()
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "socket.timeout.ms": 10000,
    }
    base.update({k.replace("_", "."): v for k, v in conf.items()})
    return Consumer(base)


def consume(bootstrap, topic, partitions, start, count, timeout=CLIENT_TIMEOUT_S, **conf):
    """assign() `partitions` at offset `start` and read exactly `count` messages.

    Fails if a consume error occurs or `count` messages do not arrive in time.
    """
    c = consumer(bootstrap, **conf)
    try:
        if isinstance(partitions, int):
            partitions = [partitions]
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"consumed {len(got)} of {count} messages from {topic} {partitions} within {timeout}s"
                )
            batch = c.consume(num_messages=min(10000, count - len(got)), timeout=0.5)
            for m in batch:
                if m.error():
                    raise AssertionError(f"consume error: {m.error()}")
                got.append(m)
        return got
    finally:
        c.close()


# AdminClient futures fail with _DESTROY if the client is garbage-collected
# before they resolve, so every admin client lives until the test ends
# (conftest calls release_clients() at teardown).
_LIVE_CLIENTS = []


def admin(bootstrap):
    a = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})
    _LIVE_CLIENTS.append(a)
    return a


def release_clients():
    _LIVE_CLIENTS.clear()


def create_topic(bootstrap, name, partitions=1, config=None):
    fs = admin(bootstrap).create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=CLIENT_TIMEOUT_S,
    )
    fs[name].result(timeout=CLIENT_TIMEOUT_S)


# Checks of broker state use a hand-encoded Metadata v4 request (kafka_wire),
# not a client library, so a test fails for its own subject and not because
# a client's metadata request is mishandled (that is tested separately).


def raw_metadata(bootstrap, topics=None):
    with kafka_wire.Conn(bootstrap) as c:
        return kafka_wire.parse_metadata_v4(c.roundtrip(kafka_wire.metadata_request_v4, topics, False))


def topic_names(bootstrap):
    return {t["name"] for t in raw_metadata(bootstrap)["topics"] if t["error"] == 0}


def partition_count(bootstrap, topic):
    (t,) = raw_metadata(bootstrap, [topic])["topics"]
    assert t["error"] == 0, f"topic {topic}: metadata error code {t['error']}"
    return len(t["partitions"])


def broker_id(bootstrap):
    (b,) = raw_metadata(bootstrap)["brokers"]
    return b[0]


def watermarks(bootstrap, topic, partition):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=CLIENT_TIMEOUT_S, cached=False)
    finally:
        c.close()


def exc_code(exc):
    """KafkaError code of a KafkaException (or of a raised future)."""
    if isinstance(exc, KafkaException):
        return exc.args[0].code()
    raise exc


# ---------------------------------------------------------------- kcat


def kcat(kcat_bin, bootstrap, *args, input=None, timeout=60, check=True):
    """Run kcat; returns CompletedProcess (text). check=True asserts exit 0."""
    cmd = [kcat_bin, "-b", bootstrap, *args]
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (
            f"{' '.join(cmd)} exited {r.returncode}\n--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-4000:]}"
        )
    return r


# ---------------------------------------------------------------- on-disk batches

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def stored_batch_codecs(data_dir, topic, partition):
    """Codec ids (attributes & 7) of every batch in the partition's segments.

    Reads `<data>/<topic>-<p>/*.log` as laid out in DESIGN.md section 5
    (batches exactly as on the wire, 61-byte v2 header).
    """
    pdir = os.path.join(data_dir, f"{topic}-{partition}")
    codecs = []
    for name in sorted(os.listdir(pdir)):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(pdir, name), "rb") as f:
            data = f.read()
        pos = 0
        while pos + 61 <= len(data):
            (length,) = struct.unpack_from(">i", data, pos + 8)
            if length <= 0:
                break  # preallocated zeros after the last batch
            (attrs,) = struct.unpack_from(">h", data, pos + 21)
            codecs.append(attrs & 7)
            pos += 12 + length
    return codecs


__all__ = [
    "KafkaError",
    "KafkaException",
    "TopicPartition",
]
