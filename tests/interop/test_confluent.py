"""confluent-kafka (bundles librdkafka 2.16, a new client generation) as the judge."""

import os
import threading
import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from interop_helpers import (
    CLIENT_TIMEOUT_S,
    CODECS,
    admin,
    assert_delivered,
    broker_id,
    consume,
    consumer,
    create_topic,
    kcat,
    partition_count,
    produce,
    producer,
    stored_batch_codecs,
    topic_names,
    wait_until,
    watermarks,
)

# ---------------------------------------------------------------- produce


def test_acks_0_delivers(broker, topic):
    create_topic(broker.bootstrap, topic)
    msgs = [{"partition": 0, "key": b"k%d" % i, "value": b"v%d" % i} for i in range(20)]
    reports = produce(producer(broker.bootstrap, acks=0), topic, msgs)
    assert_delivered(reports)
    # No response under acks=0: wait (bounded) until the broker has appended.
    wait_until(lambda: watermarks(broker.bootstrap, topic, 0)[1] == 20, what="20 records appended")
    got = consume(broker.bootstrap, topic, 0, OFFSET_BEGINNING, 20)
    assert [(m.offset(), m.key(), m.value()) for m in got] == [(i, b"k%d" % i, b"v%d" % i) for i in range(20)]


@pytest.mark.parametrize("acks", ["1", "all"])
def test_delivery_reports_give_dense_offsets_per_partition(broker, topic, acks):
    create_topic(broker.bootstrap, topic, partitions=3)
    msgs = [{"key": b"key-%d" % i, "value": b"value-%d" % i} for i in range(300)]
    reports = produce(producer(broker.bootstrap, acks=acks), topic, msgs)
    assert_delivered(reports)
    by_partition = {}
    for _err, p, off, key, value in reports:
        by_partition.setdefault(p, []).append((off, key, value))
    assert set(by_partition) <= {0, 1, 2}
    assert len(by_partition) > 1, "keyed messages should spread over partitions"
    for p, entries in by_partition.items():
        offsets = sorted(off for off, _, _ in entries)
        assert offsets == list(range(len(entries))), f"partition {p}: offsets not dense: {offsets[:20]}"
        got = consume(broker.bootstrap, topic, p, OFFSET_BEGINNING, len(entries))
        assert [(m.offset(), m.key(), m.value()) for m in got] == sorted(entries)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_compression_type_round_trips_and_is_stored_as_sent(broker, topic, codec):
    create_topic(broker.bootstrap, topic)
    msgs = [{"partition": 0, "key": b"k%d" % i, "value": (b"%s-%05d-" % (codec.encode(), i)) + b"y" * 300}
            for i in range(500)]
    reports = produce(producer(broker.bootstrap, acks="all", compression_type=codec, linger_ms=50), topic, msgs)
    assert_delivered(reports)
    assert [r[2] for r in reports] == list(range(500))
    got = consume(broker.bootstrap, topic, 0, OFFSET_BEGINNING, 500)
    assert [(m.offset(), m.key(), m.value()) for m in got] == [(i, m["key"], m["value"]) for i, m in enumerate(msgs)]
    codecs = stored_batch_codecs(broker.data_dir, topic, 0)
    assert codecs and set(codecs) == {CODECS[codec]}, f"stored codecs {codecs}, sent {codec}"


def test_consumer_reads_back_keys_values_headers_and_timestamps(broker, topic):
    create_topic(broker.bootstrap, topic)
    base_ts = 1_700_000_000_000
    msgs = []
    for i in range(30):
        msgs.append({
            "partition": 0,
            "key": None if i % 10 == 3 else b"key-%d" % i,
            "value": None if i % 10 == 7 else b"value-%d" % i,
            "headers": [("h-index", str(i).encode()), ("h-empty", b"")] if i % 2 == 0 else None,
            "timestamp": base_ts + i * 1000,
        })
    reports = produce(producer(broker.bootstrap, acks="all"), topic, msgs)
    assert_delivered(reports)
    got = consume(broker.bootstrap, topic, 0, OFFSET_BEGINNING, 30)
    for i, (m, sent) in enumerate(zip(got, msgs)):
        assert m.offset() == i
        assert m.key() == sent["key"]
        assert m.value() == sent["value"]
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, sent["timestamp"])
        expected_headers = sent["headers"]
        assert (m.headers() or None) == expected_headers, f"offset {i}: headers {m.headers()}"


