//! strom-client against a real `strom serve`: producer, standalone consumer, admin.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use common::{rt, TestBroker};
use strom_client::{
    partition_for_key, Acks, Admin, ClientConfig, Compression, ConfigResource, Consumer,
    ConsumerConfig, NewTopic, OffsetReset, Producer, ProducerConfig, ProducerRecord, RecordRef,
    Seek, TopicPartition, EARLIEST, LATEST,
};

async fn read_all(
    addr: &str,
    topic: &str,
    partitions: i32,
    total: usize,
) -> Vec<strom_client::ConsumerRecord> {
    let mut c = Consumer::new(ConsumerConfig::new(addr, None))
        .await
        .unwrap();
    c.assign((0..partitions).map(|p| TopicPartition::new(topic, p)))
        .unwrap();
    for p in 0..partitions {
        c.seek(&TopicPartition::new(topic, p), Seek::Beginning)
            .unwrap();
    }
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        match tokio::time::timeout(Duration::from_secs(20), c.recv()).await {
            Ok(r) => out.push(r.unwrap()),
            Err(_) => panic!("{topic}: only {} of {total} records arrived", out.len()),
        }
    }
    // Nothing more than what was sent.
    assert!(c.poll(Duration::from_millis(200)).await.unwrap().is_none());
    c.close().await.unwrap();
    out
}

#[test]
fn round_trips_100k_records_with_every_codec() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        const N: usize = 100_000;
        for codec in Compression::ALL {
            let topic = format!("codec-{codec:?}").to_lowercase();
            admin
                .create_topics(&[NewTopic::new(&topic, 3)])
                .await
                .unwrap();
            let mut config = ProducerConfig::new(&broker.addr);
            config.compression = codec;
            config.batch_size = 64 * 1024;
            let producer = Producer::new(config).await.unwrap();
            let mut deliveries = Vec::with_capacity(N);
            for i in 0..N {
                let rec = ProducerRecord::new(&topic)
                    .key(format!("key-{i}"))
                    .value(format!("value-{i}-{}", "x".repeat(i % 50)))
                    .header("i", i.to_string())
                    .timestamp(1_700_000_000_000 + i as i64);
                deliveries.push(producer.send(rec).await.unwrap());
            }
            producer.flush().await.unwrap();
            let mut landed = HashMap::new();
            for (i, d) in deliveries.into_iter().enumerate() {
                let m = d
                    .await
                    .unwrap_or_else(|e| panic!("{codec:?}: record {i}: {e}"));
                landed.insert((m.partition, m.offset), i);
            }
            assert_eq!(
                landed.len(),
                N,
                "{codec:?}: every record got its own offset"
            );
            producer.close().await.unwrap();

            let records = read_all(&broker.addr, &topic, 3, N).await;
            let mut seen = vec![false; N];
            for r in records {
                let i = landed[&(r.partition, r.offset)];
                assert!(!seen[i], "{codec:?}: record {i} read twice");
                seen[i] = true;
                assert_eq!(r.key, Some(Bytes::from(format!("key-{i}"))), "{codec:?}");
                assert_eq!(
                    r.value,
                    Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50))))
                );
                assert_eq!(
                    r.headers,
                    vec![("i".to_string(), Some(Bytes::from(i.to_string())))]
                );
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(
                    r.partition,
                    partition_for_key(format!("key-{i}").as_bytes(), 3)
                );
            }
            assert!(seen.iter().all(|s| *s), "{codec:?}: every record read back");
        }
    });
}

