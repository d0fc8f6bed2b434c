//! Prometheus metrics: counters the data path bumps (lock-free atomics), and
//! a collector that reads partition, group and process state only when
//! scraped. Served as text on `metrics.listen` by a minimal HTTP endpoint.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::broker::Broker;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// The metrics the request path updates.
#[derive(Debug)]
pub struct Metrics {
    pub requests: Family<ApiLabels, Counter>,
    pub request_errors: Family<ApiLabels, Counter>,
    pub request_seconds: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub records_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub connections: Gauge,
    pub connections_refused: Counter,
    /// Time an acks=all produce waited for its fsync (group commit).
    pub flush_wait_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            request_errors: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            bytes_in: Family::default(),
            records_in: Family::default(),
            bytes_out: Family::default(),
            records_out: Family::default(),
            connections: Gauge::default(),
            connections_refused: Counter::default(),
            flush_wait_seconds: latency_histogram(),
        }
    }
}

impl Metrics {
    pub fn api(&self, name: &str) -> ApiLabels {
        ApiLabels {
            api: name.to_string(),
        }
    }

    pub fn topic(&self, name: &str) -> TopicLabels {
        TopicLabels {
            topic: name.to_string(),
        }
    }
}

/// Builds the registry: the request-path metrics plus the scrape-time
/// collector over `broker`.
pub fn registry(metrics: &Metrics, broker: Arc<Broker>) -> Registry {
    let mut r = Registry::with_prefix("strom");
    r.register(
        "requests",
        "Requests handled, by API",
        metrics.requests.clone(),
    );
    r.register(
        "request_errors",
        "Requests that failed or carried an error code, by API",
        metrics.request_errors.clone(),
    );
    r.register(
        "request_duration_seconds",
        "Time from reading a request to its response being ready, by API",
        metrics.request_seconds.clone(),
    );
    r.register(
        "bytes_in",
        "Record batch bytes appended, by topic",
        metrics.bytes_in.clone(),
    );
    r.register(
        "records_in",
        "Records appended, by topic",
        metrics.records_in.clone(),
    );
    r.register(
        "bytes_out",
        "Record batch bytes fetched, by topic",
        metrics.bytes_out.clone(),
    );
    r.register(
        "records_out",
        "Records fetched, by topic",
        metrics.records_out.clone(),
    );
    r.register(
        "connections_active",
        "Open client connections",
        metrics.connections.clone(),
    );
    r.register(
        "connections_refused",
        "Connections refused because max_connections was reached",
        metrics.connections_refused.clone(),
    );
    r.register(
        "flush_wait_seconds",
        "Time acks=all produces waited for their fsync (group commit)",
        metrics.flush_wait_seconds.clone(),
    );
    r.register_collector(Box::new(StateCollector { broker }));
    r
}

/// Reads broker and process state at scrape time. Each partition's lock is
/// taken briefly, one at a time, as a fetch would.
struct StateCollector {
    broker: Arc<Broker>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector")
            .field("data_dir", &self.broker.data_dir())
            .finish()
    }
}

/// One partition's figures for a scrape.
struct PartitionStats {
    log_start: i64,
    log_end: i64,
    size_bytes: u64,
    segments: usize,
    fdatasyncs: u64,
}

fn partition_stats(p: &crate::broker::Partition) -> Option<PartitionStats> {
    p.maintain(|log| {
        Ok(PartitionStats {
            log_start: log.log_start_offset(),
            log_end: log.log_end_offset(),
            size_bytes: log.size_bytes(),
            segments: log.segment_count(),
            fdatasyncs: log.syncer().fdatasync_count(),
        })
    })
    .ok()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    group: String,
    topic: String,
    partition: String,
}

