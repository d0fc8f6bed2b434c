//! Every `unsafe` of the crate: memory maps of segment and index files, and
//! fallocate (index files, so writes through their maps cannot fault; the
//! active log, so appends skip block allocation).
//!
//! The rule that makes the maps sound (also stated on [`crate::Log::truncate_to`]):
//! a file is never truncated below a byte that a live map may still be asked
//! for. Sealed `.log` files are only ever unlinked (a live map keeps the inode);
//! the active `.log` is truncated only by recovery (before any map exists), by
//! rolling back a failed append (to the old end, which is past every byte any
//! reader can reach), or by `truncate_to` when no `Bytes` views any map of
//! that file, old or current (counted by a per-file reader token; otherwise
//! it copies the kept prefix to a new file renamed over the old one). Index maps are private to
//! their segment and dropped before their file is trimmed.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use memmap2::{Advice, Mmap, MmapMut, MmapOptions};

/// A read-only shared map of the first `len` bytes of `file`; `len` may
/// exceed the file's size (the kernel allows it; touching a page wholly past
/// EOF would SIGBUS, and readers only touch bytes below the written length).
pub(crate) fn map_read(file: &File, len: usize) -> io::Result<Mmap> {
    // SAFETY: the map is read-only and only read below the segment's written
    // length. strom never truncates a `.log` file below a byte a live map may
    // be asked for: sealed segments are unlinked, never truncated, and the
    // active one is truncated only when its map is unshared or to a length
    // past every reachable byte (see the module docs). Other processes must
    // not modify the data directory while the broker runs.
    unsafe { MmapOptions::new().len(len).map(file) }
}

/// A read-write shared map of the whole of `file` (an index file that has
/// been preallocated with [`preallocate`]).
pub(crate) fn map_write(file: &File) -> io::Result<MmapMut> {
    // SAFETY: index files belong to their segment alone. The map is created
    // after the file reached its full length with blocks allocated
    // (`preallocate`), so writes through it need no new blocks and cannot
    // fault on a full disk; the file is only trimmed after this map is
    // dropped (`IndexFile::trim` drops it first).
    let map = unsafe { MmapOptions::new().map_mut(file) }?;
    // Entries are written one page at a time: without this, each first
    // touch reads ahead (zero-fills) pages far beyond it.
    map.advise(Advice::Random)?;
    Ok(map)
}

/// Allocates disk blocks for the first `len` bytes of `file` (growing it),
/// so later writes through a map into them cannot hit disk-full (which would
/// be a SIGBUS, not an error). Falls back to writing zeros where the
/// filesystem has no fallocate.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let off_len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length overflows off_t"))?;
    // SAFETY: plain FFI call on a descriptor `file` owns for the whole call;
    // posix_fallocate touches no Rust memory.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, off_len) };
    match rc {
        0 => Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL => {
            let current = file.metadata()?.len();
            let zeros = vec![0u8; 64 * 1024];
            let mut at = current;
            while at < len {
                let n = (len - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            Ok(())
        }
        err => Err(io::Error::from_raw_os_error(err)),
    }
}

/// Reserves disk blocks for `len` bytes from `offset` without changing the
/// file's size (`FALLOC_FL_KEEP_SIZE`): later writes there skip block
/// allocation, a full disk shows up here as ENOSPC before anything is
/// written, and recovery still sees the file end at the last written byte.
/// `Unsupported` where the filesystem or OS cannot do it.
#[cfg(target_os = "linux")]
pub(crate) fn reserve(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range overflows off_t",
        ));
    };
    // SAFETY: plain FFI call on a descriptor `file` owns for the whole call;
    // fallocate touches no Rust memory and never shrinks the file.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, n) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            Err(io::Error::new(io::ErrorKind::Unsupported, e))
        }
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn reserve(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "no fallocate"))
}
