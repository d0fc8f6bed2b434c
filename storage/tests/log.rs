//! Append/read round trips across segment rolls, index and time-index
//! lookups against brute force, retention, truncation.

mod common;

use std::time::Duration;

use common::{batch, check_all, read_one, stored, tiny_config};
use proptest::prelude::*;
use strom_storage::{Log, LogConfig, Offset, StorageError};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn log_and_syncer_are_send_and_sync() {
    assert_send_sync::<Log>();
    assert_send_sync::<strom_storage::Syncer>();
}

/// (records, value_len, timestamp) per batch.
fn batches() -> impl Strategy<Value = Vec<(usize, usize, i64)>> {
    prop::collection::vec((1usize..5, 0usize..150, 0i64..1000), 1..50)
}

fn fill(log: &mut Log, spec: &[(usize, usize, i64)]) -> Vec<(Offset, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, &(n, len, ts)) in spec.iter().enumerate() {
        let b = batch(i as u64, n, len, ts);
        let info = log.append(&b).expect("append");
        assert_eq!(info.last_offset - info.base_offset + 1, n as i64);
        out.push((info.base_offset, stored(&b, info.base_offset)));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn appended_batches_read_back_byte_for_byte_across_rolls(
        spec in batches(),
        segment_bytes in 200u64..3000,
        interval in 0u32..600,
        reads in prop::collection::vec((any::<prop::sample::Index>(), 1usize..3000), 1..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config(segment_bytes, interval);
        let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
        let expected = fill(&mut log, &spec);
        let total: usize = expected.iter().map(|e| e.1.len()).sum();
        if total as u64 > 2 * segment_bytes {
            prop_assert!(log.segment_count() > 1);
        }
        prop_assert_eq!(log.size_bytes(), total as u64);
        check_all(&log, &expected);
        let end = log.log_end_offset();
        for (idx, max_bytes) in &reads {
            let o = idx.index(end as usize) as Offset;
            let got = log.read(o, *max_bytes).unwrap().records;
            // Whole batches from the one holding `o`, within one segment.
            let first = expected.iter().position(|(b, bytes)| {
                o >= *b && o < *b + i64::from(i32::from_be_bytes([bytes[23], bytes[24], bytes[25], bytes[26]])) + 1
            }).unwrap();
            let mut want = expected[first].1.clone();
            let bases = log.segment_bases();
            let seg_end = bases.iter().copied().find(|&b| b > expected[first].0).unwrap_or(Offset::MAX);
            for (b, bytes) in &expected[first + 1..] {
                if *b >= seg_end || want.len() + bytes.len() > *max_bytes {
                    break;
                }
                want.extend_from_slice(bytes);
            }
            prop_assert_eq!(got.to_vec(), want, "read({}, {})", o, max_bytes);
        }
        // Index and time-index lookups against brute force, before and after reopen.
        for reopen in [false, true] {
            if reopen {
                log.close().unwrap();
                log = Log::open(dir.path(), cfg.clone()).unwrap();
                check_all(&log, &expected);
            }
            for target in [-1i64, 0, 1, 250, 500, 999, 1000, 5000] {
                let want = expected.iter().find_map(|(b, bytes)| {
                    let max_ts = i64::from_be_bytes(bytes[35..43].try_into().unwrap());
                    (max_ts >= target).then_some((*b, max_ts))
                });
                prop_assert_eq!(log.offset_for_timestamp(target).unwrap(), want, "timestamp {}", target);
            }
        }
        // Appends continue after reopen where the log left off.
        let more = batch(999, 2, 10, 5);
        let info = log.append(&more).unwrap();
        prop_assert_eq!(info.base_offset, end);
    }

    #[test]
    fn retention_deletes_oldest_sealed_segments_by_time_and_size(
        spec in prop::collection::vec((1usize..4, 0usize..100), 5..40),
        retention_ms in 0u64..60,
        retention_bytes in 0u64..4000,
        by_time in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = tiny_config(500, 100);
        let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
        // Timestamps rise with the batch number.
        let with_ts: Vec<_> = spec.iter().enumerate().map(|(i, &(n, l))| (n, l, i as i64)).collect();
        let expected = fill(&mut log, &with_ts);
        let bases = log.segment_bases();
        let seg_of = |o: Offset| bases.partition_point(|&b| b <= o) - 1;
        let mut seg_size = vec![0u64; bases.len()];
        let mut seg_max = vec![-1i64; bases.len()];
        for (b, bytes) in &expected {
            seg_size[seg_of(*b)] += bytes.len() as u64;
            let max_ts = i64::from_be_bytes(bytes[35..43].try_into().unwrap());
            seg_max[seg_of(*b)] = seg_max[seg_of(*b)].max(max_ts);
        }
        let now = spec.len() as i64;
        let mut cfg2 = cfg.clone();
        let mut n = 0;
        if by_time {
            cfg2.retention_ms = Some(Duration::from_millis(retention_ms));
            while n < bases.len() - 1 && seg_max[n] < now - retention_ms as i64 { n += 1; }
        } else {
            cfg2.retention_bytes = Some(retention_bytes);
            let mut size: u64 = seg_size.iter().sum();
            while n < bases.len() - 1 && size - seg_size[n] >= retention_bytes { size -= seg_size[n]; n += 1; }
        }
        log.set_config(cfg2.clone());
        prop_assert_eq!(log.apply_retention(now).unwrap(), n);
        prop_assert_eq!(log.segment_count(), bases.len() - n);
        prop_assert_eq!(log.log_start_offset(), bases[n]);
        let kept: Vec<_> = expected.iter().filter(|(b, _)| *b >= bases[n]).cloned().collect();
        check_all(&log, &kept);
        if n > 0 {
            let below = log.read(bases[n] - 1, 100);
            prop_assert!(matches!(below, Err(StorageError::OffsetOutOfRange { .. })), "{:?}", below);
        }
        // The log start survives a crash (no close) and a clean restart.
        drop(log);
        let log = Log::open(dir.path(), cfg2.clone()).unwrap();
        prop_assert_eq!(log.log_start_offset(), bases[n]);
        check_all(&log, &kept);
        log.close().unwrap();
        let log = Log::open(dir.path(), cfg2).unwrap();
        prop_assert_eq!(log.log_start_offset(), bases[n]);
    }
}

#[test]
fn max_timestamp_finds_the_batch_with_the_largest_timestamp_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), tiny_config(2048, 256)).unwrap();
    assert_eq!(log.max_timestamp().unwrap(), None);
    // Timestamps out of order, over several segments; 9_000 appears twice.
    let stamps = [1_000, 9_000, 3_000, 2_000, 9_000, 4_000, 5_000, 500];
    let mut bases = Vec::new();
    for (i, ts) in stamps.iter().enumerate() {
        bases.push(
            log.append(&batch(i as u64, 4, 100, *ts))
                .unwrap()
                .base_offset,
        );
    }
    assert!(log.segment_count() > 1, "the case needs several segments");
    let max = stamps.iter().max().unwrap();
    let (offset, ts) = log.max_timestamp().unwrap().unwrap();
    assert_eq!(ts, *max + 3, "batch() spreads records 1 ms apart");
    assert_eq!(offset, bases[1], "the earliest batch holding the maximum");
}

