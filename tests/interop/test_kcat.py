"""kcat (Debian package: librdkafka 2.0.2, an old client generation) as the judge."""

import json

import pytest

from interop_helpers import CODECS, create_topic, kcat, stored_batch_codecs, wait_until, watermarks

FMT = "%k %s %o %p\\n"  # kcat expands \n itself


def keyed_lines(n, prefix="v"):
    return [(f"key{i}", f"{prefix}{i}") for i in range(n)]


def produce_lines(kcat_bin, broker, topic, pairs, *extra):
    text = "".join(f"{k}:{v}\n" for k, v in pairs)
    return kcat(kcat_bin, broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K:", *extra, input=text)


def consume_lines(kcat_bin, broker, topic, *extra, offset="beginning"):
    r = kcat(kcat_bin, broker.bootstrap, "-C", "-t", topic, "-o", str(offset), "-e", "-q", "-f", FMT, *extra)
    return r.stdout


def test_metadata_lists_broker_and_topics(kcat_bin, broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    r = kcat(kcat_bin, broker.bootstrap, "-L", "-J")
    md = json.loads(r.stdout)
    assert [b["name"] for b in md["brokers"]] == [broker.bootstrap]
    broker_id = md["brokers"][0]["id"]
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, f"{topic} missing from kcat -L: {sorted(topics)}"
    parts = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    assert all(p["leader"] == broker_id for p in parts)
    assert "error" not in topics[topic] or not topics[topic]["error"]


def test_metadata_plain_text_names_the_broker(kcat_bin, broker):
    r = kcat(kcat_bin, broker.bootstrap, "-L")
    assert "1 brokers:" in r.stdout
    assert f"at {broker.bootstrap}" in r.stdout


def test_keyed_lines_round_trip_exactly(kcat_bin, broker, topic):
    pairs = keyed_lines(50)
    produce_lines(kcat_bin, broker, topic, pairs)  # auto-creates the topic
    out = consume_lines(kcat_bin, broker, topic)
    expected = "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(pairs))
    assert out == expected


def test_two_produce_runs_append_with_dense_offsets(kcat_bin, broker, topic):
    first, second = keyed_lines(7, "a"), keyed_lines(5, "b")
    produce_lines(kcat_bin, broker, topic, first)
    produce_lines(kcat_bin, broker, topic, second)
    out = consume_lines(kcat_bin, broker, topic)
    expected = "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(first + second))
    assert out == expected


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_produce_round_trips_and_is_stored_compressed(kcat_bin, broker, topic, codec):
    # Compressible values, so librdkafka does not fall back to uncompressed.
    pairs = [(f"key{i}", f"{codec}-value-{i:04d}-" + "x" * 200) for i in range(100)]
    produce_lines(kcat_bin, broker, topic, pairs, "-z", codec, "-X", "linger.ms=100")
    out = consume_lines(kcat_bin, broker, topic)
    expected = "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(pairs))
    assert out == expected
    codecs = stored_batch_codecs(broker.data_dir, topic, 0)
    assert codecs, "no batches found in the segment files"
    assert set(codecs) == {CODECS[codec]}, f"stored batch codecs {codecs}, sent {codec}"


def test_explicit_api_version_request_property(kcat_bin, broker, topic):
    pairs = keyed_lines(3)
    produce_lines(kcat_bin, broker, topic, pairs, "-X", "api.version.request=true")
    out = consume_lines(kcat_bin, broker, topic, "-X", "api.version.request=true")
    assert out == "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(pairs))


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_with_each_acks_setting(kcat_bin, broker, topic, acks):
    pairs = keyed_lines(10)
    create_topic(broker.bootstrap, topic)
    produce_lines(kcat_bin, broker, topic, pairs, "-X", f"acks={acks}")
    # acks=0 gets no response: wait (bounded) until the broker has appended.
    wait_until(lambda: watermarks(broker.bootstrap, topic, 0)[1] == len(pairs), what="high watermark 10")
    out = consume_lines(kcat_bin, broker, topic)
    assert out == "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(pairs))


def test_consume_from_offset_5_replays_from_it(kcat_bin, broker, topic):
    pairs = keyed_lines(10)
    produce_lines(kcat_bin, broker, topic, pairs)
    out = consume_lines(kcat_bin, broker, topic, "-p", "0", offset=5)
    assert out == "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(pairs) if i >= 5)


def test_consume_last_3_with_negative_offset(kcat_bin, broker, topic):
    pairs = keyed_lines(10)
    produce_lines(kcat_bin, broker, topic, pairs)
    out = consume_lines(kcat_bin, broker, topic, "-p", "0", offset=-3)
    assert out == "".join(f"{k} {v} {i} 0\n" for i, (k, v) in enumerate(pairs) if i >= 7)


def test_consume_at_end_prints_nothing_and_exits_zero(kcat_bin, broker, topic):
    produce_lines(kcat_bin, broker, topic, keyed_lines(4))
    out = consume_lines(kcat_bin, broker, topic, "-p", "0", offset="end")
    assert out == ""


def test_multi_partition_produce_and_consume_all(kcat_bin, broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    for p in range(3):
        text = "".join(f"k{p}-{i}:p{p}v{i}\n" for i in range(4))
        kcat(kcat_bin, broker.bootstrap, "-P", "-t", topic, "-p", str(p), "-K:", input=text)
    out = consume_lines(kcat_bin, broker, topic)
    lines = sorted(out.splitlines())
    expected = sorted(f"k{p}-{i} p{p}v{i} {i} {p}" for p in range(3) for i in range(4))
    assert lines == expected


def test_messages_without_key_have_empty_key(kcat_bin, broker, topic):
    kcat(kcat_bin, broker.bootstrap, "-P", "-t", topic, "-p", "0", input="one\ntwo\n")
    r = kcat(kcat_bin, broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
             "-f", "[%K] %s %o\\n")
    assert r.stdout == "[-1] one 0\n[-1] two 1\n"
