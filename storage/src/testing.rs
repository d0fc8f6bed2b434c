//! Builds valid v2 record batches (records encoded, CRC-32C set) for tests
//! and benchmarks of this crate and of the broker. Not for production paths.
//!
//! ```text
//!  record (inside a batch, all varints zigzag):
//!   length varint | attributes i8 | timestampDelta varlong | offsetDelta varint
//!   keyLength varint | key | valueLength varint | value | headerCount varint (0)
//! ```

use crate::batch::{compute_crc, HEADER_LEN};

/// A v2 batch under construction. `build` lays out the header of
/// [`crate::batch`] with baseOffset 0 (the log assigns it).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    base_offset: i64,
    base_timestamp: i64,
    attributes: i16,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<(Vec<u8>, Vec<u8>, i64)>,
}

impl BatchBuilder {
    /// An empty batch whose records' timestamps count from `base_timestamp`.
    pub fn new(base_timestamp: i64) -> Self {
        Self {
            base_offset: 0,
            base_timestamp,
            attributes: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records: Vec::new(),
        }
    }

    pub fn base_offset(mut self, base_offset: i64) -> Self {
        self.base_offset = base_offset;
        self
    }

    pub fn attributes(mut self, attributes: i16) -> Self {
        self.attributes = attributes;
        self
    }

    /// Marks the batch idempotent: producer id, epoch and first sequence.
    pub fn producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = id;
        self.producer_epoch = epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Adds a record at `base_timestamp + timestamp_delta`.
    pub fn record(mut self, key: &[u8], value: &[u8], timestamp_delta: i64) -> Self {
        self.records
            .push((key.to_vec(), value.to_vec(), timestamp_delta));
        self
    }

    /// The encoded batch, CRC-32C set.
    pub fn build(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, (key, value, ts_delta)) in self.records.iter().enumerate() {
            let mut rec = Vec::with_capacity(key.len() + value.len() + 16);
            rec.push(0u8);
            put_varlong(&mut rec, *ts_delta);
            put_varlong(&mut rec, i as i64);
            if key.is_empty() {
                put_varlong(&mut rec, -1);
            } else {
                put_varlong(&mut rec, key.len() as i64);
                rec.extend_from_slice(key);
            }
            put_varlong(&mut rec, value.len() as i64);
            rec.extend_from_slice(value);
            put_varlong(&mut rec, 0);
            put_varlong(&mut body, rec.len() as i64);
            body.extend_from_slice(&rec);
        }
        let n = self.records.len() as i32;
        let max_delta = self.records.iter().map(|r| r.2).max().unwrap_or(0);
        let mut b = Vec::with_capacity(HEADER_LEN + body.len());
        b.extend_from_slice(&self.base_offset.to_be_bytes());
        b.extend_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
        b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        b.push(2); // magic
        b.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
        b.extend_from_slice(&self.attributes.to_be_bytes());
        b.extend_from_slice(&(n - 1).to_be_bytes());
        b.extend_from_slice(&self.base_timestamp.to_be_bytes());
        b.extend_from_slice(&(self.base_timestamp + max_delta).to_be_bytes());
        b.extend_from_slice(&self.producer_id.to_be_bytes());
        b.extend_from_slice(&self.producer_epoch.to_be_bytes());
        b.extend_from_slice(&self.base_sequence.to_be_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(&body);
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

/// A batch of `records` records of `value_len` bytes each (no key), all at
/// `timestamp`: the shape benchmarks and load tests want.
pub fn batch_of(records: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    let value = vec![0x5au8; value_len];
    let mut b = BatchBuilder::new(timestamp);
    for _ in 0..records.max(1) {
        b = b.record(&[], &value, 0);
    }
    b.build()
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}