def test_replay_from_a_middle_offset(broker, topic):
    create_topic(broker.bootstrap, topic)
    msgs = [{"partition": 0, "value": b"m%d" % i} for i in range(100)]
    assert_delivered(produce(producer(broker.bootstrap), topic, msgs, flush_each=False))
    got = consume(broker.bootstrap, topic, 0, 42, 58)
    assert [(m.offset(), m.value()) for m in got] == [(i, b"m%d" % i) for i in range(42, 100)]
    # And again: replay is repeatable.
    got = consume(broker.bootstrap, topic, 0, 99, 1)
    assert (got[0].offset(), got[0].value()) == (99, b"m99")


def test_replay_from_offsets_inside_separately_produced_batches(broker, topic):
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap, linger_ms=0)
    msgs = [{"partition": 0, "value": b"b%d" % i} for i in range(12)]
    assert_delivered(produce(p, topic, msgs, flush_each=True))
    for start in (0, 1, 5, 11):
        got = consume(broker.bootstrap, topic, 0, start, 12 - start)
        assert [m.offset() for m in got] == list(range(start, 12))


def test_fetch_beyond_the_end_resets_to_earliest(broker, topic):
    """OFFSET_OUT_OF_RANGE from the broker triggers auto.offset.reset."""
    create_topic(broker.bootstrap, topic)
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": 0, "value": b"x%d" % i} for i in range(10)]))
    got = consume(broker.bootstrap, topic, 0, 1000, 10, auto_offset_reset="earliest")
    assert [m.offset() for m in got] == list(range(10))


def test_fetch_beyond_the_end_with_reset_error_reports_offset_out_of_range(broker, topic):
    create_topic(broker.bootstrap, topic)
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": 0, "value": b"x"}] * 3))
    c = consumer(broker.bootstrap, auto_offset_reset="error")
    try:
        c.assign([TopicPartition(topic, 0, 50)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        err = None
        while err is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is not None, f"unexpected message at offset {m.offset()}"
                err = m.error()
        assert err is not None, "no error for a fetch at offset 50 of a 3-record partition"
        # librdkafka turns the broker's OFFSET_OUT_OF_RANGE into _AUTO_OFFSET_RESET
        # when the reset policy is "error".
        assert err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), err
    finally:
        c.close()


def test_get_watermark_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": 0, "value": b"w"}] * 17))
    assert watermarks(broker.bootstrap, topic, 0) == (0, 17)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 0)


def _offsets_for_times(bootstrap, topic, timestamps):
    c = consumer(bootstrap)
    try:
        res = c.offsets_for_times([TopicPartition(topic, 0, ts) for ts in timestamps], timeout=CLIENT_TIMEOUT_S)
        for tp in res:
            assert tp.error is None, tp.error
        return [tp.offset for tp in res]
    finally:
        c.close()


@pytest.mark.parametrize("batching", ["one_batch_per_record", "all_in_one_batch"])
def test_offsets_for_times_lands_on_first_record_at_or_after_timestamp(broker, topic, batching):
    create_topic(broker.bootstrap, topic)
    base = 1_650_000_000_000
    msgs = [{"partition": 0, "value": b"t%d" % i, "timestamp": base + i * 1000} for i in range(20)]
    p = producer(broker.bootstrap, linger_ms=0 if batching == "one_batch_per_record" else 200)
    reports = produce(p, topic, msgs, flush_each=(batching == "one_batch_per_record"))
    assert_delivered(reports)
    queries = [base - 5000, base, base + 5000, base + 5500, base + 19_000, base + 19_001]
    assert _offsets_for_times(broker.bootstrap, topic, queries[:1]) == [0]
    assert _offsets_for_times(broker.bootstrap, topic, queries[1:2]) == [0]
    assert _offsets_for_times(broker.bootstrap, topic, queries[2:3]) == [5]
    assert _offsets_for_times(broker.bootstrap, topic, queries[3:4]) == [6]
    assert _offsets_for_times(broker.bootstrap, topic, queries[4:5]) == [19]
    # Past the last timestamp: no such offset (librdkafka shows it as OFFSET_END, -1).
    assert _offsets_for_times(broker.bootstrap, topic, queries[5:6]) == [OFFSET_END]


# ---------------------------------------------------------------- admin


