//! `Log`: one partition's ordered segments, the append/read/truncate paths,
//! rolling, flushing and closing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, error, info};

use crate::batch;
use crate::checkpoint::{self, Checkpoint};
use crate::segment::{AppendCtx, Segment, WriteFailure};
use crate::sync::{Pending, SyncShared, Syncer};
use crate::{io_error, AppendInfo, LogConfig, Offset, ReadData, Result, StorageError};

/// One partition's log. `Send + Sync`; the broker keeps it behind a lock and
/// waits for durability through [`Log::syncer`] without holding that lock.
pub struct Log {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// Ordered by base offset; the last one is active. Never empty.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start: Offset,
    pub(crate) recovery_point: Offset,
    pub(crate) sync: Arc<SyncShared>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Log {
    /// Opens (creating if needed) the log in `dir`. After a clean `close`
    /// the segments are loaded as they are (indexes checked, tails walked);
    /// otherwise every segment from the one holding the recovery checkpoint
    /// on is scanned batch by batch (length, CRC-32C, dense offsets), cut at
    /// the first bad byte with every later segment deleted (logged with
    /// path, offset and cause), and its indexes rebuilt. A missing or
    /// inconsistent index is rebuilt from its log either way.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        crate::recovery::open(dir, config)
    }

    pub(crate) fn active(&self) -> &Segment {
        &self.segments[self.segments.len() - 1]
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    /// How far ahead the active segment's log is mapped.
    pub(crate) fn map_len(&self) -> u64 {
        self.config
            .segment_bytes
            .clamp(4096, u64::from(u32::MAX))
            .saturating_add(u64::from(self.config.max_message_bytes))
    }

    /// Validates every v2 batch in `batches` (one or more, back to back),
    /// assigns offsets in place and appends them. On any validation error
    /// nothing is appended. A failed write (e.g. disk full) returns `Io` and
    /// leaves the log as it was, so a later append may succeed; if even
    /// cutting off the partial write fails the log goes offline. After a
    /// failed flush every append returns `Offline`.
    pub fn append(&mut self, batches: &[u8]) -> Result<AppendInfo> {
        if self.sync.lock().offline {
            return Err(self.sync.offline_error());
        }
        let headers = batch::validate(batches, self.config.max_message_bytes as usize)?;
        let records: i64 = headers
            .iter()
            .map(|h| i64::from(h.last_offset_delta) + 1)
            .sum();
        let now = now_ms();
        self.roll_if_due(batches.len() as u64, records, now)?;
        let ctx = AppendCtx {
            index_interval: u64::from(self.config.index_interval_bytes),
            map_len: self.map_len(),
            segment_bytes: self.config.segment_bytes,
        };
        let seg = self.active_mut();
        let base_offset = seg.next_offset;
        if let Err(failure) = seg.append(batches, &headers, base_offset, &ctx) {
            let path = seg.log_path.clone();
            return Err(match failure {
                WriteFailure::RolledBack(e) => {
                    error!(path = %path.display(), cause = %e, "append failed; rolled back");
                    io_error("append to", &path)(e)
                }
                WriteFailure::Stuck(e) => {
                    error!(path = %path.display(), cause = %e, "append failed and could not be rolled back; taking the partition offline");
                    self.sync.set_offline();
                    io_error("append to", &path)(e)
                }
            });
        }
        if seg.first_append_ms.is_none() {
            seg.first_append_ms = Some(now);
        }
        let end = seg.next_offset;
        self.sync.lock().appended = end;
        Ok(AppendInfo {
            base_offset,
            last_offset: end - 1,
            max_timestamp: headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1),
            log_end_offset: end,
        })
    }

    /// Rolls before an append of `bytes` bytes and `records` records if the
    /// active segment cannot take it whole.
    fn roll_if_due(&mut self, bytes: u64, records: i64, now: i64) -> Result<()> {
        let seg = self.active();
        if seg.is_empty() {
            return Ok(());
        }
        let end = seg.size + bytes;
        let last_rel = seg.next_offset + records - 1 - seg.base;
        let aged = seg
            .first_append_ms
            .is_some_and(|t| now.saturating_sub(t) >= self.config.segment_ms.as_millis() as i64);
        let reason = if end > self.config.segment_bytes {
            Some("segment.bytes")
        } else if end > u64::from(u32::MAX) {
            Some("position would overflow u32")
        } else if last_rel > i64::from(u32::MAX) {
            Some("relative offset would overflow u32")
        } else if seg.index.file.free() < 1 || seg.time_index.file.free() < 2 {
            Some("index full")
        } else if aged {
            Some("segment.ms")
        } else {
            None
        };
        match reason {
            Some(r) => self.roll(r),
            None => Ok(()),
        }
    }

