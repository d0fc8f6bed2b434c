//! Opening a partition directory: the clean-shutdown fast path, and crash
//! recovery (scan from the recovery checkpoint, truncate at the first bad
//! byte, drop later segments, rebuild indexes).
//!
//! ```text
//!  segments:  [s0 sealed] [s1 sealed] [s2 sealed] [s3 active]
//!  checkpoint recovery point ───────────┘ (falls in s2)
//!  clean marker present:  every segment loaded (indexes checked, tail walked)
//!  otherwise:             s0, s1 loaded; s2, s3 scanned batch by batch with
//!                         CRC-32C, indexes rebuilt; first bad byte at s2:p
//!                         => s2 cut at p, s3 deleted, s2 becomes active
//! ```

use std::fs;
use std::path::Path;

use tracing::{info, warn};

use crate::checkpoint;
use crate::log::Log;
use crate::segment::Segment;
use crate::sync::SyncShared;
use crate::{io_error, LogConfig, Offset, Result};

/// Lists segment base offsets (from `.log` names), removing leftover temp
/// files and index files whose log is gone.
fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let mut logs = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".tmp") || name.ends_with(".truncating") {
            warn!(path = %path.display(), "removing leftover temp file");
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<Offset>() else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        match ext {
            "log" => logs.push(base),
            "index" | "timeindex" => others.push((base, path)),
            _ => {}
        }
    }
    logs.sort_unstable();
    for (base, path) in others {
        if logs.binary_search(&base).is_err() {
            warn!(path = %path.display(), "removing index file without a log");
            fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(logs)
}

pub(crate) fn open(dir: &Path, config: LogConfig) -> Result<Log> {
    fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
    let clean = checkpoint::take_clean_marker(dir)?;
    let cp = checkpoint::read(dir)?;
    let mut bases = list_segments(dir)?;
    let cp_start = cp.map_or(0, |c| c.log_start);
    let mut changed = clean;

    // Segments wholly below the persisted log start (a crash interrupted
    // retention after the checkpoint moved) are finished off now.
    while bases.len() > 1 && bases[1] <= cp_start {
        let base = bases.remove(0);
        warn!(dir = %dir.display(), base, log_start = cp_start, "removing segment below the log start");
        let seg = Segment::open(dir, base, false).map_err(io_error("open segment", dir))?;
        seg.delete_files()
            .map_err(io_error("delete segment", &seg.log_path))?;
        changed = true;
    }

    // Without a clean shutdown, scan from the segment holding the recovery
    // point: everything below it was synced when its segment rolled.
    let first_scan = if clean {
        usize::MAX
    } else {
        let point = cp.map_or(Offset::MIN, |c| c.recovery_point);
        bases.partition_point(|&b| b <= point).saturating_sub(1)
    };

    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let mut seg = Segment::open(dir, base, false).map_err(io_error("open segment", dir))?;
        let path = seg.log_path.clone();
        let mut bad = None;
        let scanned = i >= first_scan;
        if !scanned {
            if let Err(cause) = seg.load() {
                warn!(path = %path.display(), %cause, "rebuilding indexes");
                bad = seg
                    .rebuild(&config)
                    .map_err(io_error("rebuild indexes", &path))?;
                if i + 1 < bases.len() {
                    seg.finish_indexes()
                        .map_err(io_error("trim indexes", &path))?;
                }
                changed = true;
            }
        } else {
            bad = seg
                .rebuild(&config)
                .map_err(io_error("recover segment", &path))?;
            // What was scanned is made durable so the recovery point can move.
            seg.file.sync_data().map_err(io_error("fdatasync", &path))?;
            if bad.is_none() && i + 1 < bases.len() {
                seg.finish_indexes()
                    .map_err(io_error("trim indexes", &path))?;
                seg.forget_reservation();
                seg.release_reserved()
                    .map_err(io_error("release reserved blocks", &path))?;
            }
        }
        if bad.is_none() {
            if let Some(prev) = segments.last() {
                if prev.next_offset != seg.base {
                    // A hole or an overlap: nothing from here on can be served.
                    warn!(path = %path.display(), expected = prev.next_offset, found = seg.base,
                        "segment does not continue the previous one; dropping it and every later segment");
                    drop(seg);
                    delete_from(dir, &bases[i..])?;
                    changed = true;
                    break;
                }
            }
        }
        if let Some((position, cause)) = bad {
            warn!(path = %path.display(), position, offset = seg.next_offset, %cause,
                "truncating segment at its first bad byte; dropping every later segment");
            seg.cut_file(position)
                .map_err(io_error("truncate", &path))?;
            segments.push(seg);
            delete_from(dir, &bases[i + 1..])?;
            changed = true;
            break;
        }
        segments.push(seg);
    }

    if segments.is_empty() {
        let base = cp_start.max(0);
        let seg = Segment::open(dir, base, true).map_err(io_error("create segment", dir))?;
        segments.push(seg);
        changed = true;
    }
    let map_len = config
        .segment_bytes
        .clamp(4096, u64::from(u32::MAX))
        .saturating_add(u64::from(config.max_message_bytes));
    let last = segments.len() - 1;
    let active = &mut segments[last];
    active
        .activate(&config, map_len)
        .map_err(io_error("activate segment", &active.log_path))?;
    let end = active.next_offset;
    let log_start = cp_start.clamp(segments[0].base, end);
    let recovery_point = segments[last].base;
    let sync = SyncShared::new(
        dir.to_path_buf(),
        segments[last].file.clone(),
        segments[last].log_path.clone(),
        end,
    );
    let log = Log {
        dir: dir.to_path_buf(),
        config,
        segments,
        log_start,
        recovery_point,
        sync,
    };
    if changed || !clean || cp.is_none() {
        checkpoint::sync_dir(dir)?;
        log.write_checkpoint()?;
    }
    info!(dir = %dir.display(), clean, log_start, log_end = end, segments = log.segments.len(), "opened log");
    Ok(log)
}

/// Unlinks the segments at `bases`.
fn delete_from(dir: &Path, bases: &[Offset]) -> Result<()> {
    for &base in bases {
        let seg = Segment::open(dir, base, false).map_err(io_error("open segment", dir))?;
        seg.delete_files()
            .map_err(io_error("delete segment", &seg.log_path))?;
    }
    Ok(())
}
