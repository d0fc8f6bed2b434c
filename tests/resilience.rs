//! Faults and hostile input against a real `strom serve`: kill -9 while
//! several clients produce with acks=all, and floods of malformed frames.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::{partition_dirs, Client, TestBroker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strom_storage::testing::BatchBuilder;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create_topic(client: &mut Client, topic: &str, partitions: i32) {
    let (code, message) = try_create_topic(client, topic, partitions);
    assert_eq!(code, 0, "{message}");
}

/// Produces one single-record batch with acks=all: Some((error code, base
/// offset)), or None if the broker went away before answering.
fn try_produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    value: &str,
) -> Option<(i16, i64)> {
    let batch = BatchBuilder::new(1)
        .record(b"k", value.as_bytes(), 0)
        .build();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])]);
    client.send(ApiKey::Produce, 9, &request);
    let mut frame = client.read_frame()?;
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    ResponseHeader::decode(&mut frame, ProduceResponse::header_version(9)).ok()?;
    let response = ProduceResponse::decode(&mut frame, 9).ok()?;
    let p = &response.responses[0].partition_responses[0];
    Some((p.error_code, p.base_offset))
}

/// The offset of an acknowledged single-record produce, if acknowledged.
fn produce_one(client: &mut Client, topic: &str, partition: i32, value: &str) -> Option<i64> {
    try_produce(client, topic, partition, value)
        .and_then(|(code, offset)| (code == 0).then_some(offset))
}

/// Every (offset, value) of a partition, read from the start.
fn read_all(client: &mut Client, topic: &str, partition: i32) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    let mut offset = 0;
    loop {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(8 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(4 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
        let p = &response.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch at {offset}");
        let mut records = p.records.clone().unwrap_or_default();
        if records.is_empty() {
            return out;
        }
        let batches = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
            .expect("stored batches decode");
        for set in batches {
            for r in set.records {
                let value = String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap();
                out.insert(r.offset, value);
                offset = r.offset + 1;
            }
        }
    }
}

/// Rounds of: several clients produce with acks=all, kill -9 at a random
/// moment, restart, check every acknowledged record at its offset, stop,
/// and `strom log verify` the data dir.
/// STROM_TORTURE_ROUNDS raises the count (default 20).
#[test]
fn acknowledged_records_survive_repeated_kill_9_under_concurrent_load() {
    let rounds: u64 = std::env::var("STROM_TORTURE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut broker = TestBroker::start();
    create_topic(&mut broker.client(), "torture", 3);
    // (partition, offset) -> value, for everything acknowledged so far.
    let acked: Arc<Mutex<BTreeMap<(i32, i64), String>>> = Arc::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..rounds {
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..4)
            .map(|id| {
                let (addr, acked, stop) = (broker.addr.clone(), acked.clone(), stop.clone());
                thread::spawn(move || {
                    // The kill may come before this thread gets to connect.
                    let Ok(mut client) = Client::try_connect(&addr) else {
                        return;
                    };
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let partition = (i + id) % 3;
                        let value = format!("r{round}-p{id}-{i}");
                        match produce_one(&mut client, "torture", partition, &value) {
                            Some(offset) => {
                                let previous =
                                    acked.lock().unwrap().insert((partition, offset), value);
                                assert!(
                                    previous.is_none(),
                                    "offset {partition}/{offset} acknowledged twice"
                                );
                            }
                            None => break, // the broker died mid-request
                        }
                    }
                })
            })
            .collect();
        // xorshift: a different kill moment every round, same sequence every run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        thread::sleep(Duration::from_millis(50 + seed % 250));
        broker.kill();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.join().expect("producer thread");
        }
        broker.restart();
        let mut client = broker.client();
        let acked = acked.lock().unwrap();
        for partition in 0..3 {
            let stored = read_all(&mut client, "torture", partition);
            for ((p, offset), value) in acked.range((partition, 0)..(partition, i64::MAX)) {
                assert_eq!(
                    stored.get(offset),
                    Some(value),
                    "round {round}: acknowledged record {p}/{offset} lost or changed"
                );
            }
        }
        drop(client);
        // The recovered log must pass the offline checker, segment by
        // segment and index by index (with the broker stopped).
        assert!(broker.stop().success(), "round {round}: clean stop");
        let verify = std::process::Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["log", "verify"])
            .arg(broker.data_dir())
            .output()
            .expect("run strom log verify");
        assert!(
            verify.status.success(),
            "round {round}: strom log verify failed:\n{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        broker.restart();
    }
    assert!(
        acked.lock().unwrap().len() > rounds as usize,
        "the test produced too little to mean anything"
    );
}