    /// Seals the active segment and starts a new one at the log end.
    fn roll(&mut self, reason: &'static str) -> Result<()> {
        let new_base = self.active().next_offset;
        let dir = self.dir.clone();
        // 1. The segment sealed by the previous roll is synced now (the
        //    kernel has usually written it back long since); this one's
        //    fdatasync is left to the next flush, outside the log's lock.
        self.sync.sync_pending()?;
        // 2. The new segment; if it cannot be made, the old one stays active.
        let mut new = match Segment::open(&dir, new_base, true) {
            Ok(s) => s,
            Err(e) => return Err(io_error("create segment", &dir)(e)),
        };
        if let Err(e) = new.activate(&self.config, self.map_len()) {
            let path = new.log_path.clone();
            if let Err(cleanup) = new.delete_files() {
                error!(path = %path.display(), cause = %cleanup, "removing a half-made segment failed");
            }
            return Err(io_error("preallocate segment", &path)(e));
        }
        checkpoint::sync_dir(&dir)?;
        // 3. Seal the old one (trim + fsync indexes).
        {
            let seg = self.active_mut();
            if let Err(e) = seg.seal() {
                let path = seg.log_path.clone();
                error!(path = %path.display(), cause = %e, "sealing segment failed; taking the partition offline");
                self.sync.set_offline();
                return Err(io_error("seal", &path)(e));
            }
        }
        debug!(dir = %dir.display(), base = new_base, reason, "rolled segment");
        {
            let sealed = self.active();
            let pending = Pending {
                base: sealed.base,
                file: Arc::clone(&sealed.file),
                path: sealed.log_path.clone(),
            };
            let mut st = self.sync.lock();
            st.pending.push(pending);
            st.file = Arc::clone(&new.file);
            st.path = new.log_path.clone();
        }
        self.segments.push(new);
        self.advance_recovery_point()
    }

    /// Moves the recovery point up to the oldest segment that may hold
    /// unsynced bytes and checkpoints it if it moved.
    fn advance_recovery_point(&mut self) -> Result<()> {
        let point = self.sync.oldest_pending().unwrap_or(self.active().base);
        if point > self.recovery_point {
            self.recovery_point = point;
            self.write_checkpoint()?;
        }
        Ok(())
    }

    pub(crate) fn write_checkpoint(&self) -> Result<()> {
        checkpoint::write(
            &self.dir,
            &Checkpoint {
                recovery_point: self.recovery_point,
                log_start: self.log_start,
            },
        )
    }

    /// Whole batches starting with the one that contains `offset`, from one
    /// segment, up to `max_bytes` but always at least one batch; empty at
    /// the log end; `OffsetOutOfRange` below the log start or past the end.
    /// The `Bytes` are views of the segment map (no copy).
    pub fn read(&self, offset: Offset, max_bytes: usize) -> Result<ReadData> {
        let (log_start, log_end) = (self.log_start, self.log_end_offset());
        if offset < log_start || offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        let mut records = bytes::Bytes::new();
        if offset < log_end {
            let i = self
                .segments
                .partition_point(|s| s.base <= offset)
                .saturating_sub(1);
            // A segment may end before the next one starts only if it is
            // empty; then the batch is in a later one.
            for seg in &self.segments[i..] {
                if offset < seg.next_offset {
                    if let Some(b) = seg.read(offset.max(seg.base), max_bytes) {
                        records = b;
                    }
                    break;
                }
            }
        }
        Ok(ReadData {
            records,
            log_start_offset: log_start,
            log_end_offset: log_end,
        })
    }

