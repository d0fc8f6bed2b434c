"""Retention and DeleteRecords delete old segments; clients then handle
OFFSET_OUT_OF_RANGE.

Segments are made tiny with the topic config segment.bytes=1024 (strom's
minimum), and the broker checks retention every 200 ms
(log.retention.check.interval.ms) so the waits stay short.
"""

import os
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

from interop_helpers import (
    CLIENT_TIMEOUT_S,
    admin,
    assert_delivered,
    consume,
    consumer,
    create_topic,
    kcat,
    produce,
    producer,
    wait_until,
    watermarks,
)

BROKER_CONFIG = {"log.retention.check.interval.ms": 200}
N = 60


def fill_segments(b, topic, timestamp_ms=None):
    """N records, one batch each (~250 bytes), so ~4 per 1 KiB segment."""
    msgs = [{"partition": 0, "key": b"k%d" % i, "value": b"retained-%03d-" % i + b"r" * 180,
             "timestamp": timestamp_ms} for i in range(N)]
    reports = produce(producer(b.bootstrap, linger_ms=0), topic, msgs, flush_each=True)
    assert_delivered(reports)
    assert [r[2] for r in reports] == list(range(N))
    return msgs


def segment_files(b, topic):
    return sorted(f for f in os.listdir(os.path.join(b.data_dir, f"{topic}-0")) if f.endswith(".log"))


def settled_watermarks(b, topic, timeout=30):
    """(low, high) once retention has moved the log start and stopped moving it.

    Retention runs while records are still being produced, so the log start
    offset is only meaningful once it is stable: same value on 4 reads that
    span several retention check intervals (200 ms).
    """
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        w = watermarks(b.bootstrap, topic, 0)
        seen = (seen + [w])[-4:]
        if w[0] > 0 and len(seen) == 4 and len(set(seen)) == 1:
            return w
        assert time.monotonic() < deadline, f"log start offset did not settle within {timeout}s: {seen}"
        time.sleep(0.4)


def test_time_retention_deletes_old_segments_and_consumers_restart_at_log_start(start_broker, topic, kcat_bin):
    b = start_broker(config=BROKER_CONFIG)
    create_topic(b.bootstrap, topic, config={"segment.bytes": "1024", "retention.ms": "60000"})
    day_old = int(time.time() * 1000) - 24 * 3600 * 1000
    msgs = fill_segments(b, topic, timestamp_ms=day_old)

    # Every record is a day old, so every sealed segment goes; only the active one stays.
    wait_until(lambda: len(segment_files(b, topic)) == 1, timeout=30, what="only the active segment to remain")
    low, high = settled_watermarks(b, topic)
    assert high == N
    assert 0 < low < N, (low, high)  # the active segment is never deleted

    # confluent-kafka, auto.offset.reset=earliest: fetch at 0 -> OFFSET_OUT_OF_RANGE -> log start.
    got = consume(b.bootstrap, topic, 0, 0, N - low, auto_offset_reset="earliest")
    assert [(m.offset(), m.value()) for m in got] == [(o, msgs[o]["value"]) for o in range(low, N)]

    # kcat (old librdkafka): -o beginning starts at the log start offset.
    r = kcat(kcat_bin, b.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o\\n")
    assert [int(x) for x in r.stdout.split()] == list(range(low, N))

    # kafka-python: seek(0) is out of range; auto_offset_reset=earliest resets to log start.
    c = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=15000)
    try:
        tp = KpTopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        first = None
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while first is None and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                first = first or records[0]
        assert first is not None, "kafka-python read nothing after seeking to a deleted offset"
        assert first.offset == low
    finally:
        c.close()


def test_fetch_below_log_start_with_reset_error_reports_out_of_range(start_broker, topic):
    b = start_broker(config=BROKER_CONFIG)
    create_topic(b.bootstrap, topic, config={"segment.bytes": "1024", "retention.ms": "60000"})
    fill_segments(b, topic, timestamp_ms=int(time.time() * 1000) - 24 * 3600 * 1000)
    wait_until(lambda: watermarks(b.bootstrap, topic, 0)[0] > 0, timeout=30, what="retention")
    c = consumer(b.bootstrap, auto_offset_reset="error")
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        err = None
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None, f"read offset {m.offset()}, which retention deleted"
                err = m.error()
        assert err is not None and err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), err
    finally:
        c.close()