/// Many connections send random bytes and malformed frames while a
/// well-behaved client keeps producing; the broker stays up, serves it, and
/// its memory does not balloon.
#[test]
fn a_flood_of_hostile_frames_does_not_hurt_other_clients() {
    let mut broker =
        TestBroker::start_with_config(Some("[server]\nsocket_request_max_bytes = \"1 MiB\"\n"));
    let mut healthy = broker.client();
    create_topic(&mut healthy, "calm", 1);
    assert_eq!(produce_one(&mut healthy, "calm", 0, "before"), Some(0));
    let rss_before = broker.rss_kib();

    let attackers: Vec<_> = (0..8u64)
        .map(|id| {
            let addr = broker.addr.clone();
            thread::spawn(move || {
                let mut seed = 0x2545_f491_4f6c_dd1du64 ^ (id + 1).wrapping_mul(0x9e37_79b9);
                let mut next = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                for _ in 0..200 {
                    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                        continue;
                    };
                    s.set_write_timeout(Some(Duration::from_secs(2))).ok();
                    let frame: Vec<u8> = match next() % 5 {
                        // A size the broker must refuse before allocating.
                        0 => (0x7fff_0000u32 | (next() as u32 & 0xffff))
                            .to_be_bytes()
                            .to_vec(),
                        // Pure noise.
                        1 => (0..(next() % 512)).map(|_| next() as u8).collect(),
                        // A valid-looking size with a random body.
                        2 => {
                            let len = next() % 300;
                            let mut f = (len as i32).to_be_bytes().to_vec();
                            f.extend((0..len).map(|_| next() as u8));
                            f
                        }
                        // A real header (Produce v9) with a garbage body.
                        3 => {
                            let mut body = vec![0, 0, 0, 9, 0, 0, 0, 1, 0, 1, b'x', 0];
                            body.extend((0..(next() % 200)).map(|_| next() as u8));
                            let mut f = (body.len() as i32).to_be_bytes().to_vec();
                            f.extend(body);
                            f
                        }
                        // A frame announced big that never completes.
                        _ => 900_000i32
                            .to_be_bytes()
                            .iter()
                            .copied()
                            .chain([1, 2, 3])
                            .collect(),
                    };
                    // The broker may already have hung up; that is the point.
                    let _ = s.write_all(&frame);
                }
            })
        })
        .collect();
    for i in 1..=50 {
        assert_eq!(
            produce_one(&mut healthy, "calm", 0, &format!("during-{i}")),
            Some(i),
            "healthy client starved"
        );
    }
    for a in attackers {
        a.join().unwrap();
    }
    assert!(
        broker.is_running(),
        "broker died; stderr:\n{}",
        broker.stderr()
    );
    let rss_after = broker.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(read_all(&mut healthy, "calm", 0).len(), 51);
}

/// With the broker-wide request budget mostly spent by one connection's
/// half-sent request, small requests still fit, and a big one waits (it is
/// not buffered) until the budget frees.
#[test]
fn requests_wait_for_the_memory_budget_instead_of_growing_it() {
    let broker = TestBroker::start_with_config(Some(
        "[server]\nsocket_request_max_bytes = \"1 MiB\"\nmax_buffered_request_bytes = \"1 MiB\"\n",
    ));
    create_topic(&mut broker.client(), "budget", 1);
    // A announces 900 KB and sends a little: it holds 900 KB of budget.
    let mut hog = std::net::TcpStream::connect(&broker.addr).unwrap();
    hog.write_all(&900_000i32.to_be_bytes()).unwrap();
    hog.write_all(&[0; 100]).unwrap();
    thread::sleep(Duration::from_millis(200));

    // Small requests still fit in what is left.
    assert_eq!(
        produce_one(&mut broker.client(), "budget", 0, "small"),
        Some(0)
    );

    // B's 300 KB produce cannot be reserved until A lets go.
    let addr = broker.addr.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let big = thread::spawn(move || {
        let mut client = Client::connect(&addr);
        let value = "v".repeat(300_000);
        tx.send(produce_one(&mut client, "budget", 0, &value))
            .unwrap();
    });
    assert!(
        rx.recv_timeout(Duration::from_millis(700)).is_err(),
        "the big produce was buffered although the budget was spent"
    );

    drop(hog);
    let answer = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the big produce went through once memory freed");
    assert_eq!(answer, Some(1));
    big.join().unwrap();
}