#[test]
fn send_ref_keeps_partition_order_and_each_record_reads_its_offset_from_its_batch() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        admin
            .create_topics(&[NewTopic::new("ordered", 2)])
            .await
            .unwrap();
        let mut config = ProducerConfig::new(&broker.addr);
        // Many small batches, several in flight at once.
        config.batch_size = 4096;
        config.queue_capacity = 1000;
        let producer = Producer::new(config).await.unwrap();
        const N: usize = 5000;
        let mut deliveries = Vec::with_capacity(N);
        for i in 0..N {
            let value = format!("value-{i}");
            let seq = i.to_string();
            // A repeated header key is sent as is (the consumer keeps the last).
            let headers = [
                ("seq", Some(b"first".as_slice())),
                ("seq", Some(seq.as_bytes())),
            ];
            let rec = RecordRef::new("ordered")
                .partition(1)
                .value(&value)
                .headers(&headers);
            deliveries.push(producer.send_ref(rec).await.unwrap());
        }
        let mut batches = 1;
        for w in deliveries.windows(2) {
            if !w[0].same_batch(&w[1]) {
                batches += 1;
            }
        }
        assert!(batches > 10, "4 KiB batches: {batches}");
        producer.close().await.unwrap();
        for (i, d) in deliveries.into_iter().enumerate() {
            let m = d.await.unwrap_or_else(|e| panic!("record {i}: {e}"));
            assert_eq!((m.partition, m.offset), (1, i as i64), "record {i}");
        }
        let records = read_all(&broker.addr, "ordered", 2, N).await;
        for r in records {
            let i = r.offset as usize;
            assert_eq!(r.partition, 1);
            assert_eq!(r.value, Some(Bytes::from(format!("value-{i}"))));
            assert_eq!(
                r.headers,
                vec![("seq".to_string(), Some(Bytes::from(i.to_string())))]
            );
        }
    });
}

#[test]
fn every_record_of_a_batch_the_broker_refuses_gets_its_error() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        let mut topic = NewTopic::new("small", 1);
        topic.configs = vec![("max.message.bytes".into(), "2000".into())];
        admin.create_topics(&[topic]).await.unwrap();
        let mut config = ProducerConfig::new(&broker.addr);
        config.linger = Duration::from_secs(60);
        let producer = Producer::new(config).await.unwrap();
        // 30 x 100 bytes in one batch: larger than the topic allows.
        let mut deliveries = Vec::new();
        for _ in 0..30 {
            let rec = ProducerRecord::new("small").value(vec![b'x'; 100]);
            deliveries.push(producer.send(rec).await.unwrap());
        }
        assert!(deliveries.windows(2).all(|w| w[0].same_batch(&w[1])));
        producer.flush().await.unwrap();
        for (i, d) in deliveries.into_iter().enumerate() {
            let e = d.await.expect_err("refused");
            // MESSAGE_TOO_LARGE
            assert_eq!(e.code(), Some(10), "record {i}: {e}");
        }
        // The refused batch's sequences are reused: the next batch lands.
        // (flush: the linger is a minute.)
        let fits = producer
            .send(ProducerRecord::new("small").value("fits"))
            .await
            .unwrap();
        // A partition the topic does not have fails that record only.
        let missing = producer
            .send(ProducerRecord::new("small").partition(3).value("v"))
            .await
            .unwrap();
        producer.flush().await.unwrap();
        let m = fits.await.unwrap();
        assert_eq!((m.partition, m.offset), (0, 0));
        let e = missing.await.expect_err("no partition 3");
        assert_eq!(e.code(), Some(3), "{e}");
        producer.close().await.unwrap();
    });
}

#[test]
fn acks_zero_one_and_all_deliver_and_keyless_records_spread() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        admin
            .create_topics(&[NewTopic::new("acks", 4)])
            .await
            .unwrap();
        for (acks, n) in [(Acks::None, 0), (Acks::Leader, 1), (Acks::All, 2)] {
            let mut config = ProducerConfig::new(&broker.addr);
            config.acks = acks;
            config.batch_size = 1024;
            let producer = Producer::new(config).await.unwrap();
            let mut ds = Vec::new();
            for i in 0..1000 {
                let v = format!("{n}-{i}-{}", "y".repeat(40));
                ds.push(
                    producer
                        .send(ProducerRecord::new("acks").value(v))
                        .await
                        .unwrap(),
                );
            }
            producer.close().await.unwrap();
            for d in ds {
                let m = d.await.unwrap();
                if acks == Acks::None {
                    assert_eq!(m.offset, -1);
                } else {
                    assert!(m.offset >= 0);
                }
            }
        }
        let records = read_all(&broker.addr, "acks", 4, 3000).await;
        let mut per_partition = BTreeMap::new();
        for r in &records {
            *per_partition.entry(r.partition).or_insert(0) += 1;
        }
        assert_eq!(
            per_partition.len(),
            4,
            "keyless records spread over partitions: {per_partition:?}"
        );
    });
}