    /// The first batch at or above the log start whose max timestamp is >=
    /// `timestamp`, as (its base offset, or the log start if the batch
    /// straddles it; its max timestamp); None if no batch qualifies.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(Offset, i64)>> {
        for seg in &self.segments {
            if seg.next_offset > self.log_start.max(seg.base) && seg.max_timestamp >= timestamp {
                if let Some(found) = seg.find_timestamp(timestamp, self.log_start) {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp in the log, as (its base
    /// offset, that timestamp): ListOffsets' MAX_TIMESTAMP (KIP-734). The
    /// earliest such batch wins a tie. None when nothing is at or above the
    /// log start.
    pub fn max_timestamp(&self) -> Result<Option<(Offset, i64)>> {
        let newest = self
            .segments
            .iter()
            .filter(|seg| seg.next_offset > seg.base.max(self.log_start))
            .reduce(|best, seg| {
                if seg.max_timestamp > best.max_timestamp {
                    seg
                } else {
                    best
                }
            });
        // In the segment holding the log start, the batch with the maximum
        // can lie below it (deleted records); the log start stands in for it.
        Ok(newest.and_then(|seg| {
            seg.find_timestamp(seg.max_timestamp, seg.base)
                .map(|(offset, ts)| (offset.max(self.log_start), ts))
        }))
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log_start
    }

    /// The offset the next record will get (the high watermark on one broker).
    pub fn log_end_offset(&self) -> Offset {
        self.active().next_offset
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// True once a flush failed: appends return `Offline` until reopened.
    pub fn is_offline(&self) -> bool {
        self.sync.lock().offline
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.segments.iter().map(|s| s.base).collect()
    }

    /// Removes every batch at or above `offset`, rounded down to the start
    /// of the batch holding it (offsets at or past the log end: no-op; below
    /// the log start: everything goes). Later segments are unlinked. The
    /// segment holding `offset` is cut in place when no `Bytes` from
    /// [`Log::read`] still views it; otherwise its kept prefix is copied to
    /// a new file renamed over the old one, so outstanding reads stay valid
    /// and see the old bytes. The cut is fsynced before returning.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<()> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        let offset = offset.max(self.log_start);
        let i = self
            .segments
            .iter()
            .rposition(|s| s.base <= offset && (offset < s.next_offset || s.is_empty()))
            .unwrap_or(0);
        let offset = offset.max(self.segments[i].base);
        while self.segments.len() > i + 1 {
            if let Some(seg) = self.segments.pop() {
                seg.delete_files()
                    .map_err(io_error("delete segment", &seg.log_path))?;
            }
        }
        let map_len = self.map_len();
        let last = self.segments.len() - 1;
        let seg = &mut self.segments[last];
        let path = seg.log_path.clone();
        if offset < seg.next_offset {
            seg.truncate_to(offset, map_len)
                .map_err(io_error("truncate", &path))?;
        }
        seg.activate(&self.config, map_len)
            .map_err(io_error("activate segment", &path))?;
        let end = seg.next_offset;
        let base = seg.base;
        let file = Arc::clone(&seg.file);
        {
            let mut st = self.sync.lock();
            st.file = file;
            st.path = path.clone();
            st.appended = end;
            st.durable = st.durable.min(end);
        }
        checkpoint::sync_dir(&self.dir)?;
        self.recovery_point = self.recovery_point.min(base);
        info!(path = %path.display(), log_end = end, "truncated log");
        self.write_checkpoint()
    }

    /// Makes everything appended so far durable: fdatasync of the active
    /// log file (and of a segment sealed since the last flush), shared with
    /// concurrent [`Syncer::wait_durable`] callers; then checkpoints the
    /// recovery point if it moved. The active segment's index maps are not
    /// msynced: after an unclean shutdown they are always rebuilt from the
    /// log, so syncing them would buy nothing.
    pub fn flush(&mut self) -> Result<()> {
        self.sync.sync_to(self.log_end_offset())?;
        self.advance_recovery_point()
    }

    /// A handle that lets many threads wait for durability without holding
    /// the log's lock; one flush serves every waiter (group commit).
    pub fn syncer(&self) -> Syncer {
        Syncer {
            shared: Arc::clone(&self.sync),
        }
    }

    /// Rolls by segment.ms when due (called periodically by the broker).
    pub fn maybe_roll(&mut self, now_ms: i64) -> Result<()> {
        let seg = self.active();
        let due = !seg.is_empty()
            && seg.first_append_ms.is_some_and(|t| {
                now_ms.saturating_sub(t) >= self.config.segment_ms.as_millis() as i64
            });
        if due {
            self.roll("segment.ms")
        } else {
            Ok(())
        }
    }

    /// New settings; sizes of the active segment's files apply from the next roll.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Flushes, trims the active indexes, writes the checkpoint and the
    /// clean-shutdown marker, and fsyncs the directory.
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        let seg = self.active_mut();
        let path = seg.log_path.clone();
        seg.finish_indexes()
            .map_err(io_error("trim indexes", &path))?;
        self.recovery_point = self.log_end_offset();
        self.write_checkpoint()?;
        checkpoint::write_clean_marker(&self.dir)?;
        checkpoint::sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), log_end = self.recovery_point, "closed log");
        Ok(())
    }
}
