//! The sparse offset index (`.index`) and the preallocated, memory-mapped
//! entry file it shares with the time index.
//!
//! ```text
//!  .index entry (8 bytes, big-endian), one per index.interval.bytes appended:
//!   0  relativeOffset u32   base offset of a batch - segment base offset
//!   4  position       u32   byte position of that batch in the .log file
//! ```
//! Entries are strictly increasing in both fields. The file is preallocated
//! (`LogConfig::index_entries`: what a full segment needs, at most
//! `index_max_bytes`) while its segment is active and trimmed to its entries
//! when the segment rolls or the log closes; after a crash the active
//! segment's index is rebuilt from the log.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::mmap;

/// A file of fixed-size entries behind a read-write map.
pub(crate) struct IndexFile {
    path: PathBuf,
    file: File,
    map: Option<MmapMut>,
    entry_size: usize,
    entries: usize,
}

impl IndexFile {
    /// Opens (creating if missing) an index file; its whole entries count as
    /// present until the caller checks or rebuilds them.
    pub(crate) fn open(path: &Path, entry_size: usize) -> io::Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len() as usize;
        let map = if len > 0 {
            Some(mmap::map_write(&file)?)
        } else {
            None
        };
        Ok(IndexFile {
            path: path.to_path_buf(),
            file,
            map,
            entry_size,
            entries: len / entry_size,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Grows the file (with allocated blocks) to hold `entries` entries, in
    /// whole pages but at most `max_bytes`, and maps all of it; entries
    /// already present are kept.
    pub(crate) fn preallocate(&mut self, entries: u64, max_bytes: u64) -> io::Result<()> {
        let bytes = entries
            .saturating_mul(self.entry_size as u64)
            .div_ceil(4096)
            .saturating_mul(4096)
            .min(max_bytes);
        let want = (bytes as usize / self.entry_size).max(self.entries) * self.entry_size;
        if self.map.as_ref().map_or(0, |m| m.len()) == want {
            return Ok(());
        }
        self.map = None;
        mmap::preallocate(&self.file, want as u64)?;
        self.map = if want > 0 {
            Some(mmap::map_write(&self.file)?)
        } else {
            None
        };
        Ok(())
    }

    /// Flushes the map, drops it, cuts the file to its entries, fsyncs it and
    /// maps what is left.
    pub(crate) fn trim(&mut self) -> io::Result<()> {
        self.flush()?;
        self.map = None;
        let used = (self.entries * self.entry_size) as u64;
        self.file.set_len(used)?;
        self.file.sync_all()?;
        if used > 0 {
            self.map = Some(mmap::map_write(&self.file)?);
        }
        Ok(())
    }

    /// msync of the map.
    pub(crate) fn flush(&self) -> io::Result<()> {
        match &self.map {
            Some(m) => m.flush(),
            None => Ok(()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
    }

    pub(crate) fn free(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len() / self.entry_size) - self.entries
    }

    pub(crate) fn entry(&self, i: usize) -> &[u8] {
        let at = i * self.entry_size;
        match &self.map {
            Some(m) => &m[at..at + self.entry_size],
            None => &[],
        }
    }

    /// Appends an entry if there is room; false when full.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> bool {
        if self.free() == 0 {
            return false;
        }
        let at = self.entries * self.entry_size;
        if let Some(m) = &mut self.map {
            m[at..at + self.entry_size].copy_from_slice(bytes);
            self.entries += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn truncate_entries(&mut self, n: usize) {
        self.entries = self.entries.min(n);
    }
}

pub(crate) const OFFSET_ENTRY: usize = 8;

/// The sparse offset -> position index of one segment.
pub(crate) struct OffsetIndex {
    pub(crate) file: IndexFile,
}

impl OffsetIndex {
    pub(crate) fn open(path: &Path) -> io::Result<OffsetIndex> {
        Ok(OffsetIndex {
            file: IndexFile::open(path, OFFSET_ENTRY)?,
        })
    }

    pub(crate) fn entry(&self, i: usize) -> (u32, u32) {
        let e = self.file.entry(i);
        (
            u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        )
    }

    pub(crate) fn len(&self) -> usize {
        self.file.len()
    }

    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        self.len().checked_sub(1).map(|i| self.entry(i))
    }

    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) -> bool {
        let mut e = [0u8; OFFSET_ENTRY];
        e[..4].copy_from_slice(&relative_offset.to_be_bytes());
        e[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&e)
    }

    /// Index of the last entry whose relative offset is <= `relative_offset`.
    pub(crate) fn floor_entry(&self, relative_offset: u32) -> Option<usize> {
        let n = self.len();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.entry(mid).0 <= relative_offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Position of a batch at or before the one holding `relative_offset`
    /// (0 when no entry is that low).
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        self.floor_entry(relative_offset)
            .map_or(0, |i| self.entry(i).1)
    }

    /// Drops every entry at or above `relative_offset`.
    pub(crate) fn truncate_to(&mut self, relative_offset: u32) {
        let keep = match relative_offset.checked_sub(1) {
            Some(r) => self.floor_entry(r).map_or(0, |i| i + 1),
            None => 0,
        };
        self.file.truncate_entries(keep);
    }

    /// Entries strictly increasing in both fields, positions inside the log.
    pub(crate) fn is_consistent(&self, log_size: u64) -> bool {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.len() {
            let (r, p) = self.entry(i);
            if p == 0 || u64::from(p) >= log_size {
                return false;
            }
            if let Some((pr, pp)) = prev {
                if r <= pr || p <= pp {
                    return false;
                }
            }
            prev = Some((r, p));
        }
        true
    }
}
