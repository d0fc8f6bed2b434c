//! `strom bench produce`: K producers send N messages of a given size, as fast
//! as they can or at a fixed rate, and report send→ack latency; with
//! `--consume`, consumers read concurrently and report end-to-end latency.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use strom_client::{
    Acks, Admin, ClientConfig, Compression, DeliveryFuture, NewTopic, Producer, ProducerConfig,
    ProducerRecord,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::consume::{self, ConsumeOptions};
use super::{histogram, now_ns, progress, report, Stats, MARKER};

/// Arguments of `strom bench produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Broker address(es), comma-separated
    #[arg(short, long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to write (created with --partitions if it does not exist)
    #[arg(long)]
    topic: String,
    /// Messages to send in total
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Value size in bytes (>= 16 carries the send time for end-to-end latency)
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Partitions to create the topic with (default: the broker's num_partitions)
    #[arg(long)]
    partitions: Option<i32>,
    /// Concurrent producers, each with its own connection
    #[arg(long, default_value_t = 1)]
    producers: u32,
    /// Acknowledgements: 0, 1 or all
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// Bytes per partition batch
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Longest wait for a batch to fill, in ms
    #[arg(long, default_value_t = 5)]
    linger: u64,
    /// Produce requests in flight per producer
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// none, gzip, snappy, lz4 or zstd
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Fixed total rate in messages/s (0: as fast as possible); latency is then
    /// measured from each message's intended send time
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Also run consumers from the log end and report end-to-end latency
    #[arg(long)]
    consume: bool,
    /// Consumers for --consume (partitions are split between them)
    #[arg(long, default_value_t = 1)]
    consumers: u32,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "0" => Ok(Acks::None),
        "1" => Ok(Acks::Leader),
        "all" | "-1" => Ok(Acks::All),
        _ => Err(format!("expected 0, 1 or all, found {s:?}")),
    }
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!(
            "expected none, gzip, snappy, lz4 or zstd, found {s:?}"
        )),
    }
}

pub(super) async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    if args.producers == 0 || args.consumers == 0 {
        bail!("--producers and --consumers must be at least 1");
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!(
            "--rate must be a number of messages per second, found {}",
            args.rate
        );
    }
    ensure_topic(&args).await?;

    let consumers = if args.consume {
        let opts = ConsumeOptions {
            bootstrap: args.bootstrap.clone(),
            topic: args.topic.clone(),
            group: None,
            consumers: args.consumers,
            messages: Some(args.messages),
            from_end: true,
            e2e: true,
            idle_timeout: Duration::from_secs(10),
        };
        Some(consume::start(opts).await?)
    } else {
        None
    };

    let stats = Stats::new();
    let ticker = progress("produce", stats.clone());
    let value_pad = Bytes::from(vec![b'x'; args.size]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.producers {
        let share = args.messages / args.producers as u64
            + u64::from((i as u64) < args.messages % args.producers as u64);
        let config = ProducerConfig {
            client: ClientConfig::new(&args.bootstrap),
            acks: args.acks,
            compression: args.compression,
            batch_size: args.batch_size,
            linger: Duration::from_millis(args.linger),
            max_in_flight: args.max_in_flight,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(config)
            .await
            .context("connecting a producer")?;
        let job = SendJob {
            topic: args.topic.clone(),
            messages: share,
            pad: value_pad.clone(),
            interval: (args.rate > 0.0)
                .then(|| Duration::from_secs_f64(args.producers as f64 / args.rate)),
            start,
        };
        tasks.push(tokio::spawn(send_loop(producer, job, stats.clone())));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    ticker.abort();
    let latency = if args.rate > 0.0 {
        "intended-send→ack"
    } else {
        "send→ack"
    };
    report("produce", &stats, elapsed, latency);
    if let Some(c) = consumers {
        c.finish_and_report().await?;
    }
    Ok(())
}

/// Creates the topic when --partitions is given and it does not exist yet.
async fn ensure_topic(args: &ProduceArgs) -> anyhow::Result<()> {
    let Some(partitions) = args.partitions else {
        return Ok(());
    };
    let admin = Admin::new(ClientConfig::new(&args.bootstrap)).await?;
    match admin
        .create_topics(&[NewTopic::new(args.topic.clone(), partitions)])
        .await
    {
        Ok(()) => Ok(()),
        // TOPIC_ALREADY_EXISTS: reuse it.
        Err(e) if e.code() == Some(36) => Ok(()),
        Err(e) => Err(e).context(format!("creating topic {}", args.topic)),
    }
}

struct SendJob {
    topic: String,
    messages: u64,
    pad: Bytes,
    /// Time between two sends of this producer at a fixed rate.
    interval: Option<Duration>,
    start: Instant,
}

/// One producer's sends. A collector task awaits the acknowledgements, so the
/// loop only ever waits for the producer's queue (or the schedule).
async fn send_loop(producer: Producer, job: SendJob, stats: Arc<Stats>) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::unbounded_channel::<(Instant, DeliveryFuture)>();
    let collector = tokio::spawn(collect(rx, stats.clone(), job.pad.len() as u64));
    for j in 0..job.messages {
        let origin = match job.interval {
            Some(iv) => {
                let intended = job.start + iv.mul_f64(j as f64);
                // The timer ticks in milliseconds: messages due within the
                // next one go now. Latency counts from the intended time, or
                // from the actual send when that is earlier.
                let now = Instant::now();
                if intended > now + Duration::from_millis(1) {
                    tokio::time::sleep_until(intended - Duration::from_millis(1)).await;
                }
                intended.min(Instant::now())
            }
            None => Instant::now(),
        };
        let record = ProducerRecord::new(job.topic.clone()).value(value(&job.pad));
        let delivery = producer.send(record).await?;
        if tx.send((origin, delivery)).is_err() {
            bail!("latency collector stopped");
        }
    }
    drop(tx);
    producer.flush().await?;
    collector.await?;
    producer.close().await?;
    Ok(())
}

/// A value of the pad's size, stamped with the marker and the send time.
fn value(pad: &Bytes) -> Bytes {
    if pad.len() < 16 {
        return pad.clone();
    }
    let mut v = BytesMut::with_capacity(pad.len());
    v.put_slice(MARKER);
    v.put_u64(now_ns());
    v.put_slice(&pad[16..]);
    v.freeze()
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<(Instant, DeliveryFuture)>,
    stats: Arc<Stats>,
    size: u64,
) {
    let mut acks = FuturesUnordered::new();
    let mut local = histogram();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((origin, result)) = acks.next(), if !acks.is_empty() => {
                let origin: Instant = origin;
                match result {
                    Ok(_) => {
                        let us = origin.elapsed().as_micros() as u64;
                        local.saturating_record(us.max(1));
                        stats.messages.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(size, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if stats.errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("strom bench: first send error: {e}");
                        }
                    }
                }
                if local.len() >= 4096 {
                    stats.merge(&mut local);
                }
            }
            msg = rx.recv(), if open => match msg {
                Some((origin, fut)) => acks.push(async move { (origin, fut.await) }),
                None => open = false,
            },
            else => break,
        }
    }
    stats.merge(&mut local);
}
