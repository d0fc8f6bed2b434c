//! The partition's checkpoint file (recovery point and log start offset) and
//! the clean-shutdown marker, both written crash-safely.
//!
//! ```text
//!  strom.checkpoint (32 bytes, big-endian):
//!   0  magic          8 bytes "STROMCKP"
//!   8  version        u32 = 1
//!  12  recoveryPoint  i64   every segment below the one holding it is durable
//!  20  logStartOffset i64   reads below it are out of range
//!  28  crc            u32   CRC-32 (crc32fast) of bytes 0..28
//! ```
//! Written as `strom.checkpoint.tmp`, fsynced, renamed over, directory fsynced.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use tracing::warn;

use crate::{io_error, Offset, Result};

pub(crate) const CHECKPOINT_FILE: &str = "strom.checkpoint";
pub(crate) const CLEAN_MARKER: &str = ".clean_shutdown";
const MAGIC: &[u8; 8] = b"STROMCKP";
const LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub(crate) recovery_point: Offset,
    pub(crate) log_start: Offset,
}

impl Checkpoint {
    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&1u32.to_be_bytes());
        b[12..20].copy_from_slice(&self.recovery_point.to_be_bytes());
        b[20..28].copy_from_slice(&self.log_start.to_be_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> std::result::Result<Checkpoint, String> {
        if b.len() != LEN {
            return Err(format!("expected {LEN} bytes, found {}", b.len()));
        }
        if &b[..8] != MAGIC {
            return Err("bad magic".into());
        }
        let crc = u32::from_be_bytes([b[28], b[29], b[30], b[31]]);
        let actual = crc32fast::hash(&b[..28]);
        if crc != actual {
            return Err(format!("CRC {crc:#010x} != computed {actual:#010x}"));
        }
        let mut r = [0u8; 8];
        r.copy_from_slice(&b[12..20]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&b[20..28]);
        Ok(Checkpoint {
            recovery_point: i64::from_be_bytes(r),
            log_start: i64::from_be_bytes(s),
        })
    }
}

/// The checkpoint, or None when missing or unreadable (then recovery scans
/// everything; a damaged checkpoint only costs time).
pub(crate) fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(CHECKPOINT_FILE);
    match fs::read(&path) {
        Ok(b) => match Checkpoint::decode(&b) {
            Ok(c) => Ok(Some(c)),
            Err(cause) => {
                warn!(path = %path.display(), %cause, "ignoring damaged checkpoint; scanning the whole log");
                Ok(None)
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", &path)(e)),
    }
}

/// temp + fsync + rename + fsync dir.
pub(crate) fn write(dir: &Path, cp: &Checkpoint) -> Result<()> {
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let path = dir.join(CHECKPOINT_FILE);
    let mut f = File::create(&tmp).map_err(io_error("create", &tmp))?;
    f.write_all(&cp.encode()).map_err(io_error("write", &tmp))?;
    f.sync_all().map_err(io_error("fsync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_error("rename", &path))?;
    sync_dir(dir)
}

/// fsync of a directory, so created, renamed and deleted entries persist.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("fsync directory", dir))
}

/// Writes and fsyncs the clean-shutdown marker (the directory is fsynced by
/// the caller).
pub(crate) fn write_clean_marker(dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_MARKER);
    let f = File::create(&path).map_err(io_error("create", &path))?;
    f.sync_all().map_err(io_error("fsync", &path))
}

/// Removes the marker if present; true if it was there.
pub(crate) fn take_clean_marker(dir: &Path) -> Result<bool> {
    let path = dir.join(CLEAN_MARKER);
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint {
            recovery_point: 42,
            log_start: 7,
        };
        write(dir.path(), &cp).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(cp));
        let p = dir.path().join(CHECKPOINT_FILE);
        let mut b = fs::read(&p).unwrap();
        b[15] ^= 1;
        fs::write(&p, &b).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }
}