#[test]
fn producer_uses_idempotence_when_the_broker_offers_it() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let producer = Producer::new(ProducerConfig::new(&broker.addr))
            .await
            .unwrap();
        let m = producer
            .send_and_wait(ProducerRecord::new("idem").key("k").value("v"))
            .await
            .unwrap();
        assert_eq!(m.offset, 0);
        // Either way the record is delivered; with InitProducerId the producer has an id.
        if let Some((pid, epoch)) = producer.producer_id() {
            assert!(pid >= 0 && epoch >= 0);
        }
        producer.close().await.unwrap();
    });
}

#[test]
fn consumer_seeks_to_offset_beginning_end_and_timestamp() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let producer = Producer::new(ProducerConfig::new(&broker.addr))
            .await
            .unwrap();
        for i in 0..10i64 {
            producer
                .send(
                    ProducerRecord::new("seek")
                        .partition(0)
                        .value(format!("v{i}"))
                        .timestamp(1000 * (i + 1)),
                )
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
        let tp = TopicPartition::new("seek", 0);
        let mut c = Consumer::new(ConsumerConfig::new(&broker.addr, None))
            .await
            .unwrap();
        c.assign([tp.clone()]).unwrap();
        for (seek, first) in [
            (Seek::Beginning, Some(0)),
            (Seek::Offset(7), Some(7)),
            (Seek::Timestamp(4500), Some(4)),
            (Seek::Timestamp(99_000), None),
            (Seek::End, None),
        ] {
            c.seek(&tp, seek).unwrap();
            let got = c
                .poll(Duration::from_millis(700))
                .await
                .unwrap()
                .map(|r| r.offset);
            assert_eq!(got, first, "{seek:?}");
        }
        assert_eq!(c.position(&tp), Some(10));
        // Latest reset: only new records.
        let mut latest = Consumer::new(ConsumerConfig::new(&broker.addr, None))
            .await
            .unwrap();
        latest.assign([tp.clone()]).unwrap();
        assert!(latest
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none());
        let p2 = Producer::new(ProducerConfig::new(&broker.addr))
            .await
            .unwrap();
        p2.send_and_wait(ProducerRecord::new("seek").partition(0).value("new"))
            .await
            .unwrap();
        let r = latest
            .poll(Duration::from_secs(5))
            .await
            .unwrap()
            .expect("the new record");
        assert_eq!((r.offset, r.value), (10, Some(Bytes::from("new"))));
    });
}

#[test]
fn admin_manages_topics_configs_groups_and_offsets() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        admin
            .create_topics(&[
                NewTopic::new("a", 2).config("retention.ms", "60000"),
                NewTopic::new("b", 1),
            ])
            .await
            .unwrap();
        let err = admin
            .create_topics(&[NewTopic::new("a", 2)])
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(36), "TOPIC_ALREADY_EXISTS: {err}");
        assert_eq!(admin.list_topics().await.unwrap(), ["a", "b"]);
        let a = &admin.describe_topics(&["a"]).await.unwrap()[0];
        assert_eq!(a.partitions.len(), 2);
        let configs = admin
            .describe_configs(&ConfigResource::Topic("a".into()))
            .await
            .unwrap();
        let retention = configs
            .iter()
            .find(|c| c.name == "retention.ms")
            .expect("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("60000"));

        // Offsets by timestamp.
        let producer = Producer::new(ProducerConfig::new(&broker.addr))
            .await
            .unwrap();
        for i in 0..5i64 {
            producer
                .send(
                    ProducerRecord::new("a")
                        .partition(1)
                        .value("x")
                        .timestamp(100 * (i + 1)),
                )
                .await
                .unwrap();
        }
        producer.close().await.unwrap();
        let tp = TopicPartition::new("a", 1);
        let q = [(tp.clone(), EARLIEST)];
        assert_eq!(admin.list_offsets(&q).await.unwrap()[&tp].offset, 0);
        let q = [(tp.clone(), LATEST)];
        assert_eq!(admin.list_offsets(&q).await.unwrap()[&tp].offset, 5);
        let q = [(tp.clone(), 250)];
        assert_eq!(admin.list_offsets(&q).await.unwrap()[&tp].offset, 2);

        // Group offsets: reset on an empty group, read back, consume from there.
        let offsets = BTreeMap::from([(tp.clone(), 3)]);
        admin.reset_group_offsets("g1", &offsets).await.unwrap();
        assert_eq!(admin.list_group_offsets("g1").await.unwrap(), offsets);
        let mut config = ConsumerConfig::new(&broker.addr, Some("g1"));
        config.auto_offset_reset = OffsetReset::Earliest;
        let mut c = Consumer::new(config).await.unwrap();
        c.assign([tp.clone()]).unwrap();
        assert_eq!(c.recv().await.unwrap().offset, 3);
        c.commit_sync().await.unwrap();
        assert_eq!(admin.list_group_offsets("g1").await.unwrap()[&tp], 4);
        c.close().await.unwrap();
        let groups = admin.list_groups().await.unwrap();
        assert!(groups.iter().any(|g| g.group_id == "g1"), "{groups:?}");
        let described = admin.describe_groups(&["g1"]).await.unwrap();
        assert_eq!(described[0].state, "Empty");
        admin.delete_groups(&["g1"]).await.unwrap();
        assert!(admin.list_group_offsets("g1").await.unwrap().is_empty());

        admin.delete_topics(&["b"]).await.unwrap();
        assert_eq!(admin.list_topics().await.unwrap(), ["a"]);
        let err = admin.describe_topics(&["b"]).await.unwrap_err();
        assert_eq!(err.code(), Some(3), "UNKNOWN_TOPIC_OR_PARTITION: {err}");
    });
}

