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
    /// The active segment's log file (sealed ones were synced at roll).
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    pub(crate) offline: bool,
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
            let file = Arc::clone(&st.file);
            let path = st.path.clone();
            drop(st);
            let result = file.sync_data();
            self.fdatasyncs.fetch_add(1, Ordering::Relaxed);
            st = self.lock();
            st.flushing = false;
            match result {
                Ok(()) => {
                    st.durable = st.durable.max(end);
                    self.flushed.notify_all();
                }
                Err(e) => {
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

    /// Records that everything below `offset` is durable (a roll synced it).
    pub(crate) fn mark_durable(&self, offset: Offset) {
        let mut st = self.lock();
        st.durable = st.durable.max(offset);
        drop(st);
        self.flushed.notify_all();
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
