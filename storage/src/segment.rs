//! One segment: a `.log` file of whole batches, written with vectored
//! positioned writes and read through a shared read-only map, plus its
//! offset and time indexes.
//!
//! ```text
//!  <base:020>.log        batch | batch | batch | ...        (size bytes written)
//!  <base:020>.index      (rel, pos) every index.interval.bytes
//!  <base:020>.timeindex  (max ts so far, rel) beside each index entry
//!  map: [0 ............ size ......................... map.len())
//!        readable        never touched (may be past EOF)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;

use crate::batch::{self, BatchHeader, BatchIter};
use crate::index::OffsetIndex;
use crate::mmap;
use crate::time_index::TimeIndex;
use crate::{LogConfig, Offset};

/// `<dir>/<base:020>.<ext>`.
pub(crate) fn file_path(dir: &Path, base: Offset, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

/// A range of a segment map, owned by a `Bytes` so the map outlives every read.
struct MapSlice {
    map: Arc<Mmap>,
    /// The segment file's reader token: counts every live view of any map
    /// of this file, old maps included.
    _reader: Arc<()>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// What an append needs to know beyond the batches.
pub(crate) struct AppendCtx {
    /// `index.interval.bytes`.
    pub(crate) index_interval: u64,
    /// How far ahead to map the log when it must be remapped.
    pub(crate) map_len: u64,
    /// `segment.bytes`: blocks are reserved ahead of the writes up to here.
    pub(crate) segment_bytes: u64,
}

/// Blocks reserved ahead of the log end: measured (BENCHMARKS.md) to take
/// page-cache appends from ~3 to ~5 GiB/s on ext4 by skipping delayed
/// allocation. The reservation grows with the segment, from 1 MiB (less is
/// not worth a syscall) to 32 MiB, so thousands of quiet partitions do not
/// hold 32 MiB of disk each.
const RESERVE_AHEAD: u64 = 32 << 20;
const RESERVE_MIN: u64 = 1 << 20;

/// How an append to the file failed.
pub(crate) enum WriteFailure {
    /// The write failed and the file is back at its old end: nothing visible
    /// changed, later appends may succeed (e.g. after disk space is freed).
    RolledBack(io::Error),
    /// The write failed and so did cutting the partial bytes off: the log
    /// must go offline.
    Stuck(io::Error),
}

pub(crate) struct Segment {
    pub(crate) base: Offset,
    pub(crate) log_path: PathBuf,
    pub(crate) file: Arc<File>,
    map: Option<Arc<Mmap>>,
    /// Cloned into every `Bytes` handed out for this file (through any of
    /// its maps, old or current): while its count is above 1, the file must
    /// not be cut.
    readers: Arc<()>,
    /// Where the file's own offset is, if known (saves a seek per append).
    cursor: Option<u64>,
    /// Disk blocks are reserved (fallocate, size unchanged) up to here.
    reserved_to: u64,
    /// False once the filesystem said it cannot reserve.
    can_reserve: bool,
    /// Bytes of whole batches in the file.
    pub(crate) size: u64,
    /// Offset after the last batch (== base when empty).
    pub(crate) next_offset: Offset,
    /// Largest batch max timestamp; -1 when empty.
    pub(crate) max_timestamp: i64,
    last_batch_base: Offset,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    indexes_were_missing: bool,
    bytes_since_index: u64,
    /// Wall-clock ms of the first append since the segment was created or
    /// reopened (segment.ms counts from it).
    pub(crate) first_append_ms: Option<i64>,
}

impl Segment {
    /// Opens the files of the segment at `base`, creating missing ones
    /// (`truncate` empties them: a brand new segment). Nothing is scanned.
    pub(crate) fn open(dir: &Path, base: Offset, truncate: bool) -> io::Result<Segment> {
        let log_path = file_path(dir, base, "log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(&log_path)?;
        let size = file.metadata()?.len();
        let index_path = file_path(dir, base, "index");
        let time_path = file_path(dir, base, "timeindex");
        let indexes_were_missing = !index_path.exists() || !time_path.exists();
        if truncate {
            for p in [&index_path, &time_path] {
                if p.exists() {
                    fs::remove_file(p)?;
                }
            }
        }
        let index = OffsetIndex::open(&index_path)?;
        let time_index = TimeIndex::open(&time_path)?;
        let map = if size > 0 {
            Some(Arc::new(mmap::map_read(&file, size as usize)?))
        } else {
            None
        };
        Ok(Segment {
            base,
            log_path,
            file: Arc::new(file),
            map,
            readers: Arc::new(()),
            cursor: None,
            reserved_to: size,
            can_reserve: true,
            size,
            next_offset: base,
            max_timestamp: -1,
            last_batch_base: base,
            index,
            time_index,
            indexes_were_missing,
            bytes_since_index: 0,
            first_append_ms: None,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The written bytes, through the map.
    pub(crate) fn data(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.size as usize],
            None => &[],
        }
    }

    fn relative(&self, offset: Offset) -> u32 {
        u32::try_from(offset - self.base).unwrap_or(u32::MAX)
    }

    /// Makes sure the map covers `len` bytes, mapping at least `min_len`.
    fn ensure_map(&mut self, len: u64, min_len: u64) -> io::Result<()> {
        if self.map.as_ref().is_some_and(|m| m.len() as u64 >= len) {
            return Ok(());
        }
        let want = len.max(min_len).max(4096);
        self.map = Some(Arc::new(mmap::map_read(&self.file, want as usize)?));
        Ok(())
    }

    /// Gets the segment ready to take appends: indexes preallocated (see
    /// [`Segment::preallocate_indexes`]), the log mapped `map_len` bytes ahead.
    pub(crate) fn activate(&mut self, config: &LogConfig, map_len: u64) -> io::Result<()> {
        self.preallocate_indexes(config)?;
        self.ensure_map(self.size + 1, map_len)
    }

    /// Preallocates both indexes for every entry a segment can get: a full
    /// one under `config`, or this one if it is larger (written under
    /// another config), each at most `index_max_bytes`.
    fn preallocate_indexes(&mut self, config: &LogConfig) -> io::Result<()> {
        let entries = config.index_entries(self.size.max(config.segment_bytes));
        let max = u64::from(config.index_max_bytes);
        self.index.file.preallocate(entries, max)?;
        self.time_index.file.preallocate(entries, max)
    }

    /// Records index entries for a batch written at `position`.
    fn index_batch(
        &mut self,
        position: u64,
        base_offset: Offset,
        size: u64,
        max_ts: i64,
        interval: u64,
    ) {
        let new_max = self.max_timestamp.max(max_ts);
        // Offset and time entries are written together (or not at all), and
        // one time-index slot stays free for the entry `seal` adds: so the
        // last time entry always holds the largest timestamp up to the last
        // offset entry, which is what `walk_tail` relies on.
        if position > 0
            && self.bytes_since_index >= interval
            && self.index.file.free() >= 1
            && self.time_index.file.free() >= 2
        {
            let rel = self.relative(base_offset);
            self.index.push(rel, position as u32);
            self.time_index.maybe_push(new_max, rel);
            self.bytes_since_index = 0;
        }
        self.max_timestamp = new_max;
        self.last_batch_base = base_offset;
        self.bytes_since_index += size;
    }

    /// Writes `batches` (already validated, `headers` in order) at the end,
    /// with base offsets from `first_offset` written in place of theirs, and
    /// indexes them.
    pub(crate) fn append(
        &mut self,
        batches: &[u8],
        headers: &[BatchHeader],
        first_offset: Offset,
        ctx: &AppendCtx,
    ) -> Result<(), WriteFailure> {
        let total = batches.len() as u64;
        let need = self.size + total;
        self.ensure_map(need, ctx.map_len)
            .map_err(WriteFailure::RolledBack)?;
        if self.can_reserve && need > self.reserved_to {
            let ahead = self.size.clamp(RESERVE_MIN, RESERVE_AHEAD);
            let target = need.max((need + ahead).min(ctx.segment_bytes));
            if target - self.size >= RESERVE_MIN {
                match mmap::reserve(&self.file, self.size, target - self.size) {
                    Ok(()) => self.reserved_to = target,
                    Err(e) if e.kind() == io::ErrorKind::Unsupported => self.can_reserve = false,
                    // No room for the look-ahead: the disk is nearly full.
                    // Reserve just this append, which may still fit.
                    Err(_) if target > need => {
                        match mmap::reserve(&self.file, self.size, need - self.size) {
                            Ok(()) => self.reserved_to = need,
                            // Disk full shows up here, before anything is written.
                            Err(e) => return Err(WriteFailure::RolledBack(e)),
                        }
                    }
                    Err(e) => return Err(WriteFailure::RolledBack(e)),
                }
            }
        }
        let mut offsets = Vec::with_capacity(headers.len());
        let mut next = first_offset;
        for h in headers {
            offsets.push(next.to_be_bytes());
            next = h.base_offset_after(next);
        }
        let mut slices = Vec::with_capacity(headers.len() * 2);
        let mut at = 0usize;
        for (h, off) in headers.iter().zip(&offsets) {
            slices.push(IoSlice::new(off));
            slices.push(IoSlice::new(&batches[at + 8..at + h.total_size()]));
            at += h.total_size();
        }
        if let Err(e) = write_all_vectored_at(&self.file, &mut slices, self.size, &mut self.cursor)
        {
            // Nothing of this append is visible yet (next_offset has not
            // moved); cut off whatever part of it reached the file.
            return match self.file.set_len(self.size) {
                Ok(()) => Err(WriteFailure::RolledBack(e)),
                Err(cut) => Err(WriteFailure::Stuck(io::Error::new(
                    cut.kind(),
                    format!("{e}; then cutting the partial write failed: {cut}"),
                ))),
            };
        }
        let mut position = self.size;
        let mut base = first_offset;
        for h in headers {
            let size = h.total_size() as u64;
            self.index_batch(position, base, size, h.max_timestamp, ctx.index_interval);
            position += size;
            base = h.base_offset_after(base);
        }
        self.size = position;
        self.next_offset = base;
        Ok(())
    }

    /// Position of the batch holding `offset` (base <= offset < next_offset).
    pub(crate) fn position_of(&self, offset: Offset) -> Option<usize> {
        let data = self.data();
        let mut pos = self.index.lookup(self.relative(offset)) as usize;
        while let Some((base, size, delta, _)) = batch::peek(&data[pos.min(data.len())..]) {
            if base + i64::from(delta) >= offset {
                return Some(pos);
            }
            pos += size;
        }
        None
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` but at
    /// least one, as a zero-copy view of the map.
    pub(crate) fn read(&self, offset: Offset, max_bytes: usize) -> Option<Bytes> {
        let start = self.position_of(offset)?;
        let data = self.data();
        let mut end = start;
        while let Some((_, size, _, _)) = batch::peek(&data[end..]) {
            if end > start && end + size - start > max_bytes {
                break;
            }
            if end + size > data.len() {
                break;
            }
            end += size;
        }
        let map = self.map.clone()?;
        Some(Bytes::from_owner(MapSlice {
            map,
            _reader: Arc::clone(&self.readers),
            start,
            end,
        }))
    }

    /// The first batch ending at or after `from` whose max timestamp is >=
    /// `target`, as (its base offset but at least `from`, max timestamp).
    pub(crate) fn find_timestamp(&self, target: i64, from: Offset) -> Option<(Offset, i64)> {
        let rel = self.time_index.last_below(target).unwrap_or(0);
        let data = self.data();
        let mut pos = self.index.lookup(rel) as usize;
        while let Some((base, size, delta, max_ts)) = batch::peek(&data[pos..]) {
            if max_ts >= target && base + i64::from(delta) >= from {
                return Some((base.max(from), max_ts));
            }
            pos += size;
        }
        None
    }

    /// Trusts the indexes if they look consistent and walks only the batches
    /// after the last index entry (checking their CRCs) to learn the next
    /// offset and largest timestamp. Err(cause) means: rebuild instead.
    pub(crate) fn load(&mut self) -> Result<(), String> {
        if self.indexes_were_missing {
            return Err("index file missing".into());
        }
        if !self.index.is_consistent(self.size) {
            return Err("offset index entries not consistent with the log".into());
        }
        if self.index.len() > 0 && self.time_index.len() == 0 {
            return Err("time index empty beside a non-empty offset index".into());
        }
        self.walk_tail(true)?;
        if !self
            .time_index
            .is_consistent((self.next_offset - self.base) as u64)
        {
            return Err("time index entries not consistent with the log".into());
        }
        // The last time entry must name a batch that is really there and be
        // at least that batch's timestamp. (Like Kafka, only the structure
        // and the last entries are checked on open; a scribble inside an
        // otherwise well-formed sealed index is not detected.)
        if let Some((ts, rel)) = self.time_index.last() {
            let offset = self.base + i64::from(rel);
            let found = self
                .position_of(offset)
                .and_then(|p| batch::peek(&self.data()[p..]));
            match found {
                Some((b, _, _, max_ts))
                    if b == offset && max_ts <= ts && ts <= self.max_timestamp => {}
                _ => return Err("last time index entry does not match the log".into()),
            }
        }
        Ok(())
    }

    /// Walks from the last offset-index entry to the end of the data,
    /// setting next offset, largest timestamp and the index cursor.
    fn walk_tail(&mut self, verify_crc: bool) -> Result<(), String> {
        let (start, expected) = match self.index.last() {
            Some((rel, pos)) => (pos as usize, self.base + i64::from(rel)),
            None => (0, self.base),
        };
        let map = self.map.clone();
        let data = match &map {
            Some(m) => &m[..self.size as usize],
            None => &[][..],
        };
        let mut next = expected;
        let mut max_ts = self.time_index.last().map_or(-1, |(t, _)| t);
        let mut last_base = self.base;
        let mut iter = BatchIter::starting_at(data, start, verify_crc);
        for b in iter.by_ref() {
            if b.header.base_offset != next {
                return Err(format!(
                    "batch at byte {} has base offset {}, expected {next}",
                    b.position, b.header.base_offset
                ));
            }
            last_base = next;
            next = b.header.next_offset();
            max_ts = max_ts.max(b.header.max_timestamp);
        }
        if let Some(stop) = iter.stop() {
            return Err(format!("at byte {}: {}", stop.position, stop.reason));
        }
        self.next_offset = next;
        self.max_timestamp = if next == self.base { -1 } else { max_ts };
        self.last_batch_base = last_base;
        self.bytes_since_index = self.size - start as u64;
        Ok(())
    }

    /// Scans every batch (length, CRC-32C, dense offsets) and rebuilds both
    /// indexes. Returns where the first bad byte is and why, if any; the
    /// segment's state then covers only the batches before it.
    pub(crate) fn rebuild(&mut self, config: &LogConfig) -> io::Result<Option<(u64, String)>> {
        let interval = u64::from(config.index_interval_bytes);
        self.preallocate_indexes(config)?;
        self.index.file.truncate_entries(0);
        self.time_index.file.truncate_entries(0);
        self.next_offset = self.base;
        self.max_timestamp = -1;
        self.last_batch_base = self.base;
        self.bytes_since_index = 0;
        let map = self.map.clone();
        let data = match &map {
            Some(m) => &m[..self.size as usize],
            None => &[][..],
        };
        let mut iter = BatchIter::new(data, true);
        let mut bad = None;
        for b in iter.by_ref() {
            if b.header.base_offset != self.next_offset {
                bad = Some((
                    b.position as u64,
                    format!(
                        "base offset {} where {} was expected",
                        b.header.base_offset, self.next_offset
                    ),
                ));
                break;
            }
            let size = b.header.total_size() as u64;
            self.index_batch(
                b.position as u64,
                b.header.base_offset,
                size,
                b.header.max_timestamp,
                interval,
            );
            self.next_offset = b.header.next_offset();
        }
        if bad.is_none() {
            if let Some(stop) = iter.stop() {
                bad = Some((stop.position as u64, stop.reason.to_string()));
            }
        }
        self.indexes_were_missing = false;
        Ok(bad)
    }

    /// Cuts the log file at `position` (a batch boundary). Only while no
    /// `Bytes` shares the map (recovery, or `truncate_to` after checking).
    pub(crate) fn cut_file(&mut self, position: u64) -> io::Result<()> {
        self.map = None;
        self.cursor = None;
        self.file.set_len(position)?;
        self.file.sync_all()?;
        self.size = position;
        if position > 0 {
            self.map = Some(Arc::new(mmap::map_read(&self.file, position as usize)?));
        }
        Ok(())
    }

    /// Removes every batch from the one holding `offset` on (base <= offset
    /// < next_offset). If readers still hold views of the map, the kept
    /// prefix is copied to a new file renamed over the old one, so no live
    /// map ever points past its file's end. Returns true if the file was
    /// replaced (the caller re-points the syncer and fsyncs the directory).
    pub(crate) fn truncate_to(&mut self, offset: Offset, map_len: u64) -> io::Result<bool> {
        let Some(position) = self.position_of(offset) else {
            return Ok(false);
        };
        let batch_base = batch::peek(&self.data()[position..]).map_or(offset, |p| p.0);
        let rel = self.relative(batch_base);
        self.index.truncate_to(rel);
        self.time_index.truncate_to(rel);
        let shared = Arc::strong_count(&self.readers) > 1;
        let replaced = if shared {
            let tmp = self.log_path.with_extension("log.truncating");
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&self.data()[..position])?;
            f.sync_all()?;
            fs::rename(&tmp, &self.log_path)?;
            self.file = Arc::new(f);
            self.cursor = None;
            self.readers = Arc::new(());
            self.size = position as u64;
            self.map = None;
            true
        } else {
            self.cut_file(position as u64)?;
            false
        };
        self.map = None;
        self.ensure_map(self.size + 1, map_len)?;
        self.walk_tail(false).map_err(io::Error::other)?;
        Ok(replaced)
    }

    /// Makes a finished segment durable and compact: adds the closing
    /// time-index entry, fdatasyncs the log, trims and fsyncs both indexes,
    /// and maps the log at its exact size.
    pub(crate) fn seal(&mut self) -> io::Result<()> {
        self.finish_indexes()?;
        self.release_reserved()?;
        self.file.sync_data()?;
        self.map = None;
        if self.size > 0 {
            self.map = Some(Arc::new(mmap::map_read(&self.file, self.size as usize)?));
        }
        Ok(())
    }

    /// Gives back blocks reserved past the last batch: setting the length it
    /// already has makes the filesystem drop blocks beyond EOF. No byte
    /// below the size moves, so live maps are unaffected.
    pub(crate) fn release_reserved(&mut self) -> io::Result<()> {
        if self.reserved_to > self.size {
            self.file.set_len(self.size)?;
            self.reserved_to = self.size;
        }
        Ok(())
    }

    /// After a crash the file may still hold blocks reserved past its end
    /// by the process that died; this gives them back.
    pub(crate) fn forget_reservation(&mut self) {
        self.reserved_to = u64::MAX;
    }

    /// Closing time-index entry, then trim + fsync of both index files.
    pub(crate) fn finish_indexes(&mut self) -> io::Result<()> {
        if self.next_offset > self.base {
            let rel = self.relative(self.last_batch_base);
            self.time_index.maybe_push(self.max_timestamp, rel);
        }
        self.index.file.trim()?;
        self.time_index.file.trim()
    }

    /// Unlinks the segment's files (live maps of them stay valid).
    pub(crate) fn delete_files(&self) -> io::Result<()> {
        for p in [
            self.log_path.clone(),
            self.index.file.path().to_path_buf(),
            self.time_index.file.path().to_path_buf(),
        ] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl BatchHeader {
    /// The offset after this batch when it is given `base` as base offset.
    pub(crate) fn base_offset_after(&self, base: Offset) -> Offset {
        base + i64::from(self.last_offset_delta) + 1
    }
}

/// writev at `position` until every slice is written (the file's cursor is
/// moved; only the log's single writer uses it).
/// `cursor` is where the file's offset is known to be (None: unknown); the
/// seek is skipped when it is already at `position`.
fn write_all_vectored_at(
    file: &File,
    slices: &mut [IoSlice<'_>],
    position: u64,
    cursor: &mut Option<u64>,
) -> io::Result<()> {
    let mut f = file;
    // Unknown until the whole write succeeds: a partial write moves it.
    if cursor.take() != Some(position) {
        f.seek(SeekFrom::Start(position))?;
    }
    let total: usize = slices.iter().map(|s| s.len()).sum();
    let mut slices = slices;
    while !slices.is_empty() {
        match f.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "writev wrote 0 bytes",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    *cursor = Some(position + total as u64);
    Ok(())
}
