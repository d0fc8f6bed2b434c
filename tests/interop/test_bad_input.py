"""Bad input over raw sockets (struct.pack, no client library).

Each test keeps a well-behaved connection open from before the bad input
and checks afterwards that it, a fresh connection and a real client all
still work: one bad connection must never hurt the others.
"""

import random
import socket
import struct

import pytest

import kafka_wire as kw
from interop_helpers import assert_delivered, consume, create_topic, kcat, produce, producer

# What DESIGN.md section 3 says strom advertises for the APIs of this issue.
DESIGN_VERSIONS = {
    0: (0, 11),  # Produce
    1: (4, 12),  # Fetch
    2: (1, 7),  # ListOffsets
    3: (0, 12),  # Metadata
    18: (0, 4),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics
    32: (1, 4),  # DescribeConfigs
}


class Healthy:
    """A well-behaved raw connection opened before the bad input."""

    def __init__(self, broker):
        self.broker = broker
        self.conn = kw.Conn(broker.bootstrap)
        self.check_conn(self.conn)

    @staticmethod
    def check_conn(conn):
        err, versions = kw.parse_api_versions_v0(conn.roundtrip(kw.api_versions_request))
        assert err == 0 and 18 in versions, (err, versions)
        md = kw.parse_metadata_v4(conn.roundtrip(kw.metadata_request_v4, None, False))
        assert len(md["brokers"]) == 1

    def check(self):
        assert self.broker.running(), "the broker process died"
        self.check_conn(self.conn)  # the connection opened before is still served
        with kw.Conn(self.broker.bootstrap) as fresh:  # new connections are accepted
            self.check_conn(fresh)

    def check_with_client(self, topic):
        self.check()
        reports = produce(producer(self.broker.bootstrap, acks="all"), topic, [{"partition": 0, "value": b"still fine"}])
        assert_delivered(reports)
        got = consume(self.broker.bootstrap, topic, 0, reports[0][2], 1)
        assert got[0].value() == b"still fine"


@pytest.fixture
def healthy(broker):
    h = Healthy(broker)
    yield h
    h.conn.close()


def closed_or_answered(conn, timeout=10):
    """The broker must close the connection or answer; hanging is a failure."""
    closed, data = conn.wait_closed(timeout)
    assert closed or data, f"broker neither answered nor closed the connection within {timeout}s"
    return closed, data


# ---------------------------------------------------------------- framing


def test_size_prefix_0x7fffffff_closes_connection_without_allocating(broker, healthy, topic):
    rss_before = broker.rss_kib()
    conns = []
    for _ in range(20):
        c = kw.Conn(broker.bootstrap)
        c.send(struct.pack(">I", 0x7FFFFFFF) + b"\x00\x12\x00\x00")
        conns.append(c)
    for c in conns:
        closed, _ = c.wait_closed(10)
        assert closed, "connection with a 2 GiB size prefix was not closed"
        c.close()
    grown_mib = (broker.rss_kib() - rss_before) / 1024
    assert grown_mib < 64, f"broker RSS grew by {grown_mib:.0f} MiB after 20 huge size prefixes"
    healthy.check_with_client(topic)


@pytest.mark.parametrize("prefix", [0xFFFFFFFF, 0x80000000], ids=["minus-1", "int-min"])
def test_negative_size_prefix_closes_connection(broker, healthy, prefix):
    with kw.Conn(broker.bootstrap) as c:
        c.send(struct.pack(">I", prefix) + b"garbage")
        closed, data = c.wait_closed(10)
        assert closed and not data
    healthy.check()


def test_size_prefix_above_socket_request_max_bytes_closes_connection(start_broker, topic):
    b = start_broker(config={"socket.request.max.bytes": 1 << 20})
    h = Healthy(b)
    try:
        with kw.Conn(b.bootstrap) as c:
            c.send(struct.pack(">i", (1 << 20) + 1024) + b"\x00\x03\x00\x04")
            closed, data = c.wait_closed(10)
            assert closed and not data, "a frame above socket.request.max.bytes was not refused"
        # A request below the limit is fine on a new connection.
        with kw.Conn(b.bootstrap) as c:
            Healthy.check_conn(c)
        h.check_with_client(topic)
    finally:
        h.conn.close()


