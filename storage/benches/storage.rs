//! criterion benches of the storage engine, each beside the machine limit it
//! is judged against: appends to the page cache vs a memcpy of the same
//! size, durable appends (flush per batch) vs raw write + fdatasync (and
//! `dd`, see limits.sh), reads and index lookups, and the two candidate
//! append methods (positioned writes vs writing into a fallocate'd map).
//! Results and commands: BENCHMARKS.md, "Storage engine".
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strom_storage::testing::batch_of;
use strom_storage::{Log, LogConfig};

const MIB: usize = 1 << 20;

/// Where bench files go: $STROM_BENCH_DIR (same filesystem as limits.sh)
/// or the system temp dir.
fn bench_dir() -> tempfile::TempDir {
    match std::env::var("STROM_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

/// A batch of about `batch_bytes` made of `record_bytes`-byte records.
fn batch(record_bytes: usize, batch_bytes: usize) -> Vec<u8> {
    // ~8 bytes of record framing for small values, ~9 for 1 KiB ones.
    let per = record_bytes + 8;
    batch_of((batch_bytes - 61) / per, record_bytes, 0)
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 20,
        retention_ms: None,
        retention_bytes: Some(256 << 20),
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    }
}

/// Appends `iters` batches, keeping the log under ~320 MiB with retention
/// (outside the timed region).
fn timed_appends(log: &mut Log, b: &[u8], iters: u64, flush: bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut since_retention = 0usize;
    for _ in 0..iters {
        let t = Instant::now();
        log.append(b).unwrap();
        if flush {
            log.flush().unwrap();
        }
        total += t.elapsed();
        since_retention += b.len();
        if since_retention > 64 << 20 {
            log.apply_retention(0).unwrap();
            since_retention = 0;
        }
    }
    total
}

/// Appends `iters` batches in bursts of at most 512 MiB, each into a fresh
/// log with default segments (dropped outside the timing, so its dirty pages
/// are discarded, not written back): the page-cache append path itself,
/// not the disk, which bounds any sustained rate (see `append_durable`).
fn burst_appends(b: &[u8], iters: u64) -> Duration {
    let cfg = LogConfig {
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    };
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let dir = bench_dir();
        let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
        let n = (iters - done).min((512 * MIB / b.len()) as u64);
        let t = Instant::now();
        for _ in 0..n {
            log.append(b).unwrap();
        }
        total += t.elapsed();
        done += n;
    }
    total
}

fn append_page_cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_page_cache");
    for (rec, size) in [(100, 16 << 10), (1024, 16 << 10), (100, MIB), (1024, MIB)] {
        let b = batch(rec, size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        g.bench_function(BenchmarkId::new(format!("rec{rec}B"), size), |bn| {
            bn.iter_custom(|iters| burst_appends(&b, iters))
        });
    }
    // What the append path is made of, for the record: CRC-32C validation
    // alone, and a bare writev of the same bytes into a fresh file.
    let b = batch(100, MIB);
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function(BenchmarkId::new("validate_only", MIB), |bn| {
        bn.iter(|| black_box(strom_storage::batch::validate(&b, 2 << 20).unwrap().len()))
    });
    g.bench_function(BenchmarkId::new("raw_write", MIB), |bn| {
        bn.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let dir = bench_dir();
                let f = File::create(dir.path().join("raw")).unwrap();
                let n = (iters - done).min((512 * MIB / b.len()) as u64);
                let t = Instant::now();
                for i in 0..n {
                    f.write_all_at(&b, i * b.len() as u64).unwrap();
                }
                total += t.elapsed();
                done += n;
            }
            total
        })
    });
    // The limit: memcpy of the same size into a 256 MiB destination that is
    // walked through (so the destination is not cache-hot, like page cache).
    let dst_len = 256 * MIB;
    let mut dst = vec![1u8; dst_len];
    for size in [16 << 10, MIB] {
        let src = vec![7u8; size];
        let mut at = 0usize;
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::new("memcpy", size), |bn| {
            bn.iter(|| {
                if at + size > dst_len {
                    at = 0;
                }
                dst[at..at + size].copy_from_slice(black_box(&src));
                at += size;
                black_box(&dst[at - 1]);
            })
        });
    }
    g.finish();
}