/// A small tmpfs mounted for the test (needs root, as CI has); unmounted on
/// drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "the disk-full test mounts a small tmpfs and needs root (CI runs as root)"
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// Disk full: produce fails with KAFKA_STORAGE_ERROR, what is stored stays
/// readable, and appends resume once space is freed, without a restart.
#[test]
fn a_full_disk_fails_produces_keeps_reads_and_recovers_when_space_frees() {
    let disk = SmallDisk::mount("24m");
    let data = disk.dir.path().join("data");
    let mut broker = TestBroker::start_on(
        &data,
        "[log]\nsegment_bytes = \"4 MiB\"\nindex_max_bytes = \"64 KiB\"\n",
    );
    let mut client = broker.client();
    create_topic(&mut client, "fill", 1);
    create_topic(&mut client, "ballast", 1);
    let chunk = "x".repeat(200_000);
    // Ballast we can delete later to free space.
    for _ in 0..20 {
        assert!(produce_one(&mut client, "ballast", 0, &chunk).is_some());
    }
    let mut stored = 0;
    let error = loop {
        match produce_code(&mut client, "fill", 0, &chunk) {
            0 => stored += 1,
            code => break code,
        }
        assert!(stored < 500, "the 24 MiB disk never filled");
    };
    assert_eq!(error, 56, "KAFKA_STORAGE_ERROR");
    assert!(stored > 0);
    // Reads keep working and see exactly what was acknowledged.
    assert_eq!(read_all(&mut client, "fill", 0).len(), stored);
    // Free space by deleting the ballast topic; appends resume.
    let request = DeleteTopicsRequest::default().with_topic_names(vec![name("ballast")]);
    let deleted: DeleteTopicsResponse = client.call(ApiKey::DeleteTopics, 4, &request);
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(
        produce_code(&mut client, "fill", 0, &chunk),
        0,
        "appends resume"
    );
    assert!(broker.is_running());
    // Nothing is corrupt: a restart recovers every acknowledged record.
    broker.kill();
    broker.restart();
    assert_eq!(read_all(&mut broker.client(), "fill", 0).len(), stored + 1);
    broker.kill();
}

/// (error code, message) of a CreateTopics entry.
fn try_create_topic(client: &mut Client, topic: &str, partitions: i32) -> (i16, String) {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    let t = &response.topics[0];
    let message = t.error_message.as_ref().map(|m| m.to_string());
    (t.error_code, message.unwrap_or_default())
}

/// A topic whose partitions do not fit on the disk is refused with
/// KAFKA_STORAGE_ERROR, and leaves neither dirs nor metadata behind: the
/// broker restarts, and a topic that fits is created afterwards.
#[test]
fn a_topic_too_big_for_the_disk_is_refused_and_leaves_nothing_behind() {
    let disk = SmallDisk::mount("16m");
    let data = disk.dir.path().join("data");
    // Each partition preallocates ~3 MiB per index file (1 GiB segments).
    let mut broker = TestBroker::start_on(&data, "");
    let mut client = broker.client();
    let (code, message) = try_create_topic(&mut client, "huge", 8);
    assert_eq!(code, 56, "KAFKA_STORAGE_ERROR: {message}");
    assert!(partition_dirs(&data, "huge").is_empty());
    drop(client);
    broker.kill();
    broker.restart();
    let mut client = broker.client();
    create_topic(&mut client, "fits", 1);
    assert_eq!(produce_one(&mut client, "fits", 0, "v"), Some(0));
    assert_eq!(try_create_topic(&mut client, "huge", 8).0, 56);
    assert!(broker.is_running());
    broker.kill();
}