def test_zero_length_frame_closes_connection(broker, healthy):
    with kw.Conn(broker.bootstrap) as c:
        c.send(struct.pack(">i", 0))
        closed, data = c.wait_closed(10)
        assert closed and not data
    healthy.check()


def test_random_garbage_frames(broker, healthy, topic):
    rng = random.Random(20240601)  # deterministic
    interesting_keys = [0, 2, 3, 18, 19, 20, 32, 999, 0x7FFF, -1]
    for i in range(60):
        api_key = rng.choice(interesting_keys)
        version = rng.choice([0, 1, 3, 4, 7, 12, 99, -1])
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        payload = struct.pack(">hhi", api_key, version, 1000 + i) + body
        with kw.Conn(broker.bootstrap) as c:
            c.send(kw.frame(payload))
            closed_or_answered(c)
    healthy.check_with_client(topic)


def test_unframed_garbage_stream_then_eof(broker, healthy):
    rng = random.Random(7)
    for size in (1, 3, 1000, 65536):
        with kw.Conn(broker.bootstrap) as c:
            data = bytes(rng.getrandbits(8) for _ in range(size))
            try:
                c.send(data)
                c.sock.shutdown(socket.SHUT_WR)
            except (kw.Closed, OSError):
                continue  # already closed by the broker: fine
            closed, _ = c.wait_closed(10)
            assert closed, f"connection not closed after {size} garbage bytes and EOF"
    healthy.check()


def test_truncated_request_then_eof_closes_connection(broker, healthy):
    full = kw.metadata_request_v4(1, ["some-topic"], False)
    for cut in (2, 4, 6, 10, len(full) - 1):
        with kw.Conn(broker.bootstrap) as c:
            c.send(full[:cut])
            c.sock.shutdown(socket.SHUT_WR)
            closed, data = c.wait_closed(10)
            assert closed and not data, f"request cut at byte {cut}: closed={closed} data={data!r}"
    healthy.check()


def test_complete_frame_with_truncated_body_is_refused(broker, healthy, topic):
    header = kw.request_header(kw.API_METADATA, 4, 5)
    cases = {
        "metadata-array-claims-5-topics": header + kw.i32(5),
        "metadata-string-longer-than-frame": header + kw.i32(1) + kw.i16(200) + b"abc",
        "produce-records-longer-than-frame": kw.request_header(kw.API_PRODUCE, 3, 6)
        + kw.string(None) + kw.i16(1) + kw.i32(1000) + kw.i32(1) + kw.string(topic)
        + kw.i32(1) + kw.i32(0) + kw.i32(5000) + b"\x00" * 10,
        "header-only-api-key": kw.i16(3),
    }
    for name, payload in cases.items():
        with kw.Conn(broker.bootstrap) as c:
            c.send(kw.frame(payload))
            closed, data = closed_or_answered(c)
            if data:
                (corr,) = struct.unpack(">i", data[4:8])
                assert corr in (5, 6), f"{name}: answer with correlation id {corr}"
    healthy.check_with_client(topic)


# ---------------------------------------------------------------- ApiVersions


@pytest.mark.parametrize("version", [5, 99, 0x7FFF])
def test_api_versions_unknown_version_gets_error_35_and_fallback_entry(broker, healthy, version):
    with kw.Conn(broker.bootstrap) as c:
        c.send(kw.api_versions_request(4242, version=version))
        frame = c.recv_frame()
    # Response header v0 (correlation id), then a v0 body: error_code 35,
    # api_keys [ {18, 0, 4} ] -- DESIGN.md section 3.
    expected = struct.pack(">i", 4242) + struct.pack(">h", 35) + struct.pack(">i", 1) + struct.pack(">hhh", 18, 0, 4)
    assert frame == expected, f"got {frame.hex()}, expected {expected.hex()}"
    healthy.check()


def test_api_versions_v0_lists_design_version_ranges(broker, healthy):
    err, versions = kw.parse_api_versions_v0(healthy.conn.roundtrip(kw.api_versions_request, 0))
    assert err == 0
    for key, rng in DESIGN_VERSIONS.items():
        assert versions.get(key) == rng, f"api key {key}: advertised {versions.get(key)}, DESIGN.md says {rng}"


