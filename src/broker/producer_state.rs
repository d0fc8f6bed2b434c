//! Idempotent-producer state of one partition: per producer id, its epoch
//! and the sequence ranges of its last 5 batches, checked before every
//! append; rebuilt on open from a snapshot plus the log tail after it.
//!
//! The rules (DESIGN.md section 8), for a batch with producerId >= 0:
//!
//! | state for the producer id        | batch                                   | verdict                       |
//! |----------------------------------|-----------------------------------------|-------------------------------|
//! | none                             | any sequence                            | append                        |
//! | epoch E, last 5 batches          | epoch E, same first and last sequence   | duplicate: original offsets   |
//! |                                  | as one of the 5                         |                               |
//! | epoch E                          | epoch < E                               | 47 INVALID_PRODUCER_EPOCH     |
//! | epoch E                          | epoch > E, first sequence 0             | append (new epoch)            |
//! | epoch E                          | epoch > E, first sequence != 0          | 45 OUT_OF_ORDER_SEQUENCE      |
//! | epoch E, last sequence L         | epoch E, first sequence L + 1           | append                        |
//! |                                  | (0 after i32::MAX)                      |                               |
//! | epoch E, last sequence L         | epoch E, anything else                  | 45 OUT_OF_ORDER_SEQUENCE      |
//!
//! Idle producers (no append for [`PRODUCER_ID_EXPIRATION_MS`], Kafka's
//! `producer.id.expiration.ms` default) are forgotten; the clock is the
//! broker's wall clock at append time, not the batch timestamps, so a
//! producer that replays old data is not expired at once.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use strom_storage::batch::{BatchHeader, BatchIter};
use strom_storage::{Log, Offset, StorageError};

/// How many batches per producer are remembered for deduplication
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
pub const MAX_TRACKED_BATCHES: usize = 5;

/// Kafka's `producer.id.expiration.ms` default: one day.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 3600 * 1000;

/// Name of the snapshot file in the partition directory.
pub const SNAPSHOT_FILE: &str = "producers.snapshot";

/// Without a usable snapshot, open scans this many newest segments. A retry
/// can only concern a producer's last 5 batches, which are at the tail; a
/// producer whose batches are all older is treated as unknown (any sequence
/// accepted), which loses nothing a retry could need.
pub const SCAN_SEGMENTS_WITHOUT_SNAPSHOT: usize = 2;

/// Why a producer's batch is refused.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("producer {producer_id}: epoch {found} is older than the current epoch {current}")]
    StaleEpoch {
        producer_id: i64,
        current: i16,
        found: i16,
    },
    #[error("producer {producer_id} epoch {epoch}: expected sequence {expected}, found {found}")]
    OutOfOrder {
        producer_id: i64,
        epoch: i16,
        expected: i32,
        found: i32,
    },
    #[error("transactions are not supported: {0}")]
    Transactional(String),
}

/// One remembered batch: its sequence range and where it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: Offset,
    pub last_offset_delta: i32,
}

impl BatchMetadata {
    pub fn last_offset(&self) -> Offset {
        self.base_offset + i64::from(self.last_offset_delta)
    }
}

/// What is known about one producer id on this partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first; at most [`MAX_TRACKED_BATCHES`].
    pub batches: VecDeque<BatchMetadata>,
    /// Broker wall clock (ms) of the last append, for expiry.
    pub last_seen_ms: i64,
}

/// What to do with a batch that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// An exact retry of a stored batch: answer with its offsets, store nothing.
    Duplicate(BatchMetadata),
}

/// `seq + delta`, wrapping from i32::MAX to 0 as Kafka's sequences do.
pub fn add_sequence(seq: i32, delta: i32) -> i32 {
    ((i64::from(seq) + i64::from(delta)) % (i64::from(i32::MAX) + 1)) as i32
}