def _describe(bootstrap, rtype, name):
    fs = admin(bootstrap).describe_configs([ConfigResource(rtype, name)], request_timeout=CLIENT_TIMEOUT_S)
    (f,) = fs.values()
    return {k: v.value for k, v in f.result(timeout=CLIENT_TIMEOUT_S).items()}


def test_create_topic_with_6_partitions_and_retention_config(broker, topic):
    fs = admin(broker.bootstrap).create_topics(
        [NewTopic(topic, num_partitions=6, replication_factor=1, config={"retention.ms": "3600000"})],
        request_timeout=CLIENT_TIMEOUT_S,
    )
    fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert partition_count(broker.bootstrap, topic) == 6
    assert broker.partition_dirs(topic) == sorted(f"{topic}-{p}" for p in range(6))
    configs = _describe(broker.bootstrap, ResourceType.TOPIC, topic)
    assert configs.get("retention.ms") == "3600000", configs
    # Each partition accepts writes.
    msgs = [{"partition": p, "value": b"p%d" % p} for p in range(6)]
    reports = produce(producer(broker.bootstrap), topic, msgs)
    assert_delivered(reports)
    assert [(r[1], r[2]) for r in reports] == [(p, 0) for p in range(6)]


def test_describe_configs_of_a_topic_without_overrides_shows_defaults(broker, topic):
    create_topic(broker.bootstrap, topic)
    configs = _describe(broker.bootstrap, ResourceType.TOPIC, topic)
    assert configs.get("retention.ms") == "604800000", configs  # 7 days


def test_create_existing_topic_fails_with_topic_already_exists(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    fs = admin(broker.bootstrap).create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert partition_count(broker.bootstrap, topic) == 2


def test_validate_only_leaves_nothing_behind(broker, topic):
    fs = admin(broker.bootstrap).create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "1000"})],
        validate_only=True,
        request_timeout=CLIENT_TIMEOUT_S,
    )
    fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert topic not in topic_names(broker.bootstrap)
    assert broker.partition_dirs(topic) == []
    # Creating it for real afterwards works and has the requested shape.
    create_topic(broker.bootstrap, topic, partitions=3)
    assert partition_count(broker.bootstrap, topic) == 3


def test_validate_only_still_reports_errors(broker, topic):
    create_topic(broker.bootstrap, topic)
    fs = admin(broker.bootstrap).create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1)], validate_only=True
    )
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_describe_broker_config_reflects_config_file(start_broker, topic):
    b = start_broker(config={"num.partitions": 2, "message.max.bytes": 123456})
    configs = _describe(b.bootstrap, ResourceType.BROKER, str(broker_id(b.bootstrap)))
    assert configs.get("num.partitions") == "2", configs
    assert configs.get("message.max.bytes") == "123456", configs
    # A topic created without num_partitions / configs takes the broker's defaults.
    fs = admin(b.bootstrap).create_topics([NewTopic(topic)], request_timeout=CLIENT_TIMEOUT_S)
    fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert partition_count(b.bootstrap, topic) == 2
    assert _describe(b.bootstrap, ResourceType.TOPIC, topic).get("max.message.bytes") == "123456"


def test_incremental_alter_configs_sets_and_deletes_topic_configs(broker, topic):
    create_topic(broker.bootstrap, topic, config={"retention.ms": "3600000"})

    def alter(*entries):
        resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
        (f,) = admin(broker.bootstrap).incremental_alter_configs([resource]).values()
        f.result(timeout=CLIENT_TIMEOUT_S)

    alter(ConfigEntry("segment.ms", "60000", incremental_operation=AlterConfigOpType.SET),
          ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE))
    configs = _describe(broker.bootstrap, ResourceType.TOPIC, topic)
    assert configs.get("segment.ms") == "60000", configs
    assert configs.get("retention.ms") == "604800000", "deleted: back to the broker default"
    with pytest.raises(KafkaException) as e:
        alter(ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET))
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def _create_partitions(bootstrap, topic, count, validate_only=False):
    fs = admin(bootstrap).create_partitions([NewPartitions(topic, count)], validate_only=validate_only,
                                            request_timeout=CLIENT_TIMEOUT_S)
    fs[topic].result(timeout=CLIENT_TIMEOUT_S)


