//! The Kafka v2 record batch header: parse it, validate batches on the produce
//! path, and scan a byte slice of stored batches (pure: no I/O).
//!
//! ```text
//!  offset size field                   covered by CRC-32C
//!   0      8   baseOffset   i64        no  (assigned by the broker, in place)
//!   8      4   batchLength  i32        no  (= total size - 12)
//!  12      4   partitionLeaderEpoch i32 no
//!  16      1   magic        i8 = 2     no
//!  17      4   crc          u32        no  (CRC-32C of bytes 21..end)
//!  21      2   attributes   i16        yes (bits 0-2 codec, 3 log-append-time,
//!                                           4 transactional, 5 control)
//!  23      4   lastOffsetDelta i32     yes
//!  27      8   baseTimestamp i64       yes
//!  35      8   maxTimestamp  i64       yes
//!  43      8   producerId    i64       yes
//!  51      2   producerEpoch i16       yes
//!  53      4   baseSequence  i32       yes
//!  57      4   recordsCount  i32       yes
//!  61      -   records...              yes
//! ```
//! All integers are big-endian.

use crate::{Result, StorageError};

/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format strom stores.
pub const MAGIC: i8 = 2;
/// First byte covered by the CRC-32C.
pub const CRC_START: usize = 21;
/// Smallest legal `batchLength` (a header with no records).
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// The codec named by attribute bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codec ids 5-7 are not assigned; `validate` refuses them.
    Unknown(u8),
}

/// The 61-byte v2 batch header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`. Checks only what the header
    /// alone can show: at least 61 bytes, magic 2, `batchLength` >= 49.
    /// The CRC and the length against the buffer are `validate`'s job.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return Err(StorageError::InvalidBatch(format!(
                "expected a {HEADER_LEN}-byte batch header, found {} bytes",
                buf.len()
            )));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_u32(buf, 17),
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if h.magic != MAGIC {
            return Err(StorageError::InvalidBatch(format!(
                "expected magic {MAGIC}, found {}",
                h.magic
            )));
        }
        if h.batch_length < MIN_BATCH_LENGTH {
            return Err(StorageError::InvalidBatch(format!(
                "expected batchLength >= {MIN_BATCH_LENGTH}, found {}",
                h.batch_length
            )));
        }
        Ok(h)
    }

    pub fn compression(&self) -> Compression {
        match (self.attributes & ATTR_COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn has_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Records in the batch (`recordsCount`).
    pub fn record_count(&self) -> i32 {
        self.records_count
    }

    /// Bytes the whole batch occupies: `batchLength + 12`.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
}

/// CRC-32C of a whole batch's CRC-covered bytes (21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c(&batch[CRC_START..])
}

/// CRC-32C (Castagnoli, "CRC-32/ISCSI"), the checksum of Kafka's record
/// batch. crc-fast folds with VPCLMULQDQ where the CPU has it and falls back
/// to the SSE4.2 `crc32` instruction or a table; the result is the same.
pub fn crc32c(bytes: &[u8]) -> u32 {
    // The algorithm's width is 32 bits: the u64 always fits.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// The produce-path checks of DESIGN.md section 4 for one or more batches
/// back to back in `bytes`: magic 2, lengths that tile the buffer exactly,
/// CRC-32C, `recordsCount == lastOffsetDelta + 1 > 0`, size <=
/// `max_message_bytes`, no control batch, `producerId >= 0` only with
/// `baseSequence >= 0`. Returns every header, in order.
pub fn validate(bytes: &[u8], max_message_bytes: usize) -> Result<Vec<BatchHeader>> {
    if bytes.is_empty() {
        return Err(StorageError::InvalidBatch(
            "expected at least one record batch, found 0 bytes".into(),
        ));
    }
    let mut headers = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let h = BatchHeader::parse(rest)?;
        let size = h.total_size();
        if size > rest.len() {
            return Err(StorageError::InvalidBatch(format!(
                "batch at byte {pos} says {size} bytes, buffer has {} left",
                rest.len()
            )));
        }
        if size > max_message_bytes {
            return Err(StorageError::BatchTooLarge {
                size,
                max: max_message_bytes,
            });
        }
        let actual = compute_crc(&rest[..size]);
        if actual != h.crc {
            return Err(StorageError::CorruptBatch {
                expected: h.crc,
                actual,
            });
        }
        if let Compression::Unknown(c) = h.compression() {
            return Err(StorageError::InvalidBatch(format!(
                "expected compression codec 0-4, found {c}"
            )));
        }
        if h.records_count <= 0 || i64::from(h.records_count) != i64::from(h.last_offset_delta) + 1
        {
            return Err(StorageError::InvalidBatch(format!(
                "expected recordsCount == lastOffsetDelta + 1 > 0, found recordsCount {} and lastOffsetDelta {}",
                h.records_count, h.last_offset_delta
            )));
        }
        if h.is_control() {
            return Err(StorageError::InvalidRecord(
                "control batches may only be written by the broker".into(),
            ));
        }
        if h.producer_id >= 0 && h.base_sequence < 0 {
            return Err(StorageError::InvalidRecord(format!(
                "producer id {} requires a base sequence >= 0, found {}",
                h.producer_id, h.base_sequence
            )));
        }
        headers.push(h);
        pos += size;
    }
    Ok(headers)
}