/// `topics.max_partitions` caps what CreateTopics, auto-creation and
/// CreatePartitions may add, with POLICY_VIOLATION.
#[test]
fn partitions_past_the_broker_limit_are_a_policy_violation() {
    let mut broker = TestBroker::start_with_config(Some("[topics]\nmax_partitions = 5\n"));
    let mut client = broker.client();
    create_topic(&mut client, "a", 4);
    let (code, message) = try_create_topic(&mut client, "b", 2);
    assert_eq!(code, 44, "POLICY_VIOLATION: {message}");
    assert!(message.contains("topics.max_partitions"), "{message}");
    assert!(partition_dirs(&broker.data_dir(), "b").is_empty());
    let grow = CreatePartitionsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(name("a"))
                .with_count(6),
        ]);
    let response: CreatePartitionsResponse = client.call(ApiKey::CreatePartitions, 3, &grow);
    assert_eq!(response.results[0].error_code, 44);
    create_topic(&mut client, "c", 1);
    // Auto-creation is refused the same way: the topic stays unknown.
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("d")))
        ]))
        .with_allow_auto_topic_creation(true);
    let response: MetadataResponse = client.call(ApiKey::Metadata, 9, &request);
    assert_eq!(response.topics[0].error_code, 44, "POLICY_VIOLATION");
    assert!(partition_dirs(&broker.data_dir(), "d").is_empty());
    assert!(broker.stop().success());
}

/// The error code of a single-record acks=all produce.
fn produce_code(client: &mut Client, topic: &str, partition: i32, value: &str) -> i16 {
    try_produce(client, topic, partition, value)
        .expect("a produce response")
        .0
}

/// Bytes flipped in a sealed segment are caught by the CRC on the way out:
/// the damaged batch is never served, batches before it are, and the error
/// names the spot in the broker's log.
#[test]
fn a_flipped_byte_in_a_sealed_segment_is_reported_not_served() {
    let mut broker = TestBroker::start_with_config(Some(
        "[log]\nsegment_bytes = \"2 KiB\"\nindex_interval_bytes = 128\n",
    ));
    let mut client = broker.client();
    create_topic(&mut client, "rot", 1);
    for i in 0..40 {
        assert_eq!(
            produce_one(
                &mut client,
                "rot",
                0,
                &format!("value-{i:03}-{}", "p".repeat(100))
            ),
            Some(i)
        );
    }
    drop(client);
    assert!(broker.stop().success());
    // Damage the third batch of the first (sealed) segment, inside its
    // CRC-covered records.
    let segment = broker
        .data_dir()
        .join("rot-0")
        .join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment).unwrap();
    let batch_len =
        |at: usize| i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize + 12;
    let third = batch_len(0) + batch_len(batch_len(0));
    bytes[third + 70] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();

    broker.restart();
    let mut client = broker.client();
    let fetch_at = |client: &mut Client, offset: i64| -> (i16, usize) {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("rot"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let response: FetchResponse = client.call(ApiKey::Fetch, 11, &request);
        let p = &response.responses[0].partitions[0];
        let mut records = p.records.clone().unwrap_or_default();
        let served = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
            .map(|sets| sets.iter().map(|s| s.records.len()).sum())
            .unwrap_or(usize::MAX);
        (p.error_code, served)
    };
    // From the start: the two good batches only.
    assert_eq!(fetch_at(&mut client, 0), (0, 2));
    // At the damaged batch: CORRUPT_MESSAGE, nothing served.
    assert_eq!(fetch_at(&mut client, 2).0, 2);
    // Later segments are untouched and served.
    let (code, served) = fetch_at(&mut client, 39);
    assert_eq!((code, served), (0, 1));
    assert!(
        broker.stderr_shows("damaged batch in the log"),
        "the broker says where the damage is:\n{}",
        broker.stderr()
    );
}