def test_create_partitions_adds_partitions_that_take_records_and_survive_restart(start_broker, topic, kcat_bin):
    b = start_broker()
    create_topic(b.bootstrap, topic, partitions=2)
    old = [{"partition": p, "value": b"old-%d-%d" % (p, i)} for p in range(2) for i in range(5)]
    assert_delivered(produce(producer(b.bootstrap), topic, old))

    _create_partitions(b.bootstrap, topic, 5, validate_only=True)
    assert partition_count(b.bootstrap, topic) == 2
    assert b.partition_dirs(topic) == [f"{topic}-0", f"{topic}-1"]

    _create_partitions(b.bootstrap, topic, 5)
    assert partition_count(b.bootstrap, topic) == 5
    assert b.partition_dirs(topic) == sorted(f"{topic}-{p}" for p in range(5))
    # A fresh producer sees the new partitions and they start at offset 0;
    # the old partitions keep their records.
    reports = produce(producer(b.bootstrap), topic, [{"partition": p, "value": b"new-%d" % p} for p in range(5)])
    assert_delivered(reports)
    assert [(r[1], r[2]) for r in reports] == [(0, 5), (1, 5), (2, 0), (3, 0), (4, 0)]
    assert [m.value() for m in consume(b.bootstrap, topic, 0, OFFSET_BEGINNING, 6)] == \
        [b"old-0-%d" % i for i in range(5)] + [b"new-0"]
    out = kcat(kcat_bin, b.bootstrap, "-C", "-t", topic, "-p", "4", "-o", "beginning", "-e", "-f", "%s\n").stdout
    assert out.split() == ["new-4"]

    # Shrinking, or asking for the count it has, is INVALID_PARTITIONS.
    for count in (3, 5):
        with pytest.raises(KafkaException) as e:
            _create_partitions(b.bootstrap, topic, count)
        assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    with pytest.raises(KafkaException) as e:
        _create_partitions(b.bootstrap, topic + "-missing", 3)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    b.restart(kill=True)
    assert partition_count(b.bootstrap, topic) == 5
    assert watermarks(b.bootstrap, topic, 4) == (0, 1)