#[test]
fn reads_outside_the_log_are_out_of_range_and_the_end_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    assert!(log.read(0, 100).unwrap().records.is_empty());
    let b = batch(1, 3, 10, 0);
    log.append(&b).unwrap();
    assert!(matches!(
        log.read(4, 100),
        Err(StorageError::OffsetOutOfRange {
            offset: 4,
            log_start: 0,
            log_end: 3
        })
    ));
    assert!(matches!(
        log.read(-1, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(3, 100).unwrap().records.is_empty());
    assert_eq!(read_one(&log, 2), stored(&b, 0));
}

#[test]
fn invalid_batches_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let good = batch(1, 2, 10, 0);
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    let mut both = good.clone();
    both.extend_from_slice(&bad);
    assert!(matches!(
        log.append(&both),
        Err(StorageError::CorruptBatch { .. })
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let info = log.append(&two).unwrap();
    assert_eq!((info.base_offset, info.log_end_offset), (0, 4));
    assert_eq!(read_one(&log, 3), stored(&good, 2));
}

#[test]
fn truncate_to_cuts_at_the_batch_holding_the_offset_even_while_reads_are_live() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(400, 100);
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    let spec: Vec<_> = (0..30).map(|i| (3usize, 20usize, i as i64)).collect();
    let expected = fill(&mut log, &spec);
    let live = log.read(expected[28].0, 1 << 20).unwrap().records;
    let live_copy = live.to_vec();
    // Offset in the middle of batch 28 (3 records each): drop 28 and 29.
    log.truncate_to(expected[28].0 + 1).unwrap();
    check_all(&log, &expected[..28]);
    assert_eq!(
        live.to_vec(),
        live_copy,
        "an outstanding read keeps its bytes"
    );
    drop(live);
    // Unshared: cut in place, across segments.
    log.truncate_to(expected[5].0).unwrap();
    check_all(&log, &expected[..5]);
    let more = fill(&mut log, &spec[5..8]);
    assert_eq!(more[0].0, expected[5].0);
    drop(log);
    let log = Log::open(dir.path(), cfg).unwrap();
    let mut all = expected[..5].to_vec();
    all.extend(more);
    check_all(&log, &all);
}

#[test]
fn segment_ms_rolls_a_non_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = tiny_config(1 << 20, 100);
    cfg.segment_ms = Duration::from_millis(10);
    let mut log = Log::open(dir.path(), cfg).unwrap();
    log.maybe_roll(i64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1, "an empty segment is not rolled");
    log.append(&batch(1, 1, 1, 0)).unwrap();
    log.maybe_roll(i64::MAX).unwrap();
    assert_eq!(log.segment_bases(), vec![0, 1]);
}

