//! `strom serve` driven with raw Kafka requests: the APIs, their errors, and
//! bad input that must not hurt anyone else.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{partition_dirs, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_storage::testing::BatchBuilder;

const NONE: i16 = 0;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const UNSUPPORTED_VERSION: i16 = 35;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> CreateTopicsResponse {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![creatable(topic, partitions, 1, configs)]);
    client.call(ApiKey::CreateTopics, 5, &request)
}

/// One CreateTopics entry.
fn creatable(topic: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        )
}

fn produce_request(topic: &str, partition: i32, records: Vec<u8>, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(records)))])])
}

/// (error code, base offset) of a single-partition produce.
fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
    acks: i16,
) -> (i16, i64) {
    let response: ProduceResponse = client.call(
        ApiKey::Produce,
        9,
        &produce_request(topic, partition, records, acks),
    );
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// (error code, high watermark, records) of a single-partition fetch.
fn fetch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> (i16, i64, Bytes) {
    let response: FetchResponse = client.call(
        ApiKey::Fetch,
        11,
        &fetch_request(topic, partition, offset, max_wait_ms),
    );
    let p = &response.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

/// (error, offset, timestamp) of one partition's ListOffsets at v5 (v7 for
/// MAX_TIMESTAMP, -3, which needs it).
fn list_offset(
    client: &mut Client,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> (i16, i64, i64) {
    let version = if timestamp == -3 { 7 } else { 5 };
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let response: ListOffsetsResponse = client.call(ApiKey::ListOffsets, version, &request);
    let p = &response.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

fn metadata(client: &mut Client, topics: Option<&[&str]>, auto_create: bool) -> MetadataResponse {
    let request = MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(auto_create);
    client.call(ApiKey::Metadata, 9, &request)
}

fn batch(values: &[&str], timestamp: i64) -> Vec<u8> {
    values
        .iter()
        .enumerate()
        .fold(BatchBuilder::new(timestamp), |b, (i, v)| {
            b.record(b"k", v.as_bytes(), i as i64)
        })
        .build()
}

/// Base offsets and record counts of the batches in fetched bytes.
fn batches_in(records: &[u8]) -> Vec<(i64, i32)> {
    let mut out = Vec::new();
    let mut rest = records;
    while rest.len() >= 61 {
        let base = i64::from_be_bytes(rest[0..8].try_into().unwrap());
        let len = i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize + 12;
        let count = i32::from_be_bytes(rest[57..61].try_into().unwrap());
        if rest.len() < len {
            break;
        }
        out.push((base, count));
        rest = &rest[len..];
    }
    out
}

#[test]
fn api_versions_advertises_the_designed_ranges() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    let response: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, NONE);
    let range = |key: ApiKey| {
        response
            .api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| (k.min_version, k.max_version))
    };
    assert_eq!(range(ApiKey::Produce), Some((0, 11)));
    assert_eq!(range(ApiKey::Fetch), Some((4, 12)));
    assert_eq!(range(ApiKey::ApiVersions), Some((0, 4)));
    assert_eq!(range(ApiKey::Metadata), Some((0, 12)));
    assert_eq!(range(ApiKey::CreatePartitions), Some((0, 3)));
    assert_eq!(range(ApiKey::DeleteRecords), Some((0, 2)));
}

#[test]
fn api_versions_from_the_future_gets_error_35_and_the_v0_fallback() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    // ApiVersions v99, correlation 42, followed by a body we cannot know.
    client.send_raw(&[0, 18, 0, 99, 0, 0, 0, 42, 0xde, 0xad, 0xbe, 0xef]);
    let frame = client
        .read_frame()
        .expect("a response, not a closed connection");
    let expected: &[u8] = &[0, 0, 0, 42, 0, 35, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4];
    assert_eq!(&frame[..], expected);
}

#[test]
fn produced_batches_are_fetched_back_with_dense_offsets() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    assert_eq!(
        create_topic(&mut client, "events", 2, &[]).topics[0].error_code,
        NONE
    );
    assert_eq!(
        produce(&mut client, "events", 1, batch(&["a", "b", "c"], 1_000), -1),
        (NONE, 0)
    );
    assert_eq!(
        produce(&mut client, "events", 1, batch(&["d"], 2_000), 1),
        (NONE, 3)
    );
    let (code, hw, records) = fetch(&mut client, "events", 1, 0, 0);
    assert_eq!((code, hw), (NONE, 4));
    assert_eq!(batches_in(&records), vec![(0, 3), (3, 1)]);
    // Replay from the middle starts at the batch holding the offset.
    let (_, _, records) = fetch(&mut client, "events", 1, 3, 0);
    assert_eq!(batches_in(&records), vec![(3, 1)]);
    // The other partition is untouched.
    let (code, hw, records) = fetch(&mut client, "events", 0, 0, 0);
    assert_eq!((code, hw, records.len()), (NONE, 0, 0));
}

