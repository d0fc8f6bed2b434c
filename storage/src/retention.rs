//! Retention: deleting whole sealed segments by age (`retention.ms`) and by
//! total size (`retention.bytes`), moving the log start offset; and
//! DeleteRecords, which moves it to an offset the client names.

use tracing::info;

use crate::checkpoint;
use crate::log::Log;
use crate::{io_error, Offset, Result, StorageError};

impl Log {
    /// Applies retention.ms and retention.bytes; returns segments deleted.
    /// Only sealed segments go, oldest first: by time while the segment's
    /// largest timestamp is older than `now_ms - retention.ms`, then by size
    /// while the log minus that segment is still >= retention.bytes. The
    /// new log start (the next segment's base) is checkpointed before any
    /// file is unlinked, so a crash in between finishes the job on open.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        let sealed = self.segments.len() - 1;
        let mut n = 0;
        if let Some(ms) = self.config.retention_ms {
            let cutoff = now_ms.saturating_sub(ms.as_millis() as i64);
            while n < sealed && self.segments[n].max_timestamp < cutoff {
                n += 1;
            }
        }
        if let Some(limit) = self.config.retention_bytes {
            let mut size: u64 = self.segments[n..].iter().map(|s| s.size).sum();
            while n < sealed && size - self.segments[n].size >= limit {
                size -= self.segments[n].size;
                n += 1;
            }
        }
        if n == 0 {
            return Ok(0);
        }
        let deleted = self.advance_log_start(self.segments[n].base)?;
        info!(dir = %self.dir.display(), deleted, log_start = self.log_start, "retention deleted segments");
        Ok(deleted)
    }

    /// DeleteRecords: makes `offset` the log start (-1: the log end), so
    /// nothing below it is served any more, and deletes the sealed segments
    /// that lie wholly below it. A start inside a segment keeps that segment;
    /// reads from the start may then return the batch that straddles it,
    /// as Kafka's do. Offsets past the log end (or negative) are
    /// `OffsetOutOfRange`; one at or below the current start changes
    /// nothing. Returns the log start, durable when this returns.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset> {
        if self.is_offline() {
            return Err(StorageError::Offline {
                path: self.dir.clone(),
            });
        }
        let log_end = self.log_end_offset();
        let offset = if offset == -1 { log_end } else { offset };
        if !(0..=log_end).contains(&offset) {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: self.log_start,
                log_end,
            });
        }
        if offset > self.log_start {
            let deleted = self.advance_log_start(offset)?;
            info!(dir = %self.dir.display(), deleted, log_start = self.log_start, "records deleted below the new log start");
        }
        Ok(self.log_start)
    }

    /// Raises the log start to `start` and deletes every sealed segment
    /// wholly below it (its successor begins at or before `start`). The new
    /// start is checkpointed before any file is unlinked, so a crash in
    /// between finishes the job on open. Returns segments deleted.
    fn advance_log_start(&mut self, start: Offset) -> Result<usize> {
        let before = self.log_start;
        self.log_start = before.max(start);
        if let Err(e) = self.write_checkpoint() {
            // Not durable, so not in effect: the records stay readable.
            self.log_start = before;
            return Err(e);
        }
        let n = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base <= self.log_start)
            .count();
        let gone: Vec<_> = self.segments.drain(..n).collect();
        for seg in &gone {
            seg.delete_files()
                .map_err(io_error("delete segment", &seg.log_path))?;
        }
        if n > 0 {
            checkpoint::sync_dir(&self.dir)?;
        }
        Ok(n)
    }
}