#[test]
fn truncate_to_keeps_reads_taken_before_a_roll_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), tiny_config(300, 100)).unwrap();
    let spec: Vec<_> = (0..3).map(|i| (2usize, 40usize, i as i64)).collect();
    let first = fill(&mut log, &spec[..1]);
    // Read while segment 0 is active, then roll it (sealing remaps it).
    let live = log.read(0, 1 << 20).unwrap().records;
    fill(&mut log, &spec[1..]);
    assert!(log.segment_count() > 1);
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(live.to_vec(), first[0].1, "the old view is still readable");
}

#[test]
fn delete_records_moves_the_log_start_and_drops_whole_segments_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_config(1024, 128);
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    let spec: Vec<(usize, usize, i64)> = (0..24).map(|i| (3, 60, 1_000 + i * 10)).collect();
    let expected = fill(&mut log, &spec);
    let end = log.log_end_offset();
    let segments = log.segment_count();
    assert!(segments > 3, "the case needs several segments");

    // Past the end, or negative other than -1: refused, nothing moves.
    for bad in [end + 1, -2] {
        assert!(matches!(
            log.delete_records_before(bad),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }
    assert_eq!(log.log_start_offset(), 0);

    // A start inside a batch that is not the first of its segment.
    let bases = log.segment_bases();
    let start = expected
        .iter()
        .map(|(b, _)| *b + 1)
        .find(|&o| o > bases[2] + 3 && o < bases[3])
        .expect("an offset inside the third segment");
    assert_eq!(log.delete_records_before(start).unwrap(), start);
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(
        log.segment_bases()[0],
        bases[2],
        "segments below the start are gone"
    );
    assert!(matches!(
        log.read(start - 1, 100),
        Err(StorageError::OffsetOutOfRange { log_start, .. }) if log_start == start
    ));
    // The read at the start returns the batch straddling it, whole.
    let holding = expected.iter().rev().find(|(b, _)| *b <= start).unwrap();
    assert_eq!(read_one(&log, start), holding.1);
    // Timestamp lookups answer from the start on.
    let (offset, _) = log.offset_for_timestamp(0).unwrap().unwrap();
    assert_eq!(offset, start);
    // Lower than the start: nothing changes.
    assert_eq!(log.delete_records_before(3).unwrap(), start);

    // Durable: the start survives a clean close and a reopen without one.
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.log_start_offset(), start);
    check_all(
        &log,
        &expected
            .iter()
            .filter(|(b, _)| *b >= start)
            .cloned()
            .collect::<Vec<_>>(),
    );
    drop(log); // no close: the next open scans as after a crash
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.log_start_offset(), start);

    // -1 means the log end: every sealed segment goes, the active one stays
    // (empty of readable records), and appends go on from the end.
    assert_eq!(log.delete_records_before(-1).unwrap(), end);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert!(log.read(end, 100).unwrap().records.is_empty());
    assert_eq!(
        log.append(&batch(99, 2, 10, 5_000)).unwrap().base_offset,
        end
    );
    log.close().unwrap();
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (end, end + 2)
    );
}