/// The producer state table of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a batch (producerId >= 0) against the table without changing it.
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, ProducerError> {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        let first = h.base_sequence;
        let last = add_sequence(first, h.last_offset_delta);
        if h.producer_epoch == entry.epoch {
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == first && b.last_seq == last)
            {
                return Ok(Verdict::Duplicate(*dup));
            }
        }
        if h.producer_epoch < entry.epoch {
            return Err(ProducerError::StaleEpoch {
                producer_id: h.producer_id,
                current: entry.epoch,
                found: h.producer_epoch,
            });
        }
        let expected = match entry.batches.back() {
            _ if h.producer_epoch > entry.epoch => 0,
            Some(b) => add_sequence(b.last_seq, 1),
            // An entry always holds at least one batch; accept as unknown.
            None => first,
        };
        if first != expected {
            return Err(ProducerError::OutOfOrder {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                expected,
                found: first,
            });
        }
        Ok(Verdict::Append)
    }

    /// Records a batch stored at `base_offset` (its header's own base offset
    /// is ignored: on the produce path it is not assigned yet).
    pub fn record(&mut self, h: &BatchHeader, base_offset: Offset, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::with_capacity(MAX_TRACKED_BATCHES),
                last_seen_ms: now_ms,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == MAX_TRACKED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: add_sequence(h.base_sequence, h.last_offset_delta),
            base_offset,
            last_offset_delta: h.last_offset_delta,
        });
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
    }

    /// Forgets producers idle for `max_idle_ms` or longer; returns how many.
    pub fn expire(&mut self, now_ms: i64, max_idle_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_seen_ms) < max_idle_ms);
        before - self.producers.len()
    }

    /// Applies every producer batch of the log from `from` to its end.
    fn replay(&mut self, log: &Log, from: Offset, now_ms: i64) -> Result<(), StorageError> {
        const CHUNK: usize = 8 << 20;
        let end = log.log_end_offset();
        let mut offset = from.max(log.log_start_offset());
        while offset < end {
            let data = log.read(offset, CHUNK)?.records;
            let before = offset;
            for scanned in BatchIter::new(&data, false) {
                let h = scanned.header;
                if h.base_offset < offset {
                    continue;
                }
                if h.producer_id >= 0 && !h.is_control() {
                    self.record(&h, h.base_offset, now_ms);
                }
                offset = h.next_offset();
            }
            if offset == before {
                break; // nothing readable here (torn tail already cut by recovery)
            }
        }
        Ok(())
    }

    /// The table for a freshly opened `log`: the snapshot in `dir` if it is
    /// sound and not ahead of the log, plus the batches after it; without
    /// one, the last [`SCAN_SEGMENTS_WITHOUT_SNAPSHOT`] segments. Returns the
    /// table and the offset the scan started at.
    pub fn load(
        dir: &Path,
        log: &Log,
        now_ms: i64,
    ) -> Result<(ProducerStates, Offset), StorageError> {
        let path = dir.join(SNAPSHOT_FILE);
        let snapshot = match std::fs::read(&path) {
            Ok(bytes) => match decode_snapshot(&bytes, now_ms) {
                Ok((states, covers)) if covers <= log.log_end_offset() => Some((states, covers)),
                Ok((_, covers)) => {
                    tracing::warn!(path = %path.display(), covers, log_end = log.log_end_offset(),
                        "producer snapshot is ahead of the recovered log; rebuilding from the log");
                    None
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "ignoring damaged producer snapshot");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StorageError::Io {
                    op: "read",
                    path,
                    source: e,
                })
            }
        };
        let (mut states, from) = match snapshot {
            Some(s) => s,
            None => {
                let bases = log.segment_bases();
                let from = bases
                    .len()
                    .checked_sub(SCAN_SEGMENTS_WITHOUT_SNAPSHOT)
                    .map_or(0, |i| bases[i]);
                (ProducerStates::default(), from)
            }
        };
        states.replay(log, from, now_ms)?;
        Ok((states, from))
    }
}

// ---------------------------------------------------------------- snapshot