/// One batch found by [`BatchIter`]: where it starts in the slice, and its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    pub position: usize,
    pub header: BatchHeader,
}

/// Why a scan stopped before the end of its slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Fewer than 61 bytes left: a torn header.
    TruncatedHeader {
        available: usize,
    },
    /// The header says more bytes than are left: a torn batch.
    TruncatedBatch {
        needed: usize,
        available: usize,
    },
    /// `batchLength` below the 49-byte minimum (zeros, garbage).
    BadLength {
        batch_length: i32,
    },
    BadMagic {
        magic: i8,
    },
    CrcMismatch {
        expected: u32,
        actual: u32,
    },
    /// `recordsCount`/`lastOffsetDelta` disagree (only checked with CRC on).
    BadCount {
        records_count: i32,
        last_offset_delta: i32,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::TruncatedHeader { available } => {
                write!(f, "torn header: expected 61 bytes, found {available}")
            }
            StopReason::TruncatedBatch { needed, available } => {
                write!(f, "torn batch: expected {needed} bytes, found {available}")
            }
            StopReason::BadLength { batch_length } => {
                write!(f, "expected batchLength >= 49, found {batch_length}")
            }
            StopReason::BadMagic { magic } => write!(f, "expected magic 2, found {magic}"),
            StopReason::CrcMismatch { expected, actual } => {
                write!(
                    f,
                    "CRC-32C mismatch: header {expected:#010x}, bytes {actual:#010x}"
                )
            }
            StopReason::BadCount {
                records_count,
                last_offset_delta,
            } => write!(
                f,
                "recordsCount {records_count} != lastOffsetDelta {last_offset_delta} + 1"
            ),
        }
    }
}

/// Where and why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    pub position: usize,
    pub reason: StopReason,
}

/// Walks stored batches in a byte slice, yielding each header and position,
/// and stops at the first byte that is not a whole, sound batch; `stop()`
/// then says where and why (None when the slice ended exactly on a batch
/// boundary). With `verify_crc` every batch's CRC-32C is checked too.
/// Pure: usable offline by `strom log verify` / `log dump`.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    verify_crc: bool,
    stop: Option<ScanStop>,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8], verify_crc: bool) -> Self {
        Self {
            buf,
            pos: 0,
            verify_crc,
            stop: None,
        }
    }

    /// Starts at `position` (must be a batch boundary to find anything).
    pub fn starting_at(buf: &'a [u8], position: usize, verify_crc: bool) -> Self {
        Self {
            buf,
            pos: position.min(buf.len()),
            verify_crc,
            stop: None,
        }
    }

    /// Position of the next batch to read (the end of the last good one).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Why the scan stopped early, once `next` has returned None.
    pub fn stop(&self) -> Option<&ScanStop> {
        self.stop.as_ref()
    }

    fn halt(&mut self, reason: StopReason) -> Option<ScannedBatch> {
        self.stop = Some(ScanStop {
            position: self.pos,
            reason,
        });
        None
    }
}

impl Iterator for BatchIter<'_> {
    type Item = ScannedBatch;

    fn next(&mut self) -> Option<ScannedBatch> {
        if self.stop.is_some() || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        if rest.len() < HEADER_LEN {
            return self.halt(StopReason::TruncatedHeader {
                available: rest.len(),
            });
        }
        let batch_length = be_i32(rest, 8);
        if batch_length < MIN_BATCH_LENGTH {
            return self.halt(StopReason::BadLength { batch_length });
        }
        let magic = rest[16] as i8;
        if magic != MAGIC {
            return self.halt(StopReason::BadMagic { magic });
        }
        let size = batch_length as usize + LOG_OVERHEAD;
        if size > rest.len() {
            return self.halt(StopReason::TruncatedBatch {
                needed: size,
                available: rest.len(),
            });
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(_) => return self.halt(StopReason::BadLength { batch_length }),
        };
        if self.verify_crc {
            let actual = compute_crc(&rest[..size]);
            if actual != header.crc {
                return self.halt(StopReason::CrcMismatch {
                    expected: header.crc,
                    actual,
                });
            }
            if header.records_count <= 0
                || i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1
            {
                return self.halt(StopReason::BadCount {
                    records_count: header.records_count,
                    last_offset_delta: header.last_offset_delta,
                });
            }
        }
        let item = ScannedBatch {
            position: self.pos,
            header,
        };
        self.pos += size;
        Some(item)
    }
}

