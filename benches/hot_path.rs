//! Criterion benches for the broker's hot path, one piece at a time: batch
//! validation, CRC-32C, offset assignment + append (through `Partition`,
//! as the produce handler calls it), and fetch response assembly (read from
//! the segment maps + encode the FetchResponse, as the fetch handler does).
//!
//! `CARGO_TARGET_DIR=... cargo bench -p strom --bench hot_path`; the data
//! goes to `STROM_BENCH_DIR` (default: the temp dir). Figures: BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom::broker::Partition;
use strom_storage::batch::{compute_crc, validate};
use strom_storage::testing::batch_of;
use strom_storage::LogConfig;

/// Batches as producers send them: 16 KiB and 1 MiB of 1 KiB or 100 B records.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("16KiB_1KiB_records", batch_of(16, 1000, 0)),
        ("16KiB_100B_records", batch_of(160, 80, 0)),
        ("1MiB_1KiB_records", batch_of(1024, 1000, 0)),
    ]
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("STROM_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("bench temp dir")
}

fn crc_and_validate(c: &mut Criterion) {
    let mut g = c.benchmark_group("produce_checks");
    for (name, batch) in cases() {
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(format!("crc32c/{name}"), |b| {
            b.iter(|| compute_crc(black_box(&batch)))
        });
        g.bench_function(format!("validate/{name}"), |b| {
            b.iter(|| validate(black_box(&batch), 1 << 30).expect("valid batch"))
        });
    }
    g.finish();
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    for (name, batch) in cases() {
        let dir = bench_dir();
        let config = LogConfig {
            segment_bytes: 256 << 20,
            ..LogConfig::default()
        };
        let partition = Partition::open(0, dir.path().join("bench-0"), config).expect("open");
        g.throughput(Throughput::Bytes(batch.len() as u64));
        // Validation, offset assignment and the write into the page cache;
        // no fsync (acks=1).
        g.bench_function(format!("partition_append/{name}"), |b| {
            b.iter(|| partition.append(black_box(&batch)).expect("append"))
        });
        partition.close().expect("close");
    }
    g.finish();
}

fn fetch_assembly(c: &mut Criterion) {
    let mut g = c.benchmark_group("fetch");
    let dir = bench_dir();
    let partition =
        Partition::open(0, dir.path().join("fetch-0"), LogConfig::default()).expect("open");
    let batch = batch_of(16, 1000, 0);
    for _ in 0..1024 {
        partition.append(&batch).expect("append");
    }
    for max_bytes in [64 << 10, 1 << 20] {
        g.throughput(Throughput::Bytes(max_bytes as u64));
        g.bench_function(format!("read_and_encode/{}KiB", max_bytes >> 10), |b| {
            b.iter_batched(
                || (),
                |()| {
                    let data = partition.read(0, max_bytes).expect("read");
                    let response = FetchResponse::default().with_responses(vec![
                        FetchableTopicResponse::default()
                            .with_topic(TopicName(StrBytes::from_static_str("bench")))
                            .with_partitions(vec![PartitionData::default()
                                .with_high_watermark(data.log_end_offset)
                                .with_records(Some(data.records))]),
                    ]);
                    strom::protocol::encode_response(7, 12, &response).expect("encode")
                },
                BatchSize::SmallInput,
            )
        });
    }
    partition.close().expect("close");
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = crc_and_validate, append, fetch_assembly
}
criterion_main!(benches);
