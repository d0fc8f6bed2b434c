//! `strom bench consume`: K consumers read a topic (standalone, partitions
//! split between them, or as one group) and report throughput, and
//! end-to-end latency from the send time stamped in each value.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use strom_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, OffsetReset, Seek, TopicPartition,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{histogram, now_ns, progress, report, stamped_ns, Stats};

/// Arguments of `strom bench consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Broker address(es), comma-separated
    #[arg(short, long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to read
    #[arg(long)]
    topic: String,
    /// Join this consumer group (subscribe) instead of assigning partitions
    #[arg(long)]
    group: Option<String>,
    /// Concurrent consumers, each with its own connection
    #[arg(long, default_value_t = 1)]
    consumers: u32,
    /// Stop after this many messages (default: when the topic is drained)
    #[arg(long)]
    messages: Option<u64>,
    /// Start at the log end instead of the beginning (read what arrives)
    #[arg(long)]
    from_end: bool,
    /// Report end-to-end latency from the send time `strom bench produce` stamps in values
    #[arg(long)]
    e2e: bool,
    /// Stop after this long without a message, in seconds
    #[arg(long, default_value_t = 3)]
    idle_timeout: u64,
}

pub(super) struct ConsumeOptions {
    pub bootstrap: String,
    pub topic: String,
    pub group: Option<String>,
    pub consumers: u32,
    pub messages: Option<u64>,
    pub from_end: bool,
    pub e2e: bool,
    pub idle_timeout: Duration,
}

pub(super) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let opts = ConsumeOptions {
        bootstrap: args.bootstrap,
        topic: args.topic,
        group: args.group,
        consumers: args.consumers,
        messages: args.messages,
        from_end: args.from_end,
        e2e: args.e2e,
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    start(opts).await?.finish_and_report().await
}

/// Consumers that are running; `finish_and_report` waits for them.
pub(super) struct Running {
    stats: Arc<Stats>,
    tasks: Vec<JoinHandle<anyhow::Result<Option<Instant>>>>,
    ticker: JoinHandle<()>,
    e2e: bool,
}

impl Running {
    pub async fn finish_and_report(self) -> anyhow::Result<()> {
        let mut last: Option<Instant> = None;
        for t in self.tasks {
            if let Some(at) = t.await?? {
                last = Some(last.map_or(at, |l| l.max(at)));
            }
        }
        self.ticker.abort();
        // Throughput runs to the last message, not through the idle timeout.
        let elapsed = last.map_or(Duration::ZERO, |l| l - self.stats.started);
        let latency = if self.e2e { "end-to-end" } else { "none" };
        report("consume", &self.stats, elapsed, latency);
        Ok(())
    }
}

/// Connects the consumers and starts them; they are positioned before this returns.
pub(super) async fn start(opts: ConsumeOptions) -> anyhow::Result<Running> {
    if opts.consumers == 0 {
        bail!("--consumers must be at least 1");
    }
    let admin = Admin::new(ClientConfig::new(&opts.bootstrap)).await?;
    let info = admin
        .describe_topics(&[opts.topic.as_str()])
        .await
        .with_context(|| format!("describing topic {}", opts.topic))?;
    let partitions: Vec<i32> = info
        .first()
        .map(|t| t.partitions.iter().map(|p| p.partition).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {} has no partitions", opts.topic);
    }
    let stats = Stats::new();
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..opts.consumers as usize {
        let mut config = ConsumerConfig::new(&opts.bootstrap, opts.group.as_deref());
        config.auto_offset_reset = if opts.from_end {
            OffsetReset::Latest
        } else {
            OffsetReset::Earliest
        };
        config.fetch_max_wait = Duration::from_millis(100);
        let mut consumer = Consumer::new(config)
            .await
            .context("connecting a consumer")?;
        if opts.group.is_some() {
            consumer.subscribe(&[opts.topic.as_str()])?;
        } else {
            let mine: Vec<TopicPartition> = partitions
                .iter()
                .filter(|p| **p as usize % opts.consumers as usize == i)
                .map(|p| TopicPartition::new(opts.topic.clone(), *p))
                .collect();
            if mine.is_empty() {
                continue;
            }
            consumer.assign(mine.clone())?;
            let to = if opts.from_end {
                Seek::End
            } else {
                Seek::Beginning
            };
            for tp in &mine {
                consumer.seek(tp, to)?;
                // Resolve the position now, so records sent from here on are seen.
                let _ = consumer.poll(Duration::ZERO).await?;
            }
        }
        let job = Job {
            stats: stats.clone(),
            done: done.clone(),
            target: opts.messages,
            e2e: opts.e2e,
            idle: opts.idle_timeout,
        };
        tasks.push(tokio::spawn(consume_loop(consumer, job)));
    }
    let ticker = progress("consume", stats.clone());
    Ok(Running {
        stats,
        tasks,
        ticker,
        e2e: opts.e2e,
    })
}

struct Job {
    stats: Arc<Stats>,
    done: Arc<AtomicBool>,
    target: Option<u64>,
    e2e: bool,
    idle: Duration,
}

/// Reads until the shared target is reached or nothing arrives for `idle`;
/// returns when the last message arrived.
async fn consume_loop(mut consumer: Consumer, job: Job) -> anyhow::Result<Option<Instant>> {
    let mut local = histogram();
    let mut last = None;
    let mut idle_since = Instant::now();
    while !job.done.load(Ordering::Relaxed) {
        let Some(record) = consumer.poll(Duration::from_millis(200)).await? else {
            if idle_since.elapsed() >= job.idle {
                break;
            }
            continue;
        };
        let now = Instant::now();
        idle_since = now;
        last = Some(now);
        let size = record.value.as_ref().map_or(0, |v| v.len())
            + record.key.as_ref().map_or(0, |k| k.len());
        if job.e2e {
            if let Some(sent) = record.value.as_deref().and_then(stamped_ns) {
                local.saturating_record((now_ns().saturating_sub(sent) / 1000).max(1));
            }
        }
        job.stats.bytes.fetch_add(size as u64, Ordering::Relaxed);
        let n = job.stats.messages.fetch_add(1, Ordering::Relaxed) + 1;
        if job.target.is_some_and(|t| n >= t) {
            job.done.store(true, Ordering::Relaxed);
        }
        if local.len() >= 4096 {
            job.stats.merge(&mut local);
        }
    }
    job.stats.merge(&mut local);
    consumer.close().await?;
    Ok(last)
}