#[test]
fn fetch_beyond_the_log_end_is_offset_out_of_range() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "t", 1, &[]);
    produce(&mut client, "t", 0, batch(&["x"], 1), 1);
    assert_eq!(fetch(&mut client, "t", 0, 5, 0).0, OFFSET_OUT_OF_RANGE);
    assert_eq!(fetch(&mut client, "t", 0, -1, 0).0, OFFSET_OUT_OF_RANGE);
    assert_eq!(
        fetch(&mut client, "nope", 0, 0, 0).0,
        UNKNOWN_TOPIC_OR_PARTITION
    );
}

#[test]
fn a_waiting_fetch_returns_as_soon_as_data_arrives() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "t", 1, &[]);
    let addr = broker.addr.clone();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        produce(&mut Client::connect(&addr), "t", 0, batch(&["late"], 5), 1)
    });
    // A 20 s wait that must be cut short by the append (no timing
    // assertion beyond "it came back with the data").
    let (code, _, records) = fetch(&mut client, "t", 0, 0, 20_000);
    assert_eq!(code, NONE);
    assert_eq!(batches_in(&records), vec![(0, 1)]);
    assert_eq!(producer.join().unwrap(), (NONE, 0));
}

#[test]
fn list_offsets_finds_earliest_latest_and_by_timestamp() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "t", 1, &[]);
    produce(&mut client, "t", 0, batch(&["a", "b"], 1_000), 1);
    produce(&mut client, "t", 0, batch(&["c"], 5_000), 1);
    assert_eq!(list_offset(&mut client, "t", 0, -2).1, 0);
    assert_eq!(list_offset(&mut client, "t", 0, -1).1, 3);
    assert_eq!(list_offset(&mut client, "t", 0, 4_000), (NONE, 2, 5_000));
    assert_eq!(list_offset(&mut client, "t", 0, 9_000), (NONE, -1, -1));
    // Inside one batch, the first record at or after the timestamp.
    let spread = BatchBuilder::new(10_000)
        .record(b"k", b"d", 0)
        .record(b"k", b"e", 1_000)
        .record(b"k", b"f", 2_000)
        .build();
    produce(&mut client, "t", 0, spread, 1);
    assert_eq!(list_offset(&mut client, "t", 0, 10_500), (NONE, 4, 11_000));
    assert_eq!(list_offset(&mut client, "t", 0, 12_000), (NONE, 5, 12_000));
    // MAX_TIMESTAMP (-3, ListOffsets v7): the record with the largest timestamp.
    produce(&mut client, "t", 0, batch(&["old"], 500), 1);
    assert_eq!(list_offset(&mut client, "t", 0, -3), (NONE, 5, 12_000));
}

#[test]
fn a_batch_with_a_bad_crc_is_refused_and_not_stored() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "t", 1, &[]);
    let mut bad = batch(&["payload"], 1);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(produce(&mut client, "t", 0, bad, -1).0, CORRUPT_MESSAGE);
    assert_eq!(fetch(&mut client, "t", 0, 0, 0).1, 0, "nothing stored");
    assert_eq!(
        produce(&mut client, "t", 0, batch(&["ok"], 1), -1),
        (NONE, 0)
    );
}

#[test]
fn a_batch_over_max_message_bytes_is_refused() {
    let broker = TestBroker::start_with_config(Some("[log]\nmessage_max_bytes = 1000\n"));
    let mut client = broker.client();
    create_topic(&mut client, "t", 1, &[]);
    let big = "x".repeat(2000);
    assert_eq!(
        produce(&mut client, "t", 0, batch(&[&big], 1), 1).0,
        MESSAGE_TOO_LARGE
    );
    assert_eq!(
        produce(&mut client, "t", 0, batch(&["small"], 1), 1),
        (NONE, 0)
    );
}

