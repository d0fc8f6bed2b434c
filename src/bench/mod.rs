//! `strom bench`: load generators built on strom-client that report
//! throughput and latency percentiles (HDR histograms).
//!
//! ```text
//!  produce: K producer tasks ──send──► strom ◄──fetch── C consumer tasks (--consume)
//!             │ send→ack latency                          │ end-to-end latency
//!             └──────────────► Stats (histograms, counters) ◄┘ ─► progress line, report
//! ```
//!
//! With `--rate`, each producer sends on a fixed schedule and latency is
//! measured from the *intended* send time, so a stalled broker shows up as
//! latency instead of silently slowing the load (no coordinated omission).
//! Values of at least 16 bytes carry a marker and the send time in
//! nanoseconds since the Unix epoch, which the consumer reads back for the
//! end-to-end figure (producer and consumer must share a clock: same host).

mod consume;
mod produce;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use clap::{Args, Subcommand};
use hdrhistogram::Histogram;

pub use consume::ConsumeArgs;
pub use produce::ProduceArgs;

/// `strom bench ...`
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce N messages and report throughput and send→ack latency
    Produce(ProduceArgs),
    /// Consume a topic and report throughput (and end-to-end latency with --e2e)
    Consume(ConsumeArgs),
}

/// Runs a bench command on its own runtime.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            BenchCommand::Produce(a) => produce::run(a).await,
            BenchCommand::Consume(a) => consume::run(a).await,
        }
    })
}

/// First 8 bytes of a bench value; the next 8 are the send time (ns since the epoch).
const MARKER: &[u8; 8] = b"stromBNC";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The send time stamped into a bench value, if it carries one.
fn stamped_ns(value: &[u8]) -> Option<u64> {
    if value.len() >= 16 && &value[..8] == MARKER {
        Some(u64::from_be_bytes(value[8..16].try_into().ok()?))
    } else {
        None
    }
}

/// A latency histogram in microseconds, 1 µs to 1 hour, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds")
}

/// Counters and histograms shared by the tasks of one run.
struct Stats {
    started: Instant,
    messages: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    latency: Mutex<Histogram<u64>>,
}

impl Stats {
    fn new() -> Arc<Stats> {
        Arc::new(Stats {
            started: Instant::now(),
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
        })
    }

    /// Adds a task's local histogram (tasks record locally, merge rarely).
    fn merge(&self, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        self.latency
            .lock()
            .expect("stats lock")
            .add(&*local)
            .expect("same histogram bounds");
        local.reset();
    }
}

/// Prints a progress line on stderr every second while `stats` runs, when
/// stderr is a terminal; quiet otherwise. Stop it by aborting the task.
fn progress(label: &'static str, stats: Arc<Stats>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        let mut last = 0u64;
        loop {
            tick.tick().await;
            let n = stats.messages.load(Ordering::Relaxed);
            eprint!(
                "\r\x1b[2K{label}: {n} messages, {} msg/s, {} errors",
                n - last,
                stats.errors.load(Ordering::Relaxed)
            );
            last = n;
        }
    })
}

/// Prints the final figures of one side, and one `summary` line of
/// `key=value` pairs for scripts.
fn report(label: &str, stats: &Stats, elapsed: Duration, latency_name: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let n = stats.messages.load(Ordering::Relaxed);
    let bytes = stats.bytes.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().max(1e-9);
    let h = stats.latency.lock().expect("stats lock");
    let ms = |v: u64| v as f64 / 1000.0;
    println!(
        "{label}: {n} messages, {:.0} msg/s, {:.1} MB/s, {:.2} s, {} errors",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        secs,
        stats.errors.load(Ordering::Relaxed)
    );
    if !h.is_empty() {
        println!(
            "{label}: {latency_name} latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  ({} samples)",
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            h.len()
        );
    }
    let (p50, p99, p999, max) = if h.is_empty() {
        (0, 0, 0, 0)
    } else {
        (
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
        )
    };
    println!(
        "summary side={label} messages={n} bytes={bytes} secs={secs:.3} msg_per_s={:.0} mb_per_s={:.1} \
         errors={} latency={latency_name} p50_us={p50} p99_us={p99} p999_us={p999} max_us={max}",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        stats.errors.load(Ordering::Relaxed),
    );
}
