//! Retention: deleting whole sealed segments by age (`retention.ms`) and by
//! total size (`retention.bytes`), moving the log start offset.

use tracing::info;

use crate::checkpoint;
use crate::log::Log;
use crate::{io_error, Result};

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
        self.log_start = self.log_start.max(self.segments[n].base);
        self.write_checkpoint()?;
        let gone: Vec<_> = self.segments.drain(..n).collect();
        for seg in &gone {
            seg.delete_files()
                .map_err(io_error("delete segment", &seg.log_path))?;
        }
        checkpoint::sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), deleted = n, log_start = self.log_start, "retention deleted segments");
        Ok(n)
    }
}