#[test]
fn invalid_topic_names_are_refused_everywhere() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    for bad in ["has space", "..", "a/b", &"x".repeat(250)] {
        let created = create_topic(&mut client, bad, 1, &[]);
        assert_eq!(
            created.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
            "create {bad:?}"
        );
        let meta = metadata(&mut client, Some(&[bad]), true);
        assert_eq!(
            meta.topics[0].error_code, INVALID_TOPIC_EXCEPTION,
            "metadata {bad:?}"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(broker.data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "meta" && n != ".lock")
        .collect();
    assert!(entries.is_empty(), "no partition dirs, found {entries:?}");
}

#[test]
fn create_topics_checks_partitions_replication_and_configs() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    // (topic, partitions, replication factor, configs, expected error)
    type Case<'a> = (&'a str, i32, i16, &'a [(&'a str, &'a str)], i16);
    let cases: &[Case] = &[
        ("zero-partitions", 0, 1, &[], INVALID_PARTITIONS),
        ("three-replicas", 1, 3, &[], INVALID_REPLICATION_FACTOR),
        (
            "bad-config",
            1,
            1,
            &[("retention.ms", "soon")],
            INVALID_CONFIG,
        ),
        ("unknown-config", 1, 1, &[("no.such", "1")], INVALID_CONFIG),
        ("good", 3, -1, &[("retention.ms", "60000")], NONE),
        ("good", 3, 1, &[], TOPIC_ALREADY_EXISTS),
    ];
    for &(topic, partitions, rf, configs, expected) in cases {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![creatable(topic, partitions, rf, configs)]);
        let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
        assert_eq!(
            response.topics[0].error_code, expected,
            "case {topic} {partitions} {rf} {configs:?}"
        );
    }
    assert_eq!(partition_dirs(&broker.data_dir(), "good").len(), 3);
}

#[test]
fn validate_only_creates_nothing() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    let request = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name("dry"))
            .with_num_partitions(4)
            .with_replication_factor(1)]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(
        (
            response.topics[0].error_code,
            response.topics[0].num_partitions
        ),
        (NONE, 4)
    );
    assert!(
        metadata(&mut client, Some(&["dry"]), false).topics[0].error_code
            == UNKNOWN_TOPIC_OR_PARTITION
    );
    assert!(partition_dirs(&broker.data_dir(), "dry").is_empty());
}

#[test]
fn metadata_auto_creates_only_when_allowed() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    let no = metadata(&mut client, Some(&["auto"]), false);
    assert_eq!(no.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    let yes = metadata(&mut client, Some(&["auto"]), true);
    assert_eq!(yes.topics[0].error_code, NONE);
    assert_eq!(yes.topics[0].partitions.len(), 1);
    assert_eq!(
        yes.brokers[0].port.to_string(),
        broker.addr.rsplit(':').next().unwrap()
    );

    let off = TestBroker::start_with_config(Some("[topics]\nauto_create = false\n"));
    let refused = metadata(&mut off.client(), Some(&["auto"]), true);
    assert_eq!(refused.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
}

#[test]
fn delete_topics_removes_the_data_from_disk() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "gone", 3, &[]);
    produce(&mut client, "gone", 2, batch(&["x"], 1), -1);
    assert_eq!(partition_dirs(&broker.data_dir(), "gone").len(), 3);
    let request =
        DeleteTopicsRequest::default().with_topic_names(vec![name("gone"), name("never")]);
    let response: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 4, &request);
    let codes: Vec<i16> = response.responses.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, vec![NONE, UNKNOWN_TOPIC_OR_PARTITION]);
    assert!(partition_dirs(&broker.data_dir(), "gone").is_empty());
    // A new topic of the same name starts empty.
    create_topic(&mut client, "gone", 1, &[]);
    assert_eq!(fetch(&mut client, "gone", 0, 0, 0).1, 0);
}

fn create_partitions(
    client: &mut Client,
    version: i16,
    topics: Vec<create_partitions_request::CreatePartitionsTopic>,
    validate_only: bool,
) -> Vec<(String, i16)> {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_validate_only(validate_only)
        .with_topics(topics);
    let response: CreatePartitionsResponse =
        client.call(ApiKey::CreatePartitions, version, &request);
    response
        .results
        .iter()
        .map(|r| (r.name.0.to_string(), r.error_code))
        .collect()
}

fn grow(topic: &str, count: i32) -> create_partitions_request::CreatePartitionsTopic {
    create_partitions_request::CreatePartitionsTopic::default()
        .with_name(name(topic))
        .with_count(count)
}