fn gauge_family<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(S, i64)],
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (labels, value) in rows {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut start = Vec::new();
        let mut end = Vec::new();
        let mut size = Vec::new();
        let mut segments = Vec::new();
        let mut fsyncs = 0u64;
        let mut ends = std::collections::HashMap::new();
        for topic in self.broker.topics() {
            for p in &topic.partitions {
                let Some(stats) = partition_stats(p) else {
                    continue;
                };
                let labels = PartitionLabels {
                    topic: topic.name.clone(),
                    partition: p.index.to_string(),
                };
                start.push((labels.clone(), stats.log_start));
                end.push((labels.clone(), stats.log_end));
                size.push((labels.clone(), stats.size_bytes as i64));
                segments.push((labels, stats.segments as i64));
                fsyncs += stats.fdatasyncs;
                ends.insert((topic.name.clone(), p.index), stats.log_end);
            }
        }
        gauge_family(
            &mut encoder,
            "partition_log_start_offset",
            "First offset still in the log",
            &start,
        )?;
        gauge_family(
            &mut encoder,
            "partition_log_end_offset",
            "Offset the next record will get (high watermark)",
            &end,
        )?;
        gauge_family(
            &mut encoder,
            "partition_size_bytes",
            "Bytes of all segments",
            &size,
        )?;
        gauge_family(
            &mut encoder,
            "partition_segments",
            "Segment files",
            &segments,
        )?;
        let counter = ConstCounter::new(fsyncs);
        counter.encode(encoder.encode_descriptor(
            "fdatasyncs",
            "fdatasync calls on partition logs (acks=all waits / this = flush batch size)",
            None,
            counter.metric_type(),
        )?)?;

        let lag: Vec<(LagLabels, i64)> = self
            .broker
            .groups
            .all_committed()
            .into_iter()
            .filter_map(|(group, topic, partition, offset)| {
                let end = *ends.get(&(topic.clone(), partition))?;
                Some((
                    LagLabels {
                        group,
                        topic,
                        partition: partition.to_string(),
                    },
                    (end - offset).max(0),
                ))
            })
            .collect();
        gauge_family(
            &mut encoder,
            "group_lag",
            "Log end offset minus the group's committed offset",
            &lag,
        )?;

        let process = process_stats();
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident set size",
            process.rss_bytes,
        )?;
        gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            process.open_fds,
        )?;
        Ok(())
    }
}

struct ProcessStats {
    rss_bytes: i64,
    open_fds: i64,
}

/// RSS from /proc/self/statm (pages) and the count of /proc/self/fd.
fn process_stats() -> ProcessStats {
    let page = 4096i64;
    let rss_pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(-1);
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as i64)
        .unwrap_or(-1);
    ProcessStats {
        rss_bytes: if rss_pages < 0 { -1 } else { rss_pages * page },
        open_fds,
    }
}

/// Serves `GET /metrics` on `listener` until shutdown. One request per
/// connection; anything else gets 404. Scrapes never take a lock that the
/// data path holds for longer than one partition's offsets read.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (mut stream, peer) = tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(cause = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 512];
            // Read the request head (bounded in size and time).
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                debug!(%peer, "metrics request timed out");
                return;
            }
            let response =
                if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?") {
                    let mut body = String::new();
                    match prometheus_client::encoding::text::encode(&mut body, &registry) {
                        Ok(()) => http(200, "text/plain; version=0.0.4; charset=utf-8", &body),
                        Err(_) => http(500, "text/plain", "encoding failed\n"),
                    }
                } else {
                    http(404, "text/plain", "try GET /metrics\n")
                };
            if let Err(e) = stream.write_all(response.as_bytes()).await {
                debug!(%peer, cause = %e, "metrics write failed");
            }
        });
    }
}

fn http(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut out = String::with_capacity(body.len() + 128);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    out
}

/// Binds the metrics listener if configured; logs where it listens.
pub async fn bind(listen: &str) -> anyhow::Result<Option<TcpListener>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {listen}: {e}"))?;
    let addr: SocketAddr = listener.local_addr()?;
    info!(addr = %addr, "metrics endpoint at http://{addr}/metrics");
    Ok(Some(listener))
}
