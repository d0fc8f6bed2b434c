//! strom-client consumer groups against a real `strom serve`: members join and
//! leave, the group rebalances, and every record is consumed exactly once.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{rt, TestBroker};
use strom_client::{
    Admin, Assignor, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset, Producer,
    ProducerConfig, ProducerRecord, RebalanceEvent,
};
use tokio::sync::oneshot;

/// Fast groups: no initial delay, short sessions allowed.
const FAST_GROUPS: &str =
    "[groups]\ninitial_rebalance_delay = \"0ms\"\nmin_session_timeout = \"100ms\"\n";

type Seen = Arc<Mutex<Vec<(i32, i64, String, &'static str)>>>;

fn config(addr: &str, group: &str, assignor: Assignor) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(addr, Some(group));
    c.auto_offset_reset = OffsetReset::Earliest;
    c.auto_commit_interval = Duration::from_millis(200);
    c.heartbeat_interval = Duration::from_millis(100);
    c.session_timeout = Duration::from_secs(3);
    c.rebalance_timeout = Duration::from_secs(10);
    c.fetch_max_wait = Duration::from_millis(100);
    c.assignors = vec![assignor];
    c
}

/// Runs a member until told to stop, then closes it (commit + leave).
fn member(
    cfg: ConsumerConfig,
    topic: &'static str,
    name: &'static str,
    seen: Seen,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<RebalanceEvent>>,
) {
    let (stop_tx, mut stop) = oneshot::channel();
    let handle = tokio::spawn(async move {
        let mut c = Consumer::new(cfg).await.unwrap();
        let mut events = c.rebalance_events().unwrap();
        c.subscribe(&[topic]).unwrap();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                r = c.recv() => {
                    let r = r.unwrap_or_else(|e| panic!("{name}: {e}"));
                    let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                    seen.lock().unwrap().push((r.partition, r.offset, v, name));
                }
            }
        }
        c.close()
            .await
            .unwrap_or_else(|e| panic!("{name}: close: {e}"));
        let mut out = Vec::new();
        while let Ok(e) = events.try_recv() {
            out.push(e);
        }
        out
    });
    (stop_tx, handle)
}

async fn wait_for(seen: &Seen, n: usize, what: &str) {
    for _ in 0..300 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{what}: only {} of {n} records consumed",
        seen.lock().unwrap().len()
    );
}

