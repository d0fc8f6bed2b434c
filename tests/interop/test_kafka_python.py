"""kafka-python 3.x (an independent, pure-Python client) as the judge.

kafka-python 3 enables the idempotent producer by default (KIP-679), so
every producer here runs with its defaults: InitProducerId, acks=all and
sequence numbers on every batch.
"""

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions
from kafka.errors import (
    InvalidPartitionsError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from interop_helpers import CODECS, partition_count, stored_batch_codecs, topic_names, wait_until, watermarks

TIMEOUT_S = 30


def kp_producer(bootstrap, **conf):
    conf.setdefault("request_timeout_ms", 10000)
    conf.setdefault("max_block_ms", 20000)
    return KafkaProducer(bootstrap_servers=bootstrap, client_id="strom-interop-kp", **conf)


def kp_consumer(bootstrap, **conf):
    conf.setdefault("request_timeout_ms", 15000)
    conf.setdefault("fetch_max_wait_ms", 500)
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="strom-interop-kp",
        **conf,
    )


def kp_admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="strom-interop-kp", request_timeout_ms=15000)


def read(consumer, count, timeout=TIMEOUT_S):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        assert time.monotonic() < deadline, f"read {len(got)} of {count} records within {timeout}s"
        for records in consumer.poll(timeout_ms=500, max_records=count - len(got)).values():
            got.extend(records)
    return sorted(got, key=lambda r: (r.partition, r.offset))


def create(bootstrap, topic, partitions=1, configs=None):
    a = kp_admin(bootstrap)
    try:
        a.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1, "configs": configs or {}}})
    finally:
        a.close()


def send_all(producer, topic, values, partition=0, **kwargs):
    futures = [producer.send(topic, value=v, key=b"k-" + v, partition=partition, **kwargs) for v in values]
    producer.flush(timeout=TIMEOUT_S)
    return [f.get(timeout=TIMEOUT_S) for f in futures]


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_producer_acks_then_consumer_reads_back(broker, topic, acks):
    create(broker.bootstrap, topic)
    values = [b"v%03d" % i for i in range(50)]
    p = kp_producer(broker.bootstrap, acks=acks)
    try:
        metas = send_all(p, topic, values)
    finally:
        p.close(timeout=TIMEOUT_S)
    if acks != 0:
        assert [m.offset for m in metas] == list(range(50))
    wait_until(lambda: watermarks(broker.bootstrap, topic, 0)[1] == 50, what="50 records appended")
    c = kp_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = read(c, 50)
    finally:
        c.close()
    assert [(r.offset, r.key, r.value) for r in got] == [(i, b"k-" + v, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("codec", ["gzip", "lz4", "snappy", "zstd"])
def test_compressed_batches_round_trip_and_are_stored_as_sent(broker, topic, codec):
    create(broker.bootstrap, topic)
    values = [(b"%s-%04d-" % (codec.encode(), i)) + b"c" * 200 for i in range(300)]
    p = kp_producer(broker.bootstrap, acks="all", compression_type=codec, linger_ms=50)
    try:
        metas = send_all(p, topic, values)
    finally:
        p.close(timeout=TIMEOUT_S)
    assert [m.offset for m in metas] == list(range(300))
    c = kp_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = read(c, 300)
    finally:
        c.close()
    assert [(r.offset, r.value) for r in got] == list(enumerate(values))
    codecs = stored_batch_codecs(broker.data_dir, topic, 0)
    assert codecs and set(codecs) == {CODECS[codec]}, f"stored codecs {codecs}, sent {codec}"


def test_headers_and_timestamps_round_trip(broker, topic):
    create(broker.bootstrap, topic)
    base = 1_600_000_000_000
    p = kp_producer(broker.bootstrap)
    try:
        for i in range(10):
            p.send(topic, value=b"h%d" % i, partition=0, timestamp_ms=base + i,
                   headers=[("n", str(i).encode()), ("const", b"c")])
        p.flush(timeout=TIMEOUT_S)
    finally:
        p.close(timeout=TIMEOUT_S)
    c = kp_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        got = read(c, 10)
    finally:
        c.close()
    for i, r in enumerate(got):
        assert (r.offset, r.value, r.timestamp) == (i, b"h%d" % i, base + i)
        assert list(r.headers) == [("n", str(i).encode()), ("const", b"c")]


def test_seek_to_a_middle_offset_replays_from_it(broker, topic):
    create(broker.bootstrap, topic)
    values = [b"s%d" % i for i in range(40)]
    p = kp_producer(broker.bootstrap)
    try:
        send_all(p, topic, values)
    finally:
        p.close(timeout=TIMEOUT_S)
    c = kp_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 25)
        got = read(c, 15)
        assert [(r.offset, r.value) for r in got] == [(i, values[i]) for i in range(25, 40)]
        c.seek(tp, 3)
        got = read(c, 2)
        assert [r.offset for r in got] == [3, 4]
    finally:
        c.close()


def test_beginning_end_offsets_and_offsets_for_times(broker, topic):
    create(broker.bootstrap, topic)
    base = 1_600_000_000_000
    p = kp_producer(broker.bootstrap)
    try:
        for i in range(10):
            p.send(topic, value=b"t", partition=0, timestamp_ms=base + i * 100)
        p.flush(timeout=TIMEOUT_S)
    finally:
        p.close(timeout=TIMEOUT_S)
    c = kp_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        assert c.beginning_offsets([tp], timeout_ms=15000) == {tp: 0}
        assert c.end_offsets([tp], timeout_ms=15000) == {tp: 10}
        found = c.offsets_for_times({tp: base + 450}, timeout_ms=15000)
        assert found[tp] is not None and found[tp].offset == 5
        assert c.offsets_for_times({tp: base + 10_000}, timeout_ms=15000)[tp] is None
    finally:
        c.close()


def test_admin_create_describe_delete(broker, topic):
    a = kp_admin(broker.bootstrap)
    try:
        a.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                 "configs": {"retention.ms": "7200000"}}})
        assert topic in a.list_topics()
        assert partition_count(broker.bootstrap, topic) == 3
        desc = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        configs = desc["topic"][topic]
        assert configs["retention.ms"]["value"] == "7200000", configs.get("retention.ms")

        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})

        a.delete_topics([topic])
        wait_until(lambda: topic not in topic_names(broker.bootstrap), what="topic deleted")
        wait_until(lambda: broker.partition_dirs(topic) == [], what="partition dirs removed")

        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([topic])
    finally:
        a.close()