/// Disk a quiet partition holds: index files sized for what a segment can
/// index (not `index_max_bytes` each), and a block reservation that starts
/// at 1 MiB and grows with the segment.
#[test]
fn a_quiet_partition_holds_little_disk() {
    use std::os::unix::fs::MetadataExt;
    let cfg = LogConfig::default();
    let entries = (1 << 30) / 4096 + 3;
    assert_eq!(cfg.index_entries(cfg.segment_bytes), entries);
    let every_batch = LogConfig {
        index_interval_bytes: 0,
        ..LogConfig::default()
    };
    assert_eq!(
        every_batch.index_entries(1 << 30),
        u64::MAX,
        "capped by index_max_bytes"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    log.append(&batch(1, 3, 100, 0)).unwrap();
    let allocated = |ext: &str| {
        let path = dir.path().join(format!("{:020}.{ext}", 0));
        std::fs::metadata(path).unwrap().blocks() * 512
    };
    let pages = |bytes: u64| bytes.div_ceil(4096) * 4096;
    assert_eq!(allocated("index"), pages(entries * 8), "offset index");
    assert_eq!(allocated("timeindex"), pages(entries * 12), "time index");
    let log_blocks = allocated("log");
    assert!(
        log_blocks <= (1 << 20) + 8192,
        "log file holds {log_blocks} bytes of blocks after one small append"
    );
    // A busy segment reserves further ahead (up to 32 MiB).
    let big = batch(2, 900, 1000, 0);
    for _ in 0..20 {
        log.append(&big).unwrap();
    }
    let size = std::fs::metadata(dir.path().join(format!("{:020}.log", 0)))
        .unwrap()
        .len();
    assert!(
        allocated("log") > size + (2 << 20),
        "reserved {} for {size} written",
        allocated("log")
    );
}

/// A rebuild after a crash sizes the indexes for the segment it finds, and
/// still never past `index_max_bytes` (an interval of 1 byte asks for an
/// entry per batch).
#[test]
fn rebuilt_indexes_stay_within_index_max_bytes() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 1,
        index_max_bytes: 16 << 10,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..400 {
        log.append(&batch(i, 2, 200, 0)).unwrap();
    }
    drop(log); // no close: the reopen rebuilds the active segment's indexes
    let log = Log::open(dir.path(), cfg.clone()).unwrap();
    for ext in ["index", "timeindex"] {
        let path = dir.path().join(format!("{:020}.{ext}", 0));
        let meta = std::fs::metadata(path).unwrap();
        assert!(meta.len() <= 16 << 10, "{ext}: {} bytes", meta.len());
        assert!(
            meta.blocks() * 512 <= 16 << 10,
            "{ext}: {} bytes of blocks",
            meta.blocks() * 512
        );
    }
    assert_eq!(log.log_end_offset(), 800);
}