/// Reads just what the log needs to walk batches: (base offset, total size,
/// last offset delta, max timestamp), or None if fewer than 61 bytes.
pub(crate) fn peek(buf: &[u8]) -> Option<(i64, usize, i32, i64)> {
    if buf.len() < HEADER_LEN {
        return None;
    }
    let len = be_i32(buf, 8);
    if len < MIN_BATCH_LENGTH {
        return None;
    }
    Some((
        be_i64(buf, 0),
        len as usize + LOG_OVERHEAD,
        be_i32(buf, 23),
        be_i64(buf, 35),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::BatchBuilder;

    #[test]
    fn crc32c_check_value() {
        // The catalogue's check value for CRC-32/ISCSI.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    proptest::proptest! {
        // Every length and starting alignment, so the SIMD path's head,
        // folding loop and tail all meet the reference implementation.
        #[test]
        fn crc32c_matches_the_reference(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
            skip in 0usize..64,
        ) {
            let s = &bytes[skip.min(bytes.len())..];
            proptest::prop_assert_eq!(crc32c(s), ::crc32c::crc32c(s));
        }
    }

    #[test]
    fn parses_what_the_builder_wrote() {
        let b = BatchBuilder::new(1000)
            .producer(7, 1, 5)
            .record(b"k", b"hello", 0)
            .record(b"", b"world", 3)
            .build();
        let h = validate(&b, 1 << 20).unwrap()[0];
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1003);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.base_sequence, 5);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.compression(), Compression::None);
    }

    #[test]
    fn validate_rejects_each_bad_header_with_its_error() {
        let good = BatchBuilder::new(0).record(b"", b"v", 0).build();
        type Case = (&'static str, Box<dyn Fn(&mut Vec<u8>)>, &'static str);
        let cases: Vec<Case> = vec![
            (
                "flipped record byte",
                Box::new(|b| {
                    let n = b.len();
                    b[n - 1] ^= 1
                }),
                "CorruptBatch",
            ),
            ("bad magic", Box::new(|b| b[16] = 1), "InvalidBatch"),
            (
                "length too long",
                Box::new(|b| b[11] = b[11].wrapping_add(1)),
                "InvalidBatch",
            ),
            (
                "trailing bytes",
                Box::new(|b| b.extend_from_slice(&[0; 3])),
                "InvalidBatch",
            ),
            (
                "control from client",
                Box::new(|b| {
                    b[22] |= 0x20;
                    fix_crc(b)
                }),
                "InvalidRecord",
            ),
            (
                "producer id without sequence",
                Box::new(|b| {
                    b[43..51].copy_from_slice(&5i64.to_be_bytes());
                    b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
                    fix_crc(b)
                }),
                "InvalidRecord",
            ),
            (
                "count mismatch",
                Box::new(|b| {
                    b[60] = 9;
                    fix_crc(b)
                }),
                "InvalidBatch",
            ),
            (
                "codec 6",
                Box::new(|b| {
                    b[22] |= 6;
                    fix_crc(b)
                }),
                "InvalidBatch",
            ),
        ];
        for (name, corrupt, want) in cases {
            let mut b = good.clone();
            corrupt(&mut b);
            let got = format!("{:?}", validate(&b, 1 << 20));
            assert!(
                got.contains(want),
                "case {name}: expected {want}, got {got}"
            );
        }
        let err = validate(&good, 10).unwrap_err();
        assert!(matches!(err, StorageError::BatchTooLarge { .. }), "{err:?}");
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = compute_crc(b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn iter_stops_at_torn_tail_with_reason() {
        let mut buf = BatchBuilder::new(0).record(b"", b"one", 0).build();
        let second = BatchBuilder::new(0).record(b"", b"two", 0).build();
        let first_len = buf.len();
        buf.extend_from_slice(&second[..second.len() - 1]);
        let mut it = BatchIter::new(&buf, true);
        assert_eq!(it.next().map(|b| b.position), Some(0));
        assert!(it.next().is_none());
        let stop = it.stop().unwrap();
        assert_eq!(stop.position, first_len);
        assert!(matches!(stop.reason, StopReason::TruncatedBatch { .. }));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Arbitrary bytes, and valid batches with one byte changed, never
        /// panic the validator or the scanner, and the scanner agrees with
        /// the validator on where the sound prefix ends.
        #[test]
        fn garbage_never_panics_and_scanner_stops_at_the_damage(
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let _ = validate(&junk, 1 << 20);
            let _ = BatchIter::new(&junk, true).count();
            let one = BatchBuilder::new(5).record(b"k", &junk, 0).build();
            let mut two = one.clone();
            two.extend_from_slice(&one);
            let i = at.index(two.len());
            two[i] ^= flip;
            let mut it = BatchIter::new(&two, true);
            let found = it.by_ref().count();
            // Bytes 0..8 (base offset) and 12..17 (epoch, magic) are not
            // CRC-covered; every other change stops the scan at its batch.
            let in_batch = i % one.len();
            let covered = !(in_batch < 8 || (12..16).contains(&in_batch));
            if covered {
                proptest::prop_assert_eq!(found, i / one.len(), "flip at {}", i);
                proptest::prop_assert!(it.stop().is_some());
                proptest::prop_assert!(validate(&two, 1 << 20).is_err());
            }
        }
    }
}
