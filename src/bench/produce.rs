//! `strom bench produce`: K producers send N messages of a given size, as fast
//! as they can or at a fixed rate, and report send→ack latency; with
//! `--consume`, consumers read concurrently and report end-to-end latency.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use strom_client::{
    Acks, Admin, ClientConfig, Compression, DeliveryFuture, NewTopic, Producer, ProducerConfig,
    RecordRef,
};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
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
    #[arg(long, default_value = "all")]
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
    #[arg(long, default_value = "none")]
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
    let value_pad = vec![b'x'; args.size];
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.producers as f64 / args.rate));
    let mut senders = Vec::new();
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
        senders.push(Sender::new(
            producer,
            &args.topic,
            share,
            &value_pad,
            stats.clone(),
        ));
    }
    // The schedule starts once every producer is connected.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for sender in senders {
        tasks.push(match interval {
            Some(iv) => {
                let rt = Handle::current();
                tokio::task::spawn_blocking(move || sender.paced(start, iv, &rt))
            }
            None => tokio::spawn(sender.flat_out()),
        });
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = start.elapsed();
    ticker.abort();
    let latency = if interval.is_some() {
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

/// Consecutive records that went into one batch: the future of one of them
/// (they are acknowledged together) and each one's latency origin. Waiting
/// on one future per batch instead of one per record keeps the bench's own
/// cost per record to a clock read and a push.
struct Sent {
    delivery: DeliveryFuture,
    origins: Vec<Instant>,
}

/// One producer's sends: `paced` on a thread of its own at a fixed rate, or
/// `flat_out` on the runtime. A collector task awaits the
/// acknowledgements, so neither loop waits for anything but the producer's
/// queue (or the schedule).
struct Sender {
    producer: Producer,
    messages: u64,
    stamp: Stamp,
    open: Option<Sent>,
    last_len: usize,
    tx: mpsc::UnboundedSender<Sent>,
    collector: JoinHandle<()>,
}

impl Sender {
    /// `messages` records of `value`'s size to `topic`.
    fn new(
        producer: Producer,
        topic: &str,
        messages: u64,
        value: &[u8],
        stats: Arc<Stats>,
    ) -> Sender {
        let (tx, rx) = mpsc::unbounded_channel::<Sent>();
        let collector = tokio::spawn(collect(rx, stats, value.len() as u64));
        Sender {
            producer,
            messages,
            stamp: Stamp {
                topic: topic.to_string(),
                value: value.to_vec(),
                clock: Clock::new(),
            },
            open: None,
            last_len: 64,
            tx,
            collector,
        }
    }

    /// Notes a sent record whose latency counts from `origin`.
    fn sent(&mut self, delivery: DeliveryFuture, origin: Instant) -> anyhow::Result<()> {
        match &mut self.open {
            Some(s) if s.delivery.same_batch(&delivery) => s.origins.push(origin),
            _ => {
                self.hand_over()?;
                let mut origins = Vec::with_capacity(self.last_len);
                origins.push(origin);
                self.open = Some(Sent { delivery, origins });
            }
        }
        Ok(())
    }

    async fn flat_out(mut self) -> anyhow::Result<()> {
        for _ in 0..self.messages {
            let now = Instant::now();
            let record = self.stamp.record(now);
            let delivery = self.producer.send_ref(record).await?;
            self.sent(delivery, now)?;
        }
        self.finish().await
    }

    /// Sends message j at `start + j * interval`, or as soon after it as the
    /// thread wakes, and counts its latency from that intended time. tokio's
    /// timer ticks in milliseconds: pacing on it sent bursts up to a
    /// millisecond late and counted the bench's own lateness as latency.
    /// This thread sleeps with a 1 µs timer slack instead, and hands each
    /// send to the runtime. It sleeps at least [`MIN_SLEEP`] at a time and
    /// then sends everything due, so above 10,000 msg/s per producer messages
    /// go out in small groups, each up to `MIN_SLEEP` late (and counted so).
    fn paced(mut self, start: Instant, interval: Duration, rt: &Handle) -> anyhow::Result<()> {
        precise_sleeps();
        for j in 0..self.messages {
            let intended = start + interval.mul_f64(j as f64);
            let mut now = Instant::now();
            if intended > now {
                std::thread::sleep((intended - now).max(MIN_SLEEP));
                now = Instant::now();
            }
            let record = self.stamp.record(now);
            let delivery = rt.block_on(self.producer.send_ref(record))?;
            self.sent(delivery, intended)?;
        }
        rt.block_on(self.finish())
    }

    /// Hands the open batch's records to the collector.
    fn hand_over(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.open.take() {
            self.last_len = s.origins.len();
            if self.tx.send(s).is_err() {
                bail!("latency collector stopped");
            }
        }
        Ok(())
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        self.hand_over()?;
        drop(self.tx);
        self.producer.flush().await?;
        self.collector.await?;
        self.producer.close().await?;
        Ok(())
    }
}

/// A record's value and create time, stamped with the send time.
struct Stamp {
    topic: String,
    /// One value buffer, restamped before each send: send_ref copies it
    /// into the batch.
    value: Vec<u8>,
    clock: Clock,
}

impl Stamp {
    /// The next record, stamped with `now`. The record's create time comes
    /// from the same clock reading, so the producer does not read the clock
    /// again.
    fn record(&mut self, now: Instant) -> RecordRef<'_> {
        let ns = self.clock.ns(now);
        if self.value.len() >= 16 {
            self.value[..8].copy_from_slice(MARKER);
            self.value[8..16].copy_from_slice(&ns.to_be_bytes());
        }
        RecordRef::new(&self.topic)
            .value(&self.value)
            .timestamp((ns / 1_000_000) as i64)
    }
}

