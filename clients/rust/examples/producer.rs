//! Produces keyed records and prints where each landed.
//!
//! ```sh
//! cargo run -p strom-client --example producer -- [BOOTSTRAP] [TOPIC] [COUNT] [CODEC]
//! # defaults: 127.0.0.1:9092 demo 10 none; CODEC is none|gzip|snappy|lz4|zstd
//! ```
//! Record i has key `key-i`, value `value-i` and a header `seq: i`; each line
//! printed is `key partition offset`.

use strom_client::{Producer, ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let bootstrap = arg(0, "127.0.0.1:9092");
    let topic = arg(1, "demo");
    let count: usize = arg(2, "10").parse()?;
    let mut config = ProducerConfig::new(&bootstrap);
    config.compression = arg(3, "none").parse()?;
    let producer = Producer::new(config).await?;

    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let record = ProducerRecord::new(&topic)
            .key(format!("key-{i}"))
            .value(format!("value-{i}"))
            .header("seq", i.to_string());
        deliveries.push((i, producer.send(record).await?));
    }
    for (i, delivery) in deliveries {
        let meta = delivery.await?;
        println!("key-{i} {} {}", meta.partition, meta.offset);
    }
    producer.close().await?;
    Ok(())
}