#[test]
fn create_partitions_grows_topics_and_refuses_what_it_cannot_do() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "grow", 1, &[]);
    create_topic(&mut client, "twice", 1, &[]);
    produce(&mut client, "grow", 0, batch(&["a", "b"], 1), -1);
    let on = |ids: &[i32]| {
        create_partitions_request::CreatePartitionsAssignment::default()
            .with_broker_ids(ids.iter().map(|&i| BrokerId(i)).collect())
    };
    // v0 (not flexible) and v3 (flexible) both decode and answer.
    for (version, count) in [(0, 2), (3, 3)] {
        let results = create_partitions(&mut client, version, vec![grow("grow", count)], false);
        assert_eq!(results, vec![("grow".to_string(), NONE)], "v{version}");
    }
    let results = create_partitions(
        &mut client,
        3,
        vec![
            grow("grow", 3),
            grow("never", 2),
            grow("twice", 4),
            grow("twice", 5),
            grow("grow", 9).with_assignments(Some(vec![on(&[1])])),
        ],
        false,
    );
    let codes: Vec<i16> = results.iter().map(|r| r.1).collect();
    assert_eq!(
        codes,
        vec![
            INVALID_REQUEST, // "grow" is named twice
            UNKNOWN_TOPIC_OR_PARTITION,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
        ]
    );
    let results = create_partitions(
        &mut client,
        2,
        vec![
            grow("grow", 2),
            grow("twice", 3).with_assignments(Some(vec![on(&[0, 1]), on(&[0])])),
        ],
        false,
    );
    let codes: Vec<i16> = results.iter().map(|r| r.1).collect();
    assert_eq!(codes, vec![INVALID_PARTITIONS, INVALID_REPLICA_ASSIGNMENT]);
    // validate_only checks and changes nothing; an assignment to broker 0 is
    // fine when there is one per new partition.
    let results = create_partitions(&mut client, 3, vec![grow("twice", 6)], true);
    assert_eq!(results[0].1, NONE);
    let results = create_partitions(
        &mut client,
        3,
        vec![grow("grow", 5).with_assignments(Some(vec![on(&[0])]))],
        false,
    );
    assert_eq!(
        results[0].1, INVALID_REPLICA_ASSIGNMENT,
        "1 assignment for 2"
    );
    let results = create_partitions(
        &mut client,
        3,
        vec![grow("grow", 4).with_assignments(Some(vec![on(&[0])]))],
        false,
    );
    assert_eq!(results[0].1, NONE);
    let counts: Vec<(String, usize)> = metadata(&mut client, Some(&["grow", "twice"]), false)
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.partitions.len()))
        .collect();
    assert_eq!(counts, vec![("grow".into(), 4), ("twice".into(), 1)]);
    assert_eq!(partition_dirs(&broker.data_dir(), "grow").len(), 4);
    // The old partition keeps its records; a new one starts at 0.
    assert_eq!(fetch(&mut client, "grow", 0, 0, 0).1, 2);
    assert_eq!(produce(&mut client, "grow", 3, batch(&["c"], 1), -1).1, 0);
}

#[test]
fn delete_records_answers_per_partition() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "dr", 2, &[]);
    produce(&mut client, "dr", 0, batch(&["a", "b", "c", "d"], 1), -1);
    let part = |p: i32, offset: i64| {
        delete_records_request::DeleteRecordsPartition::default()
            .with_partition_index(p)
            .with_offset(offset)
    };
    for version in [0, 2] {
        let request = DeleteRecordsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("dr"))
                    .with_partitions(vec![part(0, 3), part(1, 1), part(1, -1), part(7, 0)]),
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("none"))
                    .with_partitions(vec![part(0, 0)]),
            ]);
        let response: DeleteRecordsResponse = client.call(ApiKey::DeleteRecords, version, &request);
        let got: Vec<(i32, i64, i16)> = response
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| (p.partition_index, p.low_watermark, p.error_code))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 3, NONE),
                (1, -1, OFFSET_OUT_OF_RANGE), // partition 1 is empty: 1 is past its end
                (1, 0, NONE),                 // -1: its end, 0
                (7, -1, UNKNOWN_TOPIC_OR_PARTITION),
                (0, -1, UNKNOWN_TOPIC_OR_PARTITION),
            ],
            "v{version}"
        );
    }
    assert_eq!(list_offset(&mut client, "dr", 0, -2).1, 3);
    assert_eq!(fetch(&mut client, "dr", 0, 2, 0).0, OFFSET_OUT_OF_RANGE);
}

