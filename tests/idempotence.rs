//! The idempotent producer against a real `strom serve`: retries are stored
//! once (also across clean and kill -9 restarts), gaps and stale epochs get
//! their errors, InitProducerId hands out ids that are never reused.

mod common;

use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_storage::testing::BatchBuilder;

const NONE: i16 = 0;
const UNSUPPORTED_VERSION: i16 = 35;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(client: &mut Client, topic: &str) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(response.topics[0].error_code, NONE, "create {topic}");
}

/// A batch of `n` records from producer `pid` at `epoch`, first sequence `seq`.
fn idem_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    (0..n)
        .fold(
            BatchBuilder::new(1_000).producer(pid, epoch, seq),
            |b, i| {
                b.record(
                    b"k",
                    format!("p{pid}-e{epoch}-s{}", seq as usize + i).as_bytes(),
                    i as i64,
                )
            },
        )
        .build()
}

fn produce_request(topic: &str, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])])
}

/// (error code, base offset) of a single-partition produce (v9).
fn produce(client: &mut Client, topic: &str, records: Vec<u8>) -> (i16, i64) {
    let response: ProduceResponse =
        client.call(ApiKey::Produce, 9, &produce_request(topic, records));
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// Every batch stored in partition 0: (base offset, record count, base sequence).
fn stored_batches(client: &mut Client, topic: &str) -> Vec<(i64, i32, i32)> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(10 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, NONE, "fetch {topic}");
    let records = p.records.clone().unwrap_or_default();
    strom_storage::batch::BatchIter::new(&records, true)
        .map(|b| {
            (
                b.header.base_offset,
                b.header.records_count,
                b.header.base_sequence,
            )
        })
        .collect()
}

/// (error, producer id, epoch) of InitProducerId at `version`.
fn init_producer_id(
    client: &mut Client,
    version: i16,
    current: Option<(i64, i16)>,
) -> (i16, i64, i16) {
    let (pid, epoch) = current.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch);
    let response: InitProducerIdResponse = client.call(ApiKey::InitProducerId, version, &request);
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

#[test]
fn a_retried_batch_is_stored_once_and_answered_with_its_first_offset() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "retry");
    let (err, pid, epoch) = init_producer_id(&mut client, 4, None);
    assert_eq!((err, epoch), (NONE, 0));

    assert_eq!(
        produce(&mut client, "retry", idem_batch(pid, 0, 0, 3)),
        (NONE, 0)
    );
    let first = idem_batch(pid, 0, 3, 2);
    assert_eq!(produce(&mut client, "retry", first.clone()), (NONE, 3));
    // The same request again (same producer, epoch, sequence): one copy.
    assert_eq!(produce(&mut client, "retry", first.clone()), (NONE, 3));
    assert_eq!(
        produce(&mut client, "retry", idem_batch(pid, 0, 0, 3)),
        (NONE, 0),
        "older of the last 5"
    );
    assert_eq!(
        produce(&mut client, "retry", idem_batch(pid, 0, 5, 1)),
        (NONE, 5)
    );
    assert_eq!(
        stored_batches(&mut client, "retry"),
        vec![(0, 3, 0), (3, 2, 3), (5, 1, 5)]
    );
}

#[test]
fn retries_are_deduplicated_after_a_clean_restart_and_after_kill_9() {
    let mut broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "restarts");
    let (_, pid, _) = init_producer_id(&mut client, 4, None);
    for seq in 0..4 {
        assert_eq!(
            produce(&mut client, "restarts", idem_batch(pid, 0, seq, 1)),
            (NONE, i64::from(seq))
        );
    }

    // Clean restart: the snapshot written at shutdown is loaded.
    assert!(broker.stop().success(), "clean stop");
    broker.restart();
    let mut client = broker.client();
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 3, 1)),
        (NONE, 3)
    );
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 4, 1)),
        (NONE, 4)
    );

    // kill -9: the snapshot is older than the log, the tail is rescanned.
    broker.kill();
    broker.restart();
    let mut client = broker.client();
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 4, 1)),
        (NONE, 4)
    );
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 2, 1)),
        (NONE, 2)
    );
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 7, 1)).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "state after kill -9 still knows the last sequence"
    );
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 5, 1)),
        (NONE, 5)
    );

    // kill -9 with no snapshot at all: rebuilt from the log alone.
    broker.kill();
    for dir in common::partition_dirs(&broker.data_dir(), "restarts") {
        std::fs::remove_file(dir.join("producers.snapshot"))
            .expect("snapshot exists after clean stop");
    }
    broker.restart();
    let mut client = broker.client();
    assert_eq!(
        produce(&mut client, "restarts", idem_batch(pid, 0, 5, 1)),
        (NONE, 5)
    );
    let stored = stored_batches(&mut client, "restarts");
    assert_eq!(stored.len(), 6, "one copy per sequence: {stored:?}");
    for (i, (offset, count, seq)) in stored.iter().enumerate() {
        assert_eq!((*offset, *count, *seq), (i as i64, 1, i as i32));
    }
}