fn three_members_share_the_topic(assignor: Assignor) {
    let broker = TestBroker::start_with_config(Some(FAST_GROUPS));
    rt().block_on(async {
        const TOPIC: &str = "events";
        const N: usize = 3000;
        let group = format!("g-{}", assignor.name());
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        admin
            .create_topics(&[NewTopic::new(TOPIC, 6)])
            .await
            .unwrap();

        // Records keep arriving while members come and go.
        let addr = broker.addr.clone();
        let producing = tokio::spawn(async move {
            let producer = Producer::new(ProducerConfig::new(&addr)).await.unwrap();
            for round in 0..30 {
                for i in 0..N / 30 {
                    let n = round * (N / 30) + i;
                    producer
                        .send(
                            ProducerRecord::new(TOPIC)
                                .key(format!("k{n}"))
                                .value(format!("v{n}")),
                        )
                        .await
                        .unwrap();
                }
                producer.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            producer.close().await.unwrap();
        });

        let seen: Seen = Default::default();
        let (stop_a, a) = member(
            config(&broker.addr, &group, assignor),
            TOPIC,
            "a",
            seen.clone(),
        );
        wait_for(&seen, 200, "a alone").await;
        let (stop_b, b) = member(
            config(&broker.addr, &group, assignor),
            TOPIC,
            "b",
            seen.clone(),
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (stop_c, c) = member(
            config(&broker.addr, &group, assignor),
            TOPIC,
            "c",
            seen.clone(),
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // The first member leaves; b and c take over its partitions.
        stop_a.send(()).unwrap();
        let a_events = a.await.unwrap();
        let described = admin.describe_groups(&[&group]).await.unwrap();
        producing.await.unwrap();
        wait_for(&seen, N, "after a left").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_b.send(()).unwrap();
        stop_c.send(()).unwrap();
        let b_events = b.await.unwrap();
        let c_events = c.await.unwrap();

        let seen = seen.lock().unwrap().clone();
        let mut by_value: BTreeMap<String, Vec<(i32, i64, &str)>> = BTreeMap::new();
        for (p, o, v, who) in &seen {
            by_value.entry(v.clone()).or_default().push((*p, *o, who));
        }
        let dupes: Vec<_> = by_value
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .take(10)
            .collect();
        assert!(
            dupes.is_empty(),
            "{assignor:?}: records consumed more than once: {dupes:?}"
        );
        assert_eq!(by_value.len(), N, "{assignor:?}: every record consumed");
        for (name, events) in [("a", &a_events), ("b", &b_events), ("c", &c_events)] {
            assert!(
                events
                    .iter()
                    .any(|e| matches!(e, RebalanceEvent::Assigned(tps) if !tps.is_empty())),
                "{assignor:?}: {name} was assigned partitions: {events:?}"
            );
        }
        assert!(
            b_events
                .iter()
                .filter(|e| matches!(e, RebalanceEvent::Assigned(_)))
                .count()
                >= 2,
            "{assignor:?}: b gained partitions when a left: {b_events:?}"
        );
        let consumers: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.3).collect();
        assert_eq!(consumers.len(), 3, "every member consumed something");
        assert_eq!(described[0].members.len(), 2, "after a left: {described:?}");
        // Everything was committed: the group's offsets are the log ends.
        let committed = admin.list_group_offsets(&group).await.unwrap();
        let total: i64 = committed.values().sum();
        assert_eq!(total, N as i64, "{committed:?}");
        assert_eq!(
            admin.describe_groups(&[&group]).await.unwrap()[0].state,
            "Empty"
        );
    });
}

#[test]
fn range_group_of_three_rebalances_and_consumes_each_record_once() {
    three_members_share_the_topic(Assignor::Range);
}

#[test]
fn roundrobin_group_of_three_rebalances_and_consumes_each_record_once() {
    three_members_share_the_topic(Assignor::RoundRobin);
}

/// Partitions added to a topic (CreatePartitions) reach a running group and a
/// running producer once they re-read metadata (`metadata_max_age`).
#[test]
fn a_running_group_and_producer_take_up_added_partitions() {
    let broker = TestBroker::start_with_config(Some(FAST_GROUPS));
    rt().block_on(async {
        const TOPIC: &str = "grows";
        let admin = Admin::new(ClientConfig::new(&broker.addr)).await.unwrap();
        admin
            .create_topics(&[NewTopic::new(TOPIC, 1)])
            .await
            .unwrap();
        let mut pconfig = ProducerConfig::new(&broker.addr);
        pconfig.client.metadata_max_age = Duration::from_millis(200);
        let producer = Producer::new(pconfig).await.unwrap();
        // A key that lands on partition 2 once there are 3.
        let key = (0..)
            .map(|i| format!("key-{i}"))
            .find(|k| strom_client::partition_for_key(k.as_bytes(), 3) == 2)
            .unwrap();
        let sent = producer
            .send_and_wait(ProducerRecord::new(TOPIC).key(key.clone()).value("v-old"))
            .await
            .unwrap();
        assert_eq!(sent.partition, 0);

        let seen: Seen = Arc::default();
        let mut cfg = config(&broker.addr, "grows", Assignor::Range);
        cfg.client.metadata_max_age = Duration::from_millis(200);
        let (stop, handle) = member(cfg, TOPIC, "m1", seen.clone());
        wait_for(&seen, 1, "before the partitions were added").await;

        admin.create_partitions(TOPIC, 3).await.unwrap();
        // The producer's next refresh moves the key to partition 2.
        let mut partition = 0;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let r = ProducerRecord::new(TOPIC).key(key.clone()).value("v-new");
            partition = producer.send_and_wait(r).await.unwrap().partition;
            if partition == 2 {
                break;
            }
        }
        assert_eq!(partition, 2, "the producer never saw the added partitions");
        producer.close().await.unwrap();
        // The leader's check rejoins; the member is given partition 2 and
        // reads what landed there.
        for _ in 0..200 {
            if seen.lock().unwrap().iter().any(|r| r.0 == 2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(()).unwrap();
        let events = handle.await.unwrap();
        let got = seen.lock().unwrap().clone();
        assert!(
            got.iter().any(|r| r.0 == 2 && r.2 == "v-new"),
            "nothing read from partition 2: {got:?}; events {events:?}"
        );
    });
}
