//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::time::Duration;

use strom_storage::testing::BatchBuilder;
use strom_storage::{Log, LogConfig, Offset};

/// Tiny segments and indexes so a few KiB of batches roll many times.
pub fn tiny_config(segment_bytes: u64, index_interval_bytes: u32) -> LogConfig {
    LogConfig {
        segment_bytes,
        segment_ms: Duration::from_secs(3600),
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes,
        index_max_bytes: 8 * 12,
        max_message_bytes: 1 << 20,
    }
}

/// A batch of `records` records whose values derive from `seed`.
pub fn batch(seed: u64, records: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new(timestamp);
    for r in 0..records.max(1) {
        let v: Vec<u8> = (0..value_len)
            .map(|i| (seed as usize).wrapping_mul(31).wrapping_add(r * 7 + i) as u8)
            .collect();
        b = b.record(&seed.to_be_bytes(), &v, r as i64);
    }
    b.build()
}

/// The batch as the log stores it: base offset written in.
pub fn stored(batch: &[u8], base: Offset) -> Vec<u8> {
    let mut b = batch.to_vec();
    b[..8].copy_from_slice(&base.to_be_bytes());
    b
}

/// Reads exactly the batch holding `offset` (max_bytes 1 still gives one).
pub fn read_one(log: &Log, offset: Offset) -> Vec<u8> {
    log.read(offset, 1).expect("read").records.to_vec()
}

/// Checks every stored batch reads back byte for byte from every offset it
/// holds, and that the log ends right after them.
pub fn check_all(log: &Log, expected: &[(Offset, Vec<u8>)]) {
    for (base, bytes) in expected {
        let records = i64::from(i32::from_be_bytes([
            bytes[23], bytes[24], bytes[25], bytes[26],
        ])) + 1;
        for o in *base..*base + records {
            assert_eq!(
                read_one(log, o),
                *bytes,
                "batch holding offset {o} (base {base})"
            );
        }
    }
    let end = expected
        .last()
        .map_or(log.log_start_offset(), |(b, bytes)| {
            b + i64::from(i32::from_be_bytes([
                bytes[23], bytes[24], bytes[25], bytes[26],
            ])) + 1
        });
    assert_eq!(log.log_end_offset(), end, "log end offset");
    assert!(log
        .read(end, 1 << 20)
        .expect("read at end")
        .records
        .is_empty());
}
