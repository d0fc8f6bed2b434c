//! strom's storage engine: every partition is an append-only log of
//! memory-mapped segment files addressed by dense 64-bit offsets.
//!
//! ```text
//!  Log (one per partition directory  <data>/<topic>-<partition>/)
//!   ├── Segment 00000000000000000000  .log  .index  .timeindex   (sealed)
//!   ├── Segment 00000000000000052133  .log  .index  .timeindex   (sealed)
//!   ├── Segment 00000000000000104321  .log  .index  .timeindex   (active: appends go here)
//!   ├── strom.checkpoint   recovery point + log start offset
//!   └── .clean_shutdown    present only between close() and the next open()
//!
//!  append(batch) ─► batch::validate ─► writev (base offsets patched in) ─► active .log
//!  read(offset)  ─► pick segment ─► index lookup ─► scan headers ─► Bytes view of the map
//!  Syncer::wait_durable(offset) ─► group commit: one fdatasync round serves every waiter
//!  open(dir)     ─► clean marker? load : scan from the recovery point, cut at first bad byte
//! ```
//!
//! This crate is synchronous and knows nothing of sockets or the Kafka
//! protocol beyond the v2 record batch header; the broker decides threads.
//!
//! Modules: [`batch`] (v2 header, validation, offline scanner), `segment`
//! (one `.log` + its indexes), `index` / `time_index` (mmapped sparse
//! indexes), `log` ([`Log`]: append, roll, read, truncate, flush, close),
//! `recovery` (open, clean marker, crash scan), `retention`, `checkpoint`
//! (recovery point + log start, crash-safe writes), `sync` ([`Syncer`]:
//! group commit), `mmap` (the only `unsafe`), [`testing`] (batch builder
//! for tests and benches).
//!
//! Rules for callers:
//! - `Log` is `Send + Sync` and needs `&mut` to write; keep it behind a
//!   lock. Take a [`Syncer`] once with [`Log::syncer`] and call
//!   [`Syncer::wait_durable`] *without* holding that lock.
//! - One `Log` per directory at a time (the broker locks the data dir).
//! - `Bytes` from [`Log::read`] stay valid forever (they keep the map
//!   alive), also across retention and `truncate_to`.
//! - `Io` from `append` means nothing was appended and the log is usable
//!   (e.g. disk full); `Offline` means a flush failed: appends and waits
//!   fail until the log is reopened (KAFKA_STORAGE_ERROR).
#![deny(unsafe_code)]

pub mod batch;
mod checkpoint;
mod index;
mod log;
mod mmap;
mod recovery;
mod retention;
mod segment;
mod sync;
pub mod testing;
mod time_index;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

pub use crate::log::Log;
pub use crate::sync::Syncer;

/// A position in a partition's log.
pub type Offset = i64;

/// Errors of the storage layer. The broker maps them to Kafka error codes in
/// one place (`CorruptBatch` -> CORRUPT_MESSAGE, `BatchTooLarge` ->
/// MESSAGE_TOO_LARGE, `InvalidBatch` -> INVALID_RECORD / CORRUPT_MESSAGE,
/// `OffsetOutOfRange` -> OFFSET_OUT_OF_RANGE, `Io`/`Offline` ->
/// KAFKA_STORAGE_ERROR).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The batch's CRC-32C does not match its bytes.
    #[error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CorruptBatch { expected: u32, actual: u32 },
    /// The batch is malformed (bad magic, inconsistent lengths, counts, ...).
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// Semantically invalid batch (control batch from a client, producer id
    /// without a sequence, ...): Kafka's INVALID_RECORD.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The batch is larger than `max.message.bytes`.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// A read below the log start or above the log end.
    #[error("offset {offset} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: Offset,
        log_start: Offset,
        log_end: Offset,
    },
    /// An I/O error, with what was being done and where.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The partition failed an earlier write or flush and refuses appends
    /// until it is reopened.
    #[error("partition {path} is offline after an earlier I/O error")]
    Offline { path: PathBuf },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// How a log's data reaches the disk. What each mode guarantees:
///
/// | mode       | acks=-1 answered after      | lost by kill -9 | lost by power loss                |
/// |------------|-----------------------------|-----------------|-----------------------------------|
/// | `AcksAll`  | fdatasync (group commit)    | nothing         | nothing acknowledged under acks=-1 |
/// | `Interval` | append (page cache)         | nothing         | up to `flush.interval.ms`          |
/// | `Never`    | append (page cache)         | nothing         | whatever the OS had not written    |
///
/// The broker applies the mode; the storage layer only offers `flush` and
/// [`Syncer::wait_durable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushMode {
    #[default]
    AcksAll,
    Interval,
    Never,
}

/// Per-log settings (Kafka topic configs).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll the active segment once it holds this many bytes (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll the active segment once it is this old (`segment.ms`).
    pub segment_ms: Duration,
    /// Delete sealed segments whose newest record is older (`retention.ms`; None = forever).
    pub retention_ms: Option<Duration>,
    /// Delete oldest sealed segments while the log is larger (`retention.bytes`; None = unlimited).
    pub retention_bytes: Option<u64>,
    /// Bytes between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Size of each preallocated index file (`segment.index.bytes`).
    pub index_max_bytes: u32,
    /// Largest batch accepted (`max.message.bytes`).
    pub max_message_bytes: u32,
}

impl LogConfig {
    /// Index entries a segment of `segment_size` bytes can get: one per
    /// `index_interval_bytes`, plus the first and the closing time entry.
    /// Each index file of the active segment is preallocated for this many
    /// entries of its own size, at most `index_max_bytes` (the blocks are
    /// allocated for real, since writes through the maps must not meet a
    /// full disk): 2 + 3 MiB with the defaults instead of 2 x 10 MiB. Should
    /// an index fill up anyway (segment.bytes raised later), the segment
    /// rolls.
    pub fn index_entries(&self, segment_size: u64) -> u64 {
        segment_size
            .checked_div(u64::from(self.index_interval_bytes))
            .map_or(u64::MAX, |n| n.saturating_add(3))
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: Duration::from_secs(7 * 24 * 3600),
            retention_ms: Some(Duration::from_secs(7 * 24 * 3600)),
            retention_bytes: None,
            index_interval_bytes: 4096,
            index_max_bytes: 10 * 1024 * 1024,
            max_message_bytes: 1_048_588,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record.
    pub base_offset: Offset,
    /// Offset given to the last record.
    pub last_offset: Offset,
    /// Largest record timestamp in the appended batches.
    pub max_timestamp: i64,
    /// Log end offset after the append (last_offset + 1).
    pub log_end_offset: Offset,
}

/// Batches read from one segment: whole batches, the first one containing
/// the requested offset, zero-copy views of the segment map.
#[derive(Debug, Clone)]
pub struct ReadData {
    pub records: Bytes,
    pub log_start_offset: Offset,
    pub log_end_offset: Offset,
}

pub(crate) fn io_error(
    op: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { op, path, source }
}