def test_size_retention_keeps_the_newest_records(start_broker, topic):
    b = start_broker(config=BROKER_CONFIG)
    create_topic(b.bootstrap, topic, config={"segment.bytes": "1024", "retention.bytes": "2048"})
    msgs = fill_segments(b, topic)
    low, high = settled_watermarks(b, topic)
    assert high == N and 0 < low < N
    got = consume(b.bootstrap, topic, 0, low, N - low)
    assert [m.value() for m in got] == [msgs[o]["value"] for o in range(low, N)]
    # Each batch is ~270 bytes: 2048 retained bytes plus the active segment and
    # one partly-counted segment (~1.3 KiB each) are at most ~17 records.
    assert N - low <= 20, f"retention.bytes=2048 still keeps {N - low} records of ~270 bytes"


def test_retention_survives_restart(start_broker, topic):
    b = start_broker(config=BROKER_CONFIG)
    create_topic(b.bootstrap, topic, config={"segment.bytes": "1024", "retention.ms": "60000"})
    fill_segments(b, topic, timestamp_ms=int(time.time() * 1000) - 24 * 3600 * 1000)
    low = wait_until(lambda: watermarks(b.bootstrap, topic, 0)[0], timeout=30, what="retention")
    b.restart()
    low2, high2 = watermarks(b.bootstrap, topic, 0)
    assert high2 == N
    assert low2 >= low, f"log start offset went back from {low} to {low2} after restart"


# ---------------------------------------------------------------- DeleteRecords


def _delete_records(bootstrap, topic, partition, offset):
    """confluent-kafka's AdminClient.delete_records; returns the low watermark."""
    fs = admin(bootstrap).delete_records([TopicPartition(topic, partition, offset)],
                                         request_timeout=CLIENT_TIMEOUT_S)
    (f,) = fs.values()
    return f.result(timeout=CLIENT_TIMEOUT_S).low_watermark


def test_delete_records_moves_the_log_start_and_drops_whole_segments(start_broker, topic, kcat_bin):
    b = start_broker()
    create_topic(b.bootstrap, topic, config={"segment.bytes": "1024"})
    msgs = fill_segments(b, topic)
    before = segment_files(b, topic)
    assert len(before) > 10, before

    assert _delete_records(b.bootstrap, topic, 0, 25) == 25
    assert watermarks(b.bootstrap, topic, 0) == (25, N)
    after = segment_files(b, topic)
    assert 0 < len(after) < len(before) and after[-1] == before[-1], (before, after)
    assert int(after[0].split(".")[0]) <= 25, "the segment holding the new start stays"

    # Consumers starting at the beginning start at offset 25, all clients.
    got = consume(b.bootstrap, topic, 0, OFFSET_BEGINNING, N - 25)
    assert [m.offset() for m in got] == list(range(25, N))
    assert [m.value() for m in got] == [m["value"] for m in msgs[25:]]
    out = kcat(kcat_bin, b.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%o\n").stdout
    assert out.split() == [str(o) for o in range(25, N)]
    kp = KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=None, enable_auto_commit=False,
                       request_timeout_ms=15000)
    try:
        tp = KpTopicPartition(topic, 0)
        assert kp.beginning_offsets([tp], timeout_ms=15000) == {tp: 25}
    finally:
        kp.close()

    # Below the start: nothing changes. Past the end: OFFSET_OUT_OF_RANGE.
    assert _delete_records(b.bootstrap, topic, 0, 10) == 25
    with pytest.raises(KafkaException) as e:
        _delete_records(b.bootstrap, topic, 0, N + 1)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE
    assert watermarks(b.bootstrap, topic, 0) == (25, N)

    # Durable: the start survives kill -9 and a clean restart.
    b.restart(kill=True)
    assert watermarks(b.bootstrap, topic, 0) == (25, N)
    b.restart()
    assert watermarks(b.bootstrap, topic, 0) == (25, N)

    # OFFSET_END (-1) deletes everything; producing goes on from the end.
    assert _delete_records(b.bootstrap, topic, 0, OFFSET_END) == N
    assert watermarks(b.bootstrap, topic, 0) == (N, N)
    assert segment_files(b, topic) == [before[-1]]
    reports = produce(producer(b.bootstrap), topic, [{"partition": 0, "value": b"after"}])
    assert_delivered(reports)
    assert reports[0][2] == N
    assert [m.value() for m in consume(b.bootstrap, topic, 0, OFFSET_BEGINNING, 1)] == [b"after"]