def test_api_versions_v3_flexible_request_is_answered(broker, healthy):
    with kw.Conn(broker.bootstrap) as c:
        c.send(kw.api_versions_request(77, version=3))
        frame = c.recv_frame()
    r = kw.Reader(frame)
    assert r.i32() == 77  # ApiVersions responses always use header v0
    assert r.i16() == 0
    n = frame[6] - 1  # compact array length (+1); fewer than 127 entries
    assert n >= len(DESIGN_VERSIONS)


# ---------------------------------------------------------------- unknown APIs / versions


@pytest.mark.parametrize("api_key", [999, 0x7FFF, -5])
def test_unknown_api_key_is_refused(broker, healthy, api_key):
    with kw.Conn(broker.bootstrap) as c:
        c.send(kw.encode_request(api_key, 0, 31, b"\x00" * 16))
        closed, data = closed_or_answered(c)
        if data:
            assert struct.unpack(">i", data[4:8])[0] == 31
    healthy.check()


def test_unsupported_version_of_a_known_api_is_refused(broker, healthy):
    with kw.Conn(broker.bootstrap) as c:
        c.send(kw.encode_request(kw.API_METADATA, 99, 32, kw.i32(-1)))
        closed, data = closed_or_answered(c)
        if data:
            assert struct.unpack(">i", data[4:8])[0] == 32
    healthy.check()


def test_pipelined_requests_are_answered_in_order(broker, healthy, topic):
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as c:
        reqs = [
            kw.metadata_request_v4(11, [topic], False),
            kw.api_versions_request(12),
            kw.list_offsets_request_v1(13, topic, 0, -1),
            kw.api_versions_request(14),
            kw.metadata_request_v4(15, None, False),
        ]
        c.send(b"".join(reqs))
        corrs = [struct.unpack(">i", c.recv_frame()[:4])[0] for _ in reqs]
    assert corrs == [11, 12, 13, 14, 15]


# ---------------------------------------------------------------- produce validation


def _produce(conn, topic, batch, acks=-1, partition=0):
    (result,) = kw.parse_produce_v3(conn.roundtrip(kw.produce_request_v3, topic, partition, batch, acks))
    return result


def _log_end(conn, topic, partition=0):
    (res,) = kw.parse_list_offsets_v1(conn.roundtrip(kw.list_offsets_request_v1, topic, partition, -1))
    assert res[2] == 0, f"ListOffsets error {res[2]}"
    return res[3]


def test_wire_helpers_build_a_batch_kafka_python_accepts():
    """Guards the hand-written encoder: kafka-python parses it and checks its CRC."""
    from kafka.record.default_records import DefaultRecordBatch

    batch = kw.record_batch([b"alpha", b"beta"], keys=[b"k1", None])
    parsed = DefaultRecordBatch(batch)
    assert parsed.validate_crc()
    assert [(r.key, r.value) for r in parsed] == [(b"k1", b"alpha"), (None, b"beta")]
    assert not DefaultRecordBatch(kw.flip_crc(batch)).validate_crc()
    assert not DefaultRecordBatch(kw.flip_payload_bit(batch)).validate_crc()