def test_admin_describe_broker_config(start_broker):
    b = start_broker(config={"num.partitions": 4})
    a = kp_admin(b.bootstrap)
    try:
        (node,) = a.describe_cluster()["brokers"]
        node_id = str(node["broker_id"] if "broker_id" in node else node["node_id"])
        desc = a.describe_configs([ConfigResource(ConfigResourceType.BROKER, node_id)], config_filter="all")
        configs = desc["broker"][node_id]
        assert configs["num.partitions"]["value"] == "4", configs.get("num.partitions")
    finally:
        a.close()


def test_admin_create_partitions_and_delete_records(broker, topic):
    create(broker.bootstrap, topic)
    p = kp_producer(broker.bootstrap)
    try:
        send_all(p, topic, [b"r%02d" % i for i in range(20)])
    finally:
        p.close(timeout=TIMEOUT_S)
    a = kp_admin(broker.bootstrap)
    try:
        a.create_partitions({topic: NewPartitions(3)})
        assert partition_count(broker.bootstrap, topic) == 3
        with pytest.raises(InvalidPartitionsError):
            a.create_partitions({topic: NewPartitions(2)})

        tp = TopicPartition(topic, 0)
        result = a.delete_records({tp: 12})
        assert result[tp]["low_watermark"] == 12, result
        with pytest.raises(OffsetOutOfRangeError):
            a.delete_records({tp: 21})
    finally:
        a.close()
    assert watermarks(broker.bootstrap, topic, 0) == (12, 20)
    c = kp_consumer(broker.bootstrap)
    try:
        c.assign([tp])
        assert c.beginning_offsets([tp], timeout_ms=15000) == {tp: 12}
        c.seek_to_beginning(tp)
        assert [(r.offset, r.value) for r in read(c, 8)] == [(i, b"r%02d" % i) for i in range(12, 20)]
    finally:
        c.close()