/// ```text
/// producers.snapshot (big-endian)
///  0  4  magic "SPS1"
///  4  4  crc   u32    CRC-32 (crc32fast) of bytes 8..end
///  8  8  covers i64   the table reflects every batch below this offset
/// 16  4  count u32    producers
/// 20  -  count x producer:
///          0  8  producer id   i64
///          8  2  epoch         i16
///         10  8  last seen ms  i64
///         18  1  batches n     u8 (1..=5)
///         19  -  n x batch (oldest first):
///                  0 4 first seq i32 | 4 4 last seq i32
///                  8 8 base offset i64 | 16 4 last offset delta i32
/// ```
const SNAPSHOT_MAGIC: &[u8; 4] = b"SPS1";

pub fn encode_snapshot(states: &ProducerStates, covers: Offset) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + states.len() * (19 + 20 * MAX_TRACKED_BATCHES));
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&covers.to_be_bytes());
    out.extend_from_slice(&(states.producers.len() as u32).to_be_bytes());
    let mut ids: Vec<_> = states.producers.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let e = &states.producers[&id];
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.last_seen_ms.to_be_bytes());
        out.push(e.batches.len() as u8);
        for b in &e.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
            out.extend_from_slice(&b.last_offset_delta.to_be_bytes());
        }
    }
    let crc = crc32fast::hash(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_be_bytes());
    out
}

/// A bounds-checked big-endian reader over the snapshot bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let bytes = self.buf.get(self.pos..end).ok_or_else(|| {
            format!(
                "expected {N} more bytes at byte {}, file has {}",
                self.pos,
                self.buf.len()
            )
        })?;
        self.pos = end;
        let mut a = [0u8; N];
        a.copy_from_slice(bytes);
        Ok(a)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take::<2>().map(i16::from_be_bytes)
    }
}

