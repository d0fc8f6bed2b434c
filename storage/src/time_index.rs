//! The time index (`.timeindex`): where in a segment the largest timestamp
//! so far first reached each indexed value.
//!
//! ```text
//!  .timeindex entry (12 bytes, big-endian):
//!   0  timestamp      i64   largest batch max timestamp up to and including
//!                           the batch below
//!   8  relativeOffset u32   base offset of that batch - segment base offset
//! ```
//! An entry is written beside each offset-index entry when the largest
//! timestamp grew, and once more when the segment is sealed, so timestamps
//! strictly increase and the last entry holds the segment's largest
//! timestamp up to the last offset-index entry.

use std::io;
use std::path::Path;

use crate::index::IndexFile;

pub(crate) const TIME_ENTRY: usize = 12;

pub(crate) struct TimeIndex {
    pub(crate) file: IndexFile,
}

impl TimeIndex {
    pub(crate) fn open(path: &Path) -> io::Result<TimeIndex> {
        Ok(TimeIndex {
            file: IndexFile::open(path, TIME_ENTRY)?,
        })
    }

    pub(crate) fn entry(&self, i: usize) -> (i64, u32) {
        let e = self.file.entry(i);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        (
            i64::from_be_bytes(ts),
            u32::from_be_bytes([e[8], e[9], e[10], e[11]]),
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    /// Appends (timestamp, relative offset) if the timestamp grew and there
    /// is room.
    pub(crate) fn maybe_push(&mut self, timestamp: i64, relative_offset: u32) -> bool {
        if self.last().is_some_and(|(t, _)| t >= timestamp) {
            return false;
        }
        let mut e = [0u8; TIME_ENTRY];
        e[..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..].copy_from_slice(&relative_offset.to_be_bytes());
        self.file.push(&e)
    }

    /// Relative offset of the last entry whose timestamp is below `target`:
    /// every batch up to and including that one is older than `target`.
    pub(crate) fn last_below(&self, target: i64) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).0 < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.entry(i).1)
    }

    /// Drops every entry at or above `relative_offset`.
    pub(crate) fn truncate_to(&mut self, relative_offset: u32) {
        let mut keep = self.len();
        while keep > 0 && self.entry(keep - 1).1 >= relative_offset {
            keep -= 1;
        }
        self.file.truncate_entries(keep);
    }

    /// Timestamps strictly increasing, offsets non-decreasing and below
    /// `end_relative` (the segment's next offset - base).
    pub(crate) fn is_consistent(&self, end_relative: u64) -> bool {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.len() {
            let (t, r) = self.entry(i);
            if u64::from(r) >= end_relative {
                return false;
            }
            if let Some((pt, pr)) = prev {
                if t <= pt || r < pr {
                    return false;
                }
            }
            prev = Some((t, r));
        }
        true
    }
}