def test_delete_topics_removes_partition_dirs(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": p, "value": b"d"} for p in range(3)]))
    assert len(broker.partition_dirs(topic)) == 3
    fs = admin(broker.bootstrap).delete_topics([topic], request_timeout=CLIENT_TIMEOUT_S)
    fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_until(lambda: topic not in topic_names(broker.bootstrap), what="topic gone from metadata")
    wait_until(lambda: broker.partition_dirs(topic) == [], what="partition dirs removed from the data dir")
    leftovers = [d for d in os.listdir(broker.data_dir) if d.startswith(topic)]
    assert leftovers == [], leftovers


def test_delete_unknown_topic_fails_with_unknown_topic(broker, topic):
    fs = admin(broker.bootstrap).delete_topics([topic], request_timeout=CLIENT_TIMEOUT_S)
    with pytest.raises(KafkaException) as e:
        fs[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_deleted_topic_can_be_recreated_empty(broker, topic):
    create_topic(broker.bootstrap, topic)
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": 0, "value": b"old"}] * 5))
    admin(broker.bootstrap).delete_topics([topic])[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_until(lambda: topic not in topic_names(broker.bootstrap), what="topic deleted")
    create_topic(broker.bootstrap, topic, partitions=2)
    assert partition_count(broker.bootstrap, topic) == 2
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)


def test_list_topics_shows_broker_and_topics(broker, topic):
    create_topic(broker.bootstrap, topic + "-a", partitions=1)
    create_topic(broker.bootstrap, topic + "-b", partitions=4)
    md = admin(broker.bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    assert len(md.brokers) == 1
    (b,) = md.brokers.values()
    assert (b.host, b.port) == ("127.0.0.1", broker.port)
    assert md.controller_id == b.id
    assert {topic + "-a", topic + "-b"} <= set(md.topics)
    assert len(md.topics[topic + "-b"].partitions) == 4
    for p in md.topics[topic + "-b"].partitions.values():
        assert p.leader == b.id and p.replicas == [b.id] and p.isrs == [b.id]


def test_produce_auto_creates_topic(broker, topic):
    assert topic not in topic_names(broker.bootstrap)
    reports = produce(producer(broker.bootstrap), topic, [{"value": b"hello"}])
    assert_delivered(reports)
    assert (reports[0][1], reports[0][2]) == (0, 0)
    assert partition_count(broker.bootstrap, topic) == 1  # num.partitions default
    got = consume(broker.bootstrap, topic, 0, OFFSET_BEGINNING, 1)
    assert got[0].value() == b"hello"


def test_auto_create_uses_num_partitions_from_config(start_broker, topic):
    b = start_broker(config={"num.partitions": 3})
    assert_delivered(produce(producer(b.bootstrap), topic, [{"value": b"x"}]))
    assert partition_count(b.bootstrap, topic) == 3


def test_auto_create_disabled_rejects_unknown_topic(start_broker, topic):
    b = start_broker(config={"auto.create.topics.enable": False})
    p = producer(b.bootstrap, message_timeout_ms=5000, topic_metadata_propagation_max_ms=1000)
    reports = produce(p, topic, [{"value": b"x"}])
    err = reports[0][0]
    assert err is not None, "produce to a missing topic succeeded with auto-create disabled"
    assert topic not in topic_names(b.bootstrap)
    assert b.partition_dirs(topic) == []
    # Explicit creation still works.
    create_topic(b.bootstrap, topic)
    assert_delivered(produce(producer(b.bootstrap), topic, [{"value": b"x"}]))


@pytest.mark.parametrize(
    "name",
    ["has space", "bad/slash", "../escape", ".", "..", "a" * 250, "tab\tname", "ünïcödé"],
    ids=["space", "slash", "dotdot-slash", "dot", "dotdot", "250-chars", "tab", "non-ascii"],
)
def test_create_topics_rejects_invalid_name(broker, name):
    os.makedirs(broker.data_dir, exist_ok=True)
    before = (sorted(os.listdir(broker.dir)), sorted(os.listdir(broker.data_dir)))
    fs = admin(broker.bootstrap).create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                              request_timeout=CLIENT_TIMEOUT_S)
    with pytest.raises(KafkaException) as e:
        fs[name].result(timeout=CLIENT_TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, e.value
    # Nothing created anywhere, in particular not outside the data dir.
    assert name not in topic_names(broker.bootstrap)
    after = (sorted(os.listdir(broker.dir)), sorted(os.listdir(broker.data_dir)))
    assert after == before, f"files appeared: before {before}, after {after}"


def test_produce_to_invalid_topic_name_fails_without_hanging(broker, topic):
    p = producer(broker.bootstrap, message_timeout_ms=10000)
    reports = produce(p, "bad topic name!", [{"value": b"x"}])
    assert reports[0][0] is not None, "produce to an invalid topic name succeeded"
    # The broker is fine afterwards.
    assert_delivered(produce(producer(broker.bootstrap), topic, [{"value": b"ok"}]))


def test_message_above_broker_message_max_bytes_gets_msg_size_too_large(start_broker, topic):
    b = start_broker(config={"message.max.bytes": 10000})
    create_topic(b.bootstrap, topic)
    p = producer(b.bootstrap, acks="all")
    reports = produce(p, topic, [{"partition": 0, "value": b"z" * 20000}])
    err = reports[0][0]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    # Nothing was stored; a small message still goes to offset 0.
    reports = produce(p, topic, [{"partition": 0, "value": b"small"}])
    assert_delivered(reports)
    assert reports[0][2] == 0
    assert watermarks(b.bootstrap, topic, 0) == (0, 1)


def test_topic_max_message_bytes_override_is_enforced(broker, topic):
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "5000"})
    p = producer(broker.bootstrap, acks="all")
    reports = produce(p, topic, [{"partition": 0, "value": b"q" * 8000}])
    err = reports[0][0]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, err
    reports = produce(p, topic, [{"partition": 0, "value": b"q" * 1000}])
    assert_delivered(reports)
    assert reports[0][2] == 0


def test_long_poll_consumer_receives_message_produced_later(broker, topic):
    create_topic(broker.bootstrap, topic)
    c = consumer(broker.bootstrap, fetch_wait_max_ms=5000)
    errors = []

    def produce_later():
        try:
            time.sleep(1.0)
            assert_delivered(produce(producer(broker.bootstrap), topic, [{"partition": 0, "value": b"late"}]))
        except Exception as e:  # reported by the main thread
            errors.append(e)

    t = threading.Thread(target=produce_later, daemon=True)
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        t.start()
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        got = None
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None:
                assert m.error() is None, m.error()
                got = m
        t.join(CLIENT_TIMEOUT_S)
        assert not errors, errors
        assert got is not None, "the consumer never received the message produced 1 s later"
        assert (got.offset(), got.value()) == (0, b"late")
    finally:
        c.close()