/// Decodes a snapshot; producers idle since before `now_ms - expiry` are
/// dropped on the way in.
pub fn decode_snapshot(bytes: &[u8], now_ms: i64) -> Result<(ProducerStates, Offset), String> {
    if bytes.len() < 20 || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err(format!(
            "expected magic {SNAPSHOT_MAGIC:?} and at least 20 bytes, found {} bytes",
            bytes.len()
        ));
    }
    let stored = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let actual = crc32fast::hash(&bytes[8..]);
    if stored != actual {
        return Err(format!(
            "CRC mismatch: header {stored:#010x}, bytes {actual:#010x}"
        ));
    }
    let mut r = Reader { buf: bytes, pos: 8 };
    let covers = r.i64()?;
    let count = u32::from_be_bytes(r.take::<4>()?);
    let mut states = ProducerStates::default();
    for _ in 0..count {
        let id = r.i64()?;
        let epoch = r.i16()?;
        let last_seen_ms = r.i64()?;
        let n = r.take::<1>()?[0] as usize;
        if n == 0 || n > MAX_TRACKED_BATCHES {
            return Err(format!(
                "producer {id}: expected 1-{MAX_TRACKED_BATCHES} batches, found {n}"
            ));
        }
        let mut batches = VecDeque::with_capacity(MAX_TRACKED_BATCHES);
        for _ in 0..n {
            batches.push_back(BatchMetadata {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                base_offset: r.i64()?,
                last_offset_delta: r.i32()?,
            });
        }
        states.producers.insert(
            id,
            ProducerEntry {
                epoch,
                batches,
                last_seen_ms,
            },
        );
    }
    if r.pos != bytes.len() {
        return Err(format!(
            "{} trailing bytes after {count} producers",
            bytes.len() - r.pos
        ));
    }
    states.expire(now_ms, PRODUCER_ID_EXPIRATION_MS);
    Ok((states, covers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_storage::testing::BatchBuilder;

    fn header(pid: i64, epoch: i16, seq: i32, records: usize) -> BatchHeader {
        let mut b = BatchBuilder::new(0).producer(pid, epoch, seq);
        for _ in 0..records {
            b = b.record(b"", b"v", 0);
        }
        BatchHeader::parse(&b.build()).unwrap()
    }

    #[test]
    fn sequence_rules_give_each_verdict() {
        let mut t = ProducerStates::default();
        t.record(&header(1, 3, 10, 5), 100, 0); // seqs 10..=14 at 100..=104
        t.record(&header(1, 3, 15, 1), 105, 0); // seq 15 at 105
        type Case = (&'static str, BatchHeader, &'static str);
        let cases: Vec<Case> = vec![
            ("next in order", header(1, 3, 16, 2), "Ok(Append)"),
            (
                "exact retry of the first",
                header(1, 3, 10, 5),
                "Duplicate(BatchMetadata { first_seq: 10, last_seq: 14, base_offset: 100",
            ),
            (
                "exact retry of the last",
                header(1, 3, 15, 1),
                "base_offset: 105",
            ),
            ("retry with other length", header(1, 3, 10, 2), "OutOfOrder"),
            ("gap", header(1, 3, 17, 1), "expected: 16, found: 17"),
            ("stale epoch", header(1, 2, 16, 1), "StaleEpoch"),
            ("new epoch from 0", header(1, 4, 0, 1), "Ok(Append)"),
            (
                "new epoch not from 0",
                header(1, 4, 16, 1),
                "expected: 0, found: 16",
            ),
            (
                "unknown producer, any sequence",
                header(2, 0, 777, 1),
                "Ok(Append)",
            ),
        ];
        for (name, h, want) in cases {
            let got = format!("{:?}", t.check(&h));
            assert!(
                got.contains(want),
                "case {name}: expected {want}, got {got}"
            );
        }
    }

    #[test]
    fn only_the_last_five_batches_are_duplicates() {
        let mut t = ProducerStates::default();
        for i in 0..7 {
            t.record(&header(9, 0, i, 1), i64::from(i), 0);
        }
        assert!(matches!(
            t.check(&header(9, 0, 1, 1)),
            Err(ProducerError::OutOfOrder { .. })
        ));
        for i in 2..7 {
            assert_eq!(
                t.check(&header(9, 0, i, 1)).unwrap(),
                Verdict::Duplicate(BatchMetadata {
                    first_seq: i,
                    last_seq: i,
                    base_offset: i64::from(i),
                    last_offset_delta: 0
                }),
                "seq {i}"
            );
        }
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 3), 1);
        let mut t = ProducerStates::default();
        t.record(&header(1, 0, i32::MAX - 1, 2), 0, 0); // MAX-1, MAX
        assert_eq!(t.check(&header(1, 0, 0, 1)).unwrap(), Verdict::Append);
        assert!(t.check(&header(1, 0, i32::MAX, 1)).is_err());
    }

    #[test]
    fn new_epoch_forgets_old_batches() {
        let mut t = ProducerStates::default();
        t.record(&header(1, 0, 0, 1), 0, 0);
        t.record(&header(1, 1, 0, 1), 1, 0);
        let e = t.get(1).unwrap();
        assert_eq!((e.epoch, e.batches.len()), (1, 1));
        assert!(matches!(
            t.check(&header(1, 0, 0, 1)),
            Err(ProducerError::StaleEpoch { .. })
        ));
    }

    #[test]
    fn snapshot_round_trips_and_rejects_damage() {
        let mut t = ProducerStates::default();
        for i in 0..7 {
            t.record(
                &header(i64::from(i % 3), (i % 2) as i16, i, 2),
                i64::from(i) * 2,
                1000,
            );
        }
        let bytes = encode_snapshot(&t, 42);
        assert_eq!(decode_snapshot(&bytes, 1000).unwrap(), (t.clone(), 42));
        for cut in [0, 10, bytes.len() - 1] {
            assert!(
                decode_snapshot(&bytes[..cut], 1000).is_err(),
                "cut at {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[30] ^= 1;
        assert!(decode_snapshot(&flipped, 1000).unwrap_err().contains("CRC"));
    }

    #[test]
    fn idle_producers_expire() {
        let mut t = ProducerStates::default();
        t.record(&header(1, 0, 0, 1), 0, 1_000);
        t.record(&header(2, 0, 0, 1), 1, 5_000);
        assert_eq!(t.expire(6_000, 5_000), 1);
        assert!(t.get(1).is_none() && t.get(2).is_some());
        let bytes = encode_snapshot(&t, 2);
        let (loaded, _) = decode_snapshot(&bytes, 5_000 + PRODUCER_ID_EXPIRATION_MS).unwrap();
        assert!(loaded.is_empty());
    }
}