#[test]
fn admin_adds_partitions_an_open_producer_then_uses_and_deletes_records() {
    let broker = TestBroker::start();
    rt().block_on(async {
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        admin.create_topics(&[NewTopic::new("g", 1)]).await.unwrap();
        let producer = Producer::new(ProducerConfig::new(&broker.addr))
            .await
            .unwrap();
        for i in 0..6 {
            let value = format!("v{i}");
            producer
                .send(ProducerRecord::new("g").partition(0).value(value))
                .await
                .unwrap();
        }
        admin.create_partitions("g", 3).await.unwrap();
        assert_eq!(
            admin.describe_topics(&["g"]).await.unwrap()[0]
                .partitions
                .len(),
            3
        );
        let err = admin.create_partitions("g", 3).await.unwrap_err();
        assert_eq!(err.code(), Some(37), "INVALID_PARTITIONS: {err}");
        // The producer opened before the change learns of partition 2.
        let sent = producer
            .send(ProducerRecord::new("g").partition(2).value("new"))
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!((sent.partition, sent.offset), (2, 0));
        producer.close().await.unwrap();

        let tp = TopicPartition::new("g", 0);
        let starts = admin
            .delete_records(&BTreeMap::from([(tp.clone(), 4)]))
            .await
            .unwrap();
        assert_eq!(starts, BTreeMap::from([(tp.clone(), 4)]));
        let q = [(tp.clone(), EARLIEST)];
        assert_eq!(admin.list_offsets(&q).await.unwrap()[&tp].offset, 4);
        let err = admin
            .delete_records(&BTreeMap::from([(tp.clone(), 7)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(1), "OFFSET_OUT_OF_RANGE: {err}");
        let all = BTreeMap::from([(tp.clone(), LATEST), (TopicPartition::new("g", 2), LATEST)]);
        let starts = admin.delete_records(&all).await.unwrap();
        assert_eq!(starts.values().copied().collect::<Vec<_>>(), [6, 1]);
    });
}

#[test]
fn bootstrap_skips_unreachable_addresses() {
    let broker = TestBroker::start();
    rt().block_on(async {
        // A port nothing listens on, then the broker.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap().to_string();
        drop(dead);
        let admin = Admin::new(ClientConfig::new(&format!("{dead_addr},{}", broker.addr)))
            .await
            .unwrap();
        admin.list_topics().await.unwrap();
        let err = Admin::new(ClientConfig::new(&dead_addr))
            .await
            .err()
            .expect("no broker");
        assert!(err.is_retriable(), "{err}");
    });
}