#[test]
fn describe_configs_shows_topic_overrides_and_broker_settings() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "cfg", 1, &[("retention.ms", "123456")]);
    let request = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("cfg")),
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("0")),
    ]);
    let response: DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &request);
    let value = |r: usize, key: &str| {
        response.results[r]
            .configs
            .iter()
            .find(|c| &*c.name == key)
            .and_then(|c| c.value.as_ref().map(|v| v.to_string()))
    };
    assert_eq!(value(0, "retention.ms").as_deref(), Some("123456"));
    assert_eq!(value(0, "segment.bytes").as_deref(), Some("1073741824"));
    assert_eq!(value(1, "num.partitions").as_deref(), Some("1"));
    assert_eq!(value(1, "message.max.bytes").as_deref(), Some("1048588"));
}

#[test]
fn topics_and_records_survive_a_clean_restart() {
    let mut broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "keep", 2, &[("retention.ms", "86400000")]);
    for i in 0..20 {
        produce(
            &mut client,
            "keep",
            i % 2,
            batch(&[&format!("v{i}")], i as i64),
            -1,
        );
    }
    drop(client);
    assert!(
        broker.stop().success(),
        "clean exit; stderr:\n{}",
        broker.stderr()
    );
    broker.restart();
    let mut client = broker.client();
    let meta = metadata(&mut client, Some(&["keep"]), false);
    assert_eq!(meta.topics[0].partitions.len(), 2);
    let (code, hw, records) = fetch(&mut client, "keep", 1, 0, 0);
    assert_eq!((code, hw, batches_in(&records).len()), (NONE, 10, 10));
}

#[test]
fn acknowledged_records_survive_kill_9() {
    let mut broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "k9", 1, &[]);
    for i in 0..50 {
        assert_eq!(
            produce(&mut client, "k9", 0, batch(&["r"], i), -1),
            (NONE, i)
        );
    }
    broker.kill();
    broker.restart();
    let mut client = broker.client();
    let (code, hw, records) = fetch(&mut client, "k9", 0, 0, 0);
    assert_eq!((code, hw), (NONE, 50));
    assert_eq!(batches_in(&records).len(), 50);
}

#[test]
fn produce_v2_is_answered_with_unsupported_version() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    // Produce v2: header v1 (key, version, correlation, client id), then
    // acks, timeout, one topic "t" with partition 0 and an empty message set.
    let mut req = vec![0, 0, 0, 2, 0, 0, 0, 9, 0, 1, b'c'];
    req.extend_from_slice(&1i16.to_be_bytes());
    req.extend_from_slice(&1000i32.to_be_bytes());
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend_from_slice(&[0, 1, b't']);
    req.extend_from_slice(&1i32.to_be_bytes());
    req.extend_from_slice(&0i32.to_be_bytes());
    req.extend_from_slice(&0i32.to_be_bytes());
    client.send_raw(&req);
    let frame = client.read_frame().expect("response");
    // correlation 9 | 1 topic | "t" | 1 partition | 0 | error 35 | ...
    assert_eq!(&frame[0..4], &9i32.to_be_bytes());
    let error = i16::from_be_bytes([frame[4 + 4 + 3 + 4 + 4], frame[4 + 4 + 3 + 4 + 5]]);
    assert_eq!(error, UNSUPPORTED_VERSION);
}

#[test]
fn bad_input_closes_only_the_offending_connection() {
    let broker =
        TestBroker::start_with_config(Some("[server]\nsocket_request_max_bytes = \"1 MiB\"\n"));
    let mut healthy = broker.client();
    create_topic(&mut healthy, "t", 1, &[]);
    let cases: &[(&str, Vec<u8>)] = &[
        (
            "size prefix over the limit",
            0x7fff_ffffi32.to_be_bytes().to_vec(),
        ),
        ("negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "unknown api key",
            [
                &12i32.to_be_bytes()[..],
                &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0],
            ]
            .concat(),
        ),
        (
            "unsupported fetch version",
            [&10i32.to_be_bytes()[..], &[0, 1, 0, 1, 0, 0, 0, 1, 0, 0]].concat(),
        ),
        (
            "truncated header",
            [&3i32.to_be_bytes()[..], &[0, 3, 0]].concat(),
        ),
        // Metadata v0 claiming 2^31-1 topics in a 14-byte request: decoders
        // that preallocate from the count would ask for ~150 GB.
        (
            "hostile array length",
            [
                &14i32.to_be_bytes()[..],
                &[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff],
            ]
            .concat(),
        ),
        // Metadata v12 (compact array): 2^32-2 topics claimed.
        (
            "hostile compact array length",
            [
                &17i32.to_be_bytes()[..],
                &[
                    0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0,
                ],
            ]
            .concat(),
        ),
        (
            "garbage body",
            [
                &16i32.to_be_bytes()[..],
                &[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4],
            ]
            .concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut bad = Client::connect(&broker.addr);
        use std::io::Write;
        bad.stream.write_all(bytes).unwrap();
        assert!(
            bad.is_closed_by_peer(),
            "{what}: connection should be closed"
        );
        // Everyone else is still served.
        assert_eq!(
            produce(&mut healthy, "t", 0, batch(&[what], 1), -1).0,
            NONE,
            "{what}"
        );
    }
    let (_, hw, _) = fetch(&mut healthy, "t", 0, 0, 0);
    assert_eq!(hw, cases.len() as i64);
}