/// Shortest sleep of a paced producer. A wake-up per message at 50,000
/// msg/s cost the bench 40 % of its CPU in timer and context-switch work
/// (perf: `do_nanosleep`), taken from the broker on the same two cores; in
/// alternating W5 runs a 100 µs floor lowered the median p50 from 746 to
/// 634 µs and p99 from 1.83 to 1.40 ms, lateness included.
const MIN_SLEEP: Duration = Duration::from_micros(100);

/// Lets this thread's sleeps end within a microsecond of their deadline
/// (Linux defaults to 50 µs of timer slack). Best effort: without it the
/// pacing is only coarser.
fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only
    // the calling thread's timer slack.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
    if rc != 0 {
        tracing::debug!("PR_SET_TIMERSLACK failed; paced sends may run up to 50 µs late");
    }
}

/// Wall-clock nanoseconds for an `Instant`, from one reading of both clocks,
/// so stamping a value costs no second clock read.
struct Clock {
    at: Instant,
    ns: u64,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            at: Instant::now(),
            ns: now_ns(),
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        self.ns + t.saturating_duration_since(self.at).as_nanos() as u64
    }
}

async fn collect(mut rx: mpsc::UnboundedReceiver<Sent>, stats: Arc<Stats>, size: u64) {
    let mut acks = FuturesUnordered::new();
    let mut local = histogram();
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some((origins, result)) = acks.next(), if !acks.is_empty() => {
                let origins: Vec<Instant> = origins;
                let n = origins.len() as u64;
                match result {
                    Ok(_) => {
                        let now = Instant::now();
                        for origin in origins {
                            let us = now.saturating_duration_since(origin).as_micros() as u64;
                            local.saturating_record(us.max(1));
                        }
                        stats.messages.fetch_add(n, Ordering::Relaxed);
                        stats.bytes.fetch_add(n * size, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if stats.errors.fetch_add(n, Ordering::Relaxed) == 0 {
                            eprintln!("strom bench: first send error: {e}");
                        }
                    }
                }
                if local.len() >= 4096 {
                    stats.merge(&mut local);
                }
            }
            msg = rx.recv(), if open => match msg {
                Some(Sent { delivery, origins }) => {
                    acks.push(async move { (origins, delivery.await) })
                }
                None => open = false,
            },
            else => break,
        }
    }
    stats.merge(&mut local);
}
