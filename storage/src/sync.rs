//! Group commit: the state the log shares with its [`Syncer`] handles, so
//! that many threads waiting for durability share one fdatasync.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tracing::error;

use crate::{Offset, Result, StorageError};

pub(crate) struct SyncState {
    /// Log end offset: everything below it has been written to the file.
    pub(crate) appended: Offset,
    /// Everything below it is on disk.
    pub(crate) durable: Offset,
    flushing: bool,
    /// The active segment's log file.
    pub(crate) file: Arc<File>,
    /// Sealed segments whose log has not been fdatasynced yet (a roll hands
    /// its sealed file here instead of syncing under the log's lock; the
    /// next flush syncs them first). Oldest first.
    pub(crate) pending: Vec<Pending>,
    pub(crate) path: PathBuf,
    pub(crate) offline: bool,
}

/// A sealed segment's log file awaiting its fdatasync.
#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) base: Offset,
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
}

pub(crate) struct SyncShared {
    state: Mutex<SyncState>,
    flushed: Condvar,
    fdatasyncs: AtomicU64,
    dir: PathBuf,
}

impl SyncShared {
    pub(crate) fn new(
        dir: PathBuf,
        file: Arc<File>,
        path: PathBuf,
        end: Offset,
    ) -> Arc<SyncShared> {
        Arc::new(SyncShared {
            state: Mutex::new(SyncState {
                appended: end,
                durable: end,
                flushing: false,
                file,
                pending: Vec::new(),
                path,
                offline: false,
            }),
            flushed: Condvar::new(),
            fdatasyncs: AtomicU64::new(0),
            dir,
        })
    }

    /// The state, even if a thread panicked while holding it (the fields are
    /// plain values that stay consistent).
    pub(crate) fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn offline_error(&self) -> StorageError {
        StorageError::Offline {
            path: self.dir.clone(),
        }
    }

    /// Marks the log offline (after a failed flush or a failed rollback).
    pub(crate) fn set_offline(&self) {
        self.lock().offline = true;
        self.flushed.notify_all();
    }

    /// Makes every record below `offset` durable (clamped to what has been
    /// appended): returns at once if it already is, waits for a running
    /// flush and re-checks, or else runs the flush itself for everything
    /// appended so far.
    pub(crate) fn sync_to(&self, offset: Offset) -> Result<()> {
        let mut st = self.lock();
        loop {
            if st.offline {
                return Err(self.offline_error());
            }
            if st.durable >= offset.min(st.appended) {
                return Ok(());
            }
            if st.flushing {
                st = self.flushed.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.flushing = true;
            let end = st.appended;
            let mut files = st.pending.clone();
            files.push(Pending {
                base: Offset::MAX,
                file: Arc::clone(&st.file),
                path: st.path.clone(),
            });
            drop(st);
            let result = self.sync_files(&files);
            st = self.lock();
            st.flushing = false;
            match result {
                Ok(()) => {
                    st.durable = st.durable.max(end);
                    st.pending
                        .retain(|p| files.iter().all(|f| f.base != p.base));
                    self.flushed.notify_all();
                }
                Err((path, e)) => {
                    error!(path = %path.display(), cause = %e, "fdatasync failed; taking the partition offline");
                    st.offline = true;
                    self.flushed.notify_all();
                    return Err(StorageError::Io {
                        op: "fdatasync",
                        path,
                        source: e,
                    });
                }
            }
        }
    }

    /// fdatasync of each file in order; the first failure with its path.
    fn sync_files(&self, files: &[Pending]) -> std::result::Result<(), (PathBuf, std::io::Error)> {
        for f in files {
            self.fdatasyncs.fetch_add(1, Ordering::Relaxed);
            f.file.sync_data().map_err(|e| (f.path.clone(), e))?;
        }
        Ok(())
    }

    /// Syncs the sealed segments handed over by earlier rolls now (called
    /// at the next roll, so at most one sealed segment is ever unsynced and
    /// recovery never scans more than two). A failure takes the log offline.
    pub(crate) fn sync_pending(&self) -> Result<()> {
        let files = self.lock().pending.clone();
        if files.is_empty() {
            return Ok(());
        }
        match self.sync_files(&files) {
            Ok(()) => {
                self.lock()
                    .pending
                    .retain(|p| files.iter().all(|f| f.base != p.base));
                Ok(())
            }
            Err((path, e)) => {
                error!(path = %path.display(), cause = %e, "fdatasync of a sealed segment failed; taking the partition offline");
                self.set_offline();
                Err(StorageError::Io {
                    op: "fdatasync",
                    path,
                    source: e,
                })
            }
        }
    }

    /// Base of the oldest sealed segment not yet synced.
    pub(crate) fn oldest_pending(&self) -> Option<Offset> {
        self.lock().pending.first().map(|p| p.base)
    }

    pub(crate) fn fdatasyncs(&self) -> u64 {
        self.fdatasyncs.load(Ordering::Relaxed)
    }
}

/// Group commit handle, cheap to clone, Send + Sync. Use it without holding
/// the log's lock.
#[derive(Clone)]
pub struct Syncer {
    pub(crate) shared: Arc<SyncShared>,
}

impl Syncer {
    /// Blocks until every record below `offset` is durable. One flush serves
    /// every waiter whose offset was appended before it started. An `offset`
    /// beyond the log end waits only for what has been appended. Errors: the
    /// waiter whose fdatasync failed gets `Io` with the cause; every later
    /// call gets `Offline`.
    pub fn wait_durable(&self, offset: Offset) -> Result<()> {
        self.shared.sync_to(offset)
    }

    /// Everything below this offset is durable.
    pub fn durable_offset(&self) -> Offset {
        self.shared.lock().durable
    }

    /// fdatasync calls made by group commit (for tests and metrics).
    pub fn fdatasync_count(&self) -> u64 {
        self.shared.fdatasyncs()
    }

    /// True once a flush failed: the log refuses appends until reopened.
    pub fn is_offline(&self) -> bool {
        self.shared.lock().offline
    }
}
