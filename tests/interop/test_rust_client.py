"""strom-client (clients/rust) against confluent-kafka, through the crate's example binaries.

The examples are built by `scripts/test` (`cargo build --release --workspace --examples`)
next to the broker binary: <target>/release/examples/{producer,replay_from_timestamp}.
"""

import os
import subprocess

import pytest

from interop_helpers import assert_delivered, consume, create_topic, produce, producer
from strom_broker import strom_bin

RUST_CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def example(name):
    path = os.path.join(os.path.dirname(strom_bin()), "examples", name)
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"{path} is missing: build it with `cargo build --release --workspace --examples`",
            pytrace=False,
        )
    return path


def run(name, *args, timeout=60):
    r = subprocess.run([example(name), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{name} {args} exited {r.returncode}:\n{r.stderr}"
    return r.stdout.splitlines()


def rust_produce(bootstrap, topic, count, codec="none"):
    """{key: (partition, offset)} as the Rust producer reports them."""
    out = {}
    for line in run("producer", bootstrap, topic, count, codec):
        key, partition, offset = line.split()
        out[key] = (int(partition), int(offset))
    assert len(out) == count
    return out


def rust_replay(bootstrap, topic, since_ms=0):
    """[(partition, offset, timestamp, key, value, headers)] as the Rust consumer read them."""
    rows = []
    for line in run("replay_from_timestamp", bootstrap, topic, since_ms):
        partition, offset, ts, key, value, *headers = line.split(" ")
        rows.append((int(partition), int(offset), int(ts), key, value, headers[0] if headers else ""))
    return rows


@pytest.mark.parametrize("codec", RUST_CODECS)
def test_confluent_reads_what_the_rust_client_produced(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=4)
    sent = rust_produce(broker.bootstrap, topic, 300, codec)
    msgs = consume(broker.bootstrap, topic, [0, 1, 2, 3], 0, 300)
    got = {}
    for m in msgs:
        key = m.key().decode()
        i = key.split("-")[1]
        assert m.value() == f"value-{i}".encode()
        assert m.headers() == [("seq", i.encode())]
        got[key] = (m.partition(), m.offset())
    assert got == sent


def test_rust_client_reads_what_confluent_produced_and_replays_from_a_timestamp(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    p = producer(broker.bootstrap, compression_type="zstd", linger_ms=5)
    messages = [
        {"key": f"k{i}".encode(), "value": f"v{i}".encode(), "headers": [("h", f"x{i}".encode())], "timestamp": 1_000_000 + i}
        for i in range(200)
    ]
    reports = produce(p, topic, messages)
    assert_delivered(reports)
    where = {r[3].decode(): (r[1], r[2]) for r in reports}

    rows = rust_replay(broker.bootstrap, topic)
    assert len(rows) == 200
    for partition, offset, ts, key, value, headers in rows:
        i = int(key[1:])
        assert (partition, offset) == where[key]
        assert (ts, value, headers) == (1_000_000 + i, f"v{i}", f"h=x{i}")

    # Replay from a point in time: exactly the records stamped at or after it.
    later = rust_replay(broker.bootstrap, topic, 1_000_150)
    assert sorted(int(r[3][1:]) for r in later) == list(range(150, 200))


def test_same_key_lands_on_the_same_partition_as_librdkafka_murmur2_random(broker, topic):
    ours, theirs = f"{topic}-rust", f"{topic}-ck"
    create_topic(broker.bootstrap, ours, partitions=7)
    create_topic(broker.bootstrap, theirs, partitions=7)
    rust = rust_produce(broker.bootstrap, ours, 500)
    p = producer(broker.bootstrap, partitioner="murmur2_random")
    reports = produce(p, theirs, [{"key": f"key-{i}".encode(), "value": b"x"} for i in range(500)])
    assert_delivered(reports)
    ck = {r[3].decode(): r[1] for r in reports}
    mismatched = {k: (rust[k][0], ck[k]) for k in ck if rust[k][0] != ck[k]}
    assert not mismatched, f"(rust, librdkafka) partitions differ: {dict(list(mismatched.items())[:10])}"
    assert len(set(ck.values())) == 7