def test_produce_with_flipped_crc_gets_corrupt_message_and_stores_nothing(broker, healthy, topic, kcat_bin):
    create_topic(broker.bootstrap, topic)
    conn = healthy.conn
    good1 = kw.record_batch([b"good-1"])
    assert _produce(conn, topic, good1) == (topic, 0, 0, 0)

    bad_crc = kw.flip_crc(kw.record_batch([b"bad-crc"]))
    name, p, err, _ = _produce(conn, topic, bad_crc)
    assert (name, p, err) == (topic, 0, 2), f"flipped CRC: error {err}, expected 2 CORRUPT_MESSAGE"

    bad_payload = kw.flip_payload_bit(kw.record_batch([b"bad-payload"]))
    name, p, err, _ = _produce(conn, topic, bad_payload)
    assert (name, p, err) == (topic, 0, 2), f"flipped payload bit: error {err}, expected 2 CORRUPT_MESSAGE"

    assert _produce(conn, topic, kw.record_batch([b"good-2"])) == (topic, 0, 0, 1)
    assert _log_end(conn, topic) == 2

    r = kcat(kcat_bin, broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%o %s\\n")
    assert r.stdout == "0 good-1\n1 good-2\n"
    healthy.check()


def test_acks_0_produce_with_bad_crc_closes_connection_and_stores_nothing(broker, healthy, topic):
    create_topic(broker.bootstrap, topic)
    with kw.Conn(broker.bootstrap) as c:
        c.send(kw.produce_request_v3(50, topic, 0, kw.flip_crc(kw.record_batch([b"x"])), acks=0))
        closed, data = c.wait_closed(10)
        assert closed and not data, "acks=0 produce error: Kafka closes the connection (no response)"
    assert _log_end(healthy.conn, topic) == 0
    healthy.check()


def test_produce_with_inconsistent_record_count_is_rejected(broker, healthy, topic):
    create_topic(broker.bootstrap, topic)
    batch = bytearray(kw.record_batch([b"a", b"b", b"c"]))
    struct.pack_into(">i", batch, 57, 5)  # recordsCount 5, lastOffsetDelta 2
    struct.pack_into(">I", batch, 17, kw.crc32c(bytes(batch[21:])))  # CRC valid again
    name, p, err, _ = _produce(healthy.conn, topic, bytes(batch))
    assert err != 0, "a batch whose recordsCount != lastOffsetDelta + 1 was accepted"
    assert _log_end(healthy.conn, topic) == 0
    healthy.check()


def test_list_offsets_by_time_does_not_inflate_a_zstd_bomb(broker, healthy, topic):
    """A batch whose records section is 1 GiB of zeros squeezed by zstd into
    ~40 KB is stored as sent (the broker does not look inside batches on
    produce). A ListOffsets by timestamp must look inside; it stops at 64 MiB
    of output and answers with the batch's own offset, and the broker's
    memory does not grow by the gigabyte."""
    import zstandard

    create_topic(broker.bootstrap, topic)
    squeeze = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(1 << 20)
    bomb = b"".join(squeeze.compress(zeros) for _ in range(1024)) + squeeze.flush()
    assert len(bomb) < 1 << 20
    ts = 1_700_000_000_000
    batch = kw.batch_of_records(bomb, count=1, attributes=4, base_timestamp=ts)
    _, _, err, base = _produce(healthy.conn, topic, batch)
    assert (err, base) == (0, 0)
    peak_before = broker.rss_kib("VmHWM")
    answer = healthy.conn.roundtrip(kw.list_offsets_request_v1, topic, 0, ts)
    ((_, _, err, offset),) = kw.parse_list_offsets_v1(answer)
    assert (err, offset) == (0, 0)
    grown_mib = (broker.rss_kib("VmHWM") - peak_before) / 1024
    assert grown_mib < 256, f"peak RSS grew by {grown_mib:.0f} MiB"
    healthy.check()


def test_produce_to_unknown_partition_gets_unknown_topic_or_partition(broker, healthy, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    name, p, err, _ = _produce(healthy.conn, topic, kw.record_batch([b"x"]), partition=7)
    assert (p, err) == (7, 3), f"error {err}, expected 3 UNKNOWN_TOPIC_OR_PARTITION"
    healthy.check()


def test_produce_v2_is_refused_with_unsupported_version(broker, healthy, topic):
    """DESIGN.md section 3: Produce 0-2 are advertised but answered with 35."""
    create_topic(broker.bootstrap, topic)
    body = kw.i16(1) + kw.i32(10000) + kw.array([kw.string(topic) + kw.array([kw.i32(0) + kw.kbytes(b"\x00" * 40)])])
    with kw.Conn(broker.bootstrap) as c:
        c.send(kw.encode_request(kw.API_PRODUCE, 2, 60, body))
        frame = c.recv_frame()
    r = kw.Reader(frame)
    assert r.i32() == 60
    parts = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16(), r.i64(), r.i64()))))
    assert [(t, [(p, e) for p, e, _, _ in ps]) for t, ps in parts] == [(topic, [(0, 35)])]
    assert _log_end(healthy.conn, topic) == 0