fn append_durable(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_durable");
    g.sample_size(10);
    for size in [16 << 10, MIB] {
        let b = batch(1024, size);
        g.throughput(Throughput::Bytes(b.len() as u64));
        let dir = bench_dir();
        let mut log = Log::open(dir.path(), log_config()).unwrap();
        g.bench_function(BenchmarkId::new("flush_per_batch", size), |bn| {
            bn.iter_custom(|iters| timed_appends(&mut log, &b, iters, true))
        });
        // The limit in-process: pwrite + fdatasync of the same size to a plain file.
        let dir = bench_dir();
        let f = File::create(dir.path().join("raw")).unwrap();
        let data = vec![3u8; b.len()];
        let mut at = 0u64;
        g.bench_function(BenchmarkId::new("raw_write_fdatasync", size), |bn| {
            bn.iter(|| {
                if at > 256 << 20 {
                    f.set_len(0).unwrap();
                    at = 0;
                }
                f.write_all_at(&data, at).unwrap();
                f.sync_data().unwrap();
                at += data.len() as u64;
            })
        });
    }
    g.finish();
}

fn filled_log(dir: &Path, total: usize, b: &[u8]) -> Log {
    let mut log = Log::open(dir, log_config()).unwrap();
    for _ in 0..total / b.len() {
        log.append(b).unwrap();
    }
    log
}

fn read_and_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    let dir = bench_dir();
    let b = batch(100, 16 << 10);
    let log = filled_log(dir.path(), 192 * MIB, &b);
    let end = log.log_end_offset() as u64;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for max in [16 << 10, MIB] {
        g.throughput(Throughput::Bytes(max as u64));
        g.bench_function(BenchmarkId::new("random_offset_max_bytes", max), |bn| {
            bn.iter(|| {
                let r = log.read((next() % end) as i64, max).unwrap();
                black_box(r.records.len())
            })
        });
    }
    // Index lookup: find the batch holding a random offset (read of one batch).
    g.throughput(Throughput::Elements(1));
    g.bench_function("index_lookup", |bn| {
        bn.iter(|| black_box(log.read((next() % end) as i64, 1).unwrap().records.len()))
    });
    g.bench_function("timestamp_lookup", |bn| {
        bn.iter(|| black_box(log.offset_for_timestamp(0).unwrap()))
    });
    g.finish();
}

/// The alternative append method, measured against what the log does:
/// copy each batch into a read-write map of a fallocate'd file, vs a
/// positioned write into the file. Both write fresh pages of a 256 MiB
/// file (recreated between passes, outside the timing).
fn append_method(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_method");
    let size = MIB;
    let file_len = 256 * MIB;
    let data = vec![9u8; size];
    g.throughput(Throughput::Bytes(size as u64));
    let dir = bench_dir();
    let path = dir.path().join("seg");
    let fresh = |path: &Path| -> File {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        // SAFETY: FFI on an owned descriptor.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, file_len as libc::off_t) };
        assert_eq!(rc, 0);
        f
    };
    for durable in [false, true] {
        let name = if durable { "durable" } else { "page_cache" };
        g.bench_function(BenchmarkId::new("pwrite", name), |bn| {
            bn.iter_custom(|iters| {
                let mut f = fresh(&path);
                let mut at = 0usize;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if at + size > file_len {
                        f = fresh(&path);
                        at = 0;
                    }
                    let t = Instant::now();
                    f.write_all_at(&data, at as u64).unwrap();
                    if durable {
                        f.sync_data().unwrap();
                    }
                    total += t.elapsed();
                    at += size;
                }
                total
            })
        });
        g.bench_function(BenchmarkId::new("mmap_write", name), |bn| {
            bn.iter_custom(|iters| {
                let map_fresh = |path: &Path| {
                    let f = fresh(path);
                    // SAFETY: the bench owns the file and never truncates it
                    // while this map lives.
                    unsafe { memmap2::MmapMut::map_mut(&f).unwrap() }
                };
                let mut map = map_fresh(&path);
                let mut at = 0usize;
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if at + size > file_len {
                        drop(map);
                        map = map_fresh(&path);
                        at = 0;
                    }
                    let t = Instant::now();
                    map[at..at + size].copy_from_slice(&data);
                    if durable {
                        map.flush_range(at, size).unwrap();
                    }
                    total += t.elapsed();
                    at += size;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    targets = append_page_cache, append_durable, read_and_lookup, append_method
}
criterion_main!(benches);