#[test]
fn trailing_bytes_after_a_request_body_are_ignored_as_kafka_does() {
    // Exactly what librdkafka 2.16's AdminClient.list_topics() sends:
    // Metadata v12, null topics, then 3 bytes no schema accounts for.
    let broker = TestBroker::start();
    let mut client = broker.client();
    let hex = "0003000c00000003000772646b61666b610000000000010000";
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    client.send_raw(&bytes);
    let frame = client
        .read_frame()
        .expect("a Metadata response, not a closed connection");
    assert_eq!(&frame[0..4], &3i32.to_be_bytes());
}

#[test]
fn a_request_split_across_many_writes_is_reassembled() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    let mut buf = bytes::BytesMut::new();
    use kafka_protocol::protocol::Encodable;
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(0)
        .with_correlation_id(77)
        .encode(&mut buf, 1)
        .unwrap();
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    use std::io::Write;
    for byte in frame {
        client.stream.write_all(&[byte]).unwrap();
        client.stream.flush().unwrap();
    }
    let response = client.read_frame().expect("response");
    assert_eq!(&response[0..4], &77i32.to_be_bytes());
}

#[test]
fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let broker = TestBroker::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(broker.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another strom process"),
        "stderr: {stderr}"
    );
}

#[test]
fn a_bad_config_value_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(&config, "[log]\nsegment_bytes = \"huge\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("segment_bytes"), "stderr: {stderr}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "p", 1, &[]);
    // Ten produces written back to back before reading any response.
    let first = client.last_correlation() + 1;
    for i in 0..10 {
        client.send(
            ApiKey::Produce,
            9,
            &produce_request("p", 0, batch(&["x"], i), -1),
        );
    }
    for i in 0..10 {
        let mut frame = client.read_frame().expect("response");
        use bytes::Buf;
        let correlation = frame.get_i32();
        assert_eq!(correlation, first + i, "responses in request order");
    }
}

/// GET `path` from the broker's metrics endpoint: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// The value of the sample whose name and labels start with `prefix`.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_show_requests_partitions_traffic_and_the_process() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "m", 2, &[]);
    produce(&mut client, "m", 1, batch(&["a", "b", "c"], 1), -1);
    fetch(&mut client, "m", 1, 0, 0);
    let (status, body) = http_get(&broker.metrics_addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let expect = [
        (r#"strom_requests_total{api="Produce"}"#, 1.0),
        (r#"strom_requests_total{api="Fetch"}"#, 1.0),
        (
            r#"strom_request_duration_seconds_count{api="CreateTopics"}"#,
            1.0,
        ),
        (
            r#"strom_partition_log_end_offset{topic="m",partition="1"}"#,
            3.0,
        ),
        (
            r#"strom_partition_log_end_offset{topic="m",partition="0"}"#,
            0.0,
        ),
        (r#"strom_partition_segments{topic="m",partition="1"}"#, 1.0),
        (r#"strom_records_out_total{topic="m"}"#, 3.0),
        (r#"strom_records_in_total{topic="m"}"#, 3.0),
        ("strom_flush_wait_seconds_count", 1.0),
        ("strom_connections_active", 1.0),
    ];
    for (prefix, value) in expect {
        assert_eq!(sample(&body, prefix), Some(value), "{prefix} in\n{body}");
    }
    assert!(sample(&body, "strom_process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&body, "strom_process_open_fds").unwrap() > 3.0);
    assert!(sample(&body, "strom_fdatasyncs_total").unwrap() >= 1.0);
    assert_eq!(
        http_get(&broker.metrics_addr, "/other").0,
        "HTTP/1.1 404 Not Found"
    );
}
