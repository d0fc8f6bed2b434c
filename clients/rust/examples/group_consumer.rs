//! Joins a consumer group and prints every record it is assigned, until Ctrl-C
//! (then it commits and leaves the group).
//!
//! ```sh
//! cargo run -p strom-client --example group_consumer -- [BOOTSTRAP] [GROUP] [TOPIC]
//! # defaults: 127.0.0.1:9092 demo-readers demo
//! ```
//! Start it twice to watch the partitions move between the members.

use futures::StreamExt;
use strom_client::{Consumer, ConsumerConfig, OffsetReset, RebalanceEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let (bootstrap, group, topic) = (
        arg(0, "127.0.0.1:9092"),
        arg(1, "demo-readers"),
        arg(2, "demo"),
    );

    let mut config = ConsumerConfig::new(&bootstrap, Some(&group));
    config.auto_offset_reset = OffsetReset::Earliest;
    let mut consumer = Consumer::new(config).await?;
    let mut events = consumer.rebalance_events().expect("first call");
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                RebalanceEvent::Assigned(tps) => eprintln!("assigned: {tps:?}"),
                RebalanceEvent::Revoked(tps) => eprintln!("revoked: {tps:?}"),
            }
        }
    });
    consumer.subscribe(&[&topic])?;
    {
        let mut records = consumer.stream();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                next = records.next() => {
                    let r = next.expect("the stream does not end")?;
                    let show = |b: &Option<bytes::Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                    println!("{}-{} @{} {:?} {:?}", r.topic, r.partition, r.offset, show(&r.key), show(&r.value));
                }
            }
        }
    }
    consumer.close().await?;
    Ok(())
}
