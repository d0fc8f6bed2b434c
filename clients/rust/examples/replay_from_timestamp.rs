//! Replays a topic from a point in time: every partition is moved to the first
//! record at or after TIMESTAMP (ms since the epoch; 0 = the beginning), and
//! records are printed until the consumer has caught up (nothing new for 1 s).
//!
//! ```sh
//! cargo run -p strom-client --example replay_from_timestamp -- [BOOTSTRAP] [TOPIC] [TIMESTAMP_MS]
//! # defaults: 127.0.0.1:9092 demo 0
//! ```
//! Each line is `partition offset timestamp key value headers`, with key and
//! value as text (`-` for none) and headers as `k=v` joined by `,`.

use std::time::Duration;

use strom_client::{Admin, ClientConfig, Consumer, ConsumerConfig, Seek, TopicPartition};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (bootstrap, topic) = (arg(0, "127.0.0.1:9092"), arg(1, "demo"));
    let since: i64 = arg(2, "0").parse()?;

    let admin = Admin::new(ClientConfig::new(&bootstrap)).await?;
    let partitions = admin.describe_topics(&[&topic]).await?.remove(0).partitions;
    let mut consumer = Consumer::new(ConsumerConfig::new(&bootstrap, None)).await?;
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|p| TopicPartition::new(&topic, p.partition))
        .collect();
    consumer.assign(tps.clone())?;
    for tp in &tps {
        consumer.seek(tp, Seek::Timestamp(since))?;
    }
    let text = |b: &Option<bytes::Bytes>| {
        b.as_ref()
            .map_or("-".to_string(), |b| String::from_utf8_lossy(b).into_owned())
    };
    while let Some(r) = consumer.poll(Duration::from_secs(1)).await? {
        let headers: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        println!(
            "{} {} {} {} {} {}",
            r.partition,
            r.offset,
            r.timestamp,
            text(&r.key),
            text(&r.value),
            headers.join(",")
        );
    }
    consumer.close().await?;
    Ok(())
}