#[test]
fn a_sequence_gap_is_out_of_order_and_a_stale_epoch_is_refused() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "rules");
    let (_, pid, _) = init_producer_id(&mut client, 4, None);
    assert_eq!(
        produce(&mut client, "rules", idem_batch(pid, 0, 0, 2)),
        (NONE, 0)
    );

    type Case = (&'static str, Vec<u8>, i16);
    let cases: Vec<Case> = vec![
        (
            "gap after seq 1",
            idem_batch(pid, 0, 3, 1),
            OUT_OF_ORDER_SEQUENCE_NUMBER,
        ),
        (
            "overlapping retry",
            idem_batch(pid, 0, 1, 1),
            OUT_OF_ORDER_SEQUENCE_NUMBER,
        ),
        (
            "new epoch not from 0",
            idem_batch(pid, 1, 2, 1),
            OUT_OF_ORDER_SEQUENCE_NUMBER,
        ),
        ("new epoch from 0", idem_batch(pid, 1, 0, 1), NONE),
        (
            "old epoch after the bump",
            idem_batch(pid, 0, 2, 1),
            INVALID_PRODUCER_EPOCH,
        ),
        (
            "unknown producer, any sequence",
            idem_batch(pid + 500, 0, 41, 1),
            NONE,
        ),
    ];
    for (case, records, want) in cases {
        let (got, _) = produce(&mut client, "rules", records);
        assert_eq!(got, want, "case {case}");
    }
    // Refused batches were not stored: 2 + 1 + 1 records.
    let stored = stored_batches(&mut client, "rules");
    assert_eq!(stored.iter().map(|b| b.1).sum::<i32>(), 4, "{stored:?}");
}

#[test]
fn transactional_requests_get_a_clear_error() {
    let broker = TestBroker::start();
    let mut client = broker.client();
    create_topic(&mut client, "txn");
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1"))))
        .with_transaction_timeout_ms(60_000);
    let response: InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);

    let request = produce_request("txn", idem_batch(7, 0, 0, 1))
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx-1"))));
    let response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        INVALID_TXN_STATE
    );

    let txn_batch = BatchBuilder::new(0)
        .producer(7, 0, 0)
        .attributes(0x10)
        .record(b"", b"v", 0)
        .build();
    assert_eq!(produce(&mut client, "txn", txn_batch).0, INVALID_TXN_STATE);
    assert!(stored_batches(&mut client, "txn").is_empty());
}

#[test]
fn producer_ids_are_unique_across_restarts_and_v3_bumps_the_epoch() {
    let mut broker = TestBroker::start();
    let mut seen = std::collections::HashSet::new();
    for round in 0..3 {
        let mut client = broker.client();
        for version in [0, 2, 4] {
            let (err, pid, epoch) = init_producer_id(&mut client, version, None);
            assert_eq!((err, epoch), (NONE, 0), "round {round} v{version}");
            assert!(
                seen.insert(pid),
                "producer id {pid} handed out twice (round {round})"
            );
        }
        if round == 0 {
            assert!(broker.stop().success());
        } else {
            broker.kill();
        }
        broker.restart();
    }

    let mut client = broker.client();
    let (_, pid, _) = init_producer_id(&mut client, 4, None);
    assert_eq!(
        init_producer_id(&mut client, 3, Some((pid, 0))),
        (NONE, pid, 1)
    );
    assert_eq!(
        init_producer_id(&mut client, 4, Some((pid, 1))),
        (NONE, pid, 2)
    );
    assert_eq!(
        init_producer_id(&mut client, 4, Some((pid, 0))).0,
        INVALID_PRODUCER_EPOCH
    );
}
