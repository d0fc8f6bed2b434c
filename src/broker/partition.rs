//! One partition: its log behind a lock, its group-commit handle and a
//! watch on its end offset that wakes long-polling fetches.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use strom_storage::{AppendInfo, Log, LogConfig, Offset, ReadData, StorageError, Syncer};
use tokio::sync::watch;
use tracing::error;

use super::BrokerError;

/// A partition of a topic. Appends and reads take the log lock briefly;
/// waiting for durability does not hold it.
pub struct Partition {
    pub index: i32,
    dir: PathBuf,
    /// None once the topic is deleted or the broker shut down.
    log: Mutex<Option<Log>>,
    syncer: Syncer,
    end_offset: watch::Sender<Offset>,
}

impl Partition {
    /// Opens (recovering if needed) the partition's log in `dir`.
    pub fn open(index: i32, dir: PathBuf, config: LogConfig) -> Result<Partition, BrokerError> {
        let log = Log::open(&dir, config)?;
        let syncer = log.syncer();
        let (end_offset, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            index,
            dir,
            log: Mutex::new(Some(log)),
            syncer,
            end_offset,
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Option<Log>>, BrokerError> {
        // A panic while holding the log could have left it half-updated:
        // treat the partition as offline rather than serve it.
        self.log.lock().map_err(|_| {
            BrokerError::Storage(StorageError::Offline {
                path: self.dir.clone(),
            })
        })
    }

    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, BrokerError> {
        let mut guard = self.lock()?;
        let log = guard.as_mut().ok_or(BrokerError::UnknownTopicOrPartition)?;
        f(log).map_err(BrokerError::from)
    }

    /// Validates and appends producer batches; wakes waiting fetches.
    pub fn append(&self, batches: &[u8]) -> Result<AppendInfo, BrokerError> {
        let info = self.with_log(|log| log.append(batches))?;
        self.end_offset.send_replace(info.log_end_offset);
        Ok(info)
    }

    pub fn read(&self, offset: Offset, max_bytes: usize) -> Result<ReadData, BrokerError> {
        self.with_log(|log| log.read(offset, max_bytes))
    }

    /// (log start offset, log end offset).
    pub fn offsets(&self) -> Result<(Offset, Offset), BrokerError> {
        self.with_log(|log| Ok((log.log_start_offset(), log.log_end_offset())))
    }

    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>, BrokerError> {
        self.with_log(|log| log.offset_for_timestamp(ts))
    }

    /// Runs `f` on the log (maintenance: retention, rolling, config).
    pub fn maintain<T>(
        &self,
        f: impl FnOnce(&mut Log) -> Result<T, StorageError>,
    ) -> Result<T, BrokerError> {
        self.with_log(f)
    }

    /// A receiver that sees every change of the end offset from now on.
    pub fn watch_end(&self) -> watch::Receiver<Offset> {
        self.end_offset.subscribe()
    }

    /// Waits until everything below `offset` is fsynced (group commit).
    pub async fn wait_durable(&self, offset: Offset) -> Result<(), BrokerError> {
        let syncer = self.syncer.clone();
        tokio::task::spawn_blocking(move || syncer.wait_durable(offset))
            .await
            .map_err(|e| BrokerError::Internal(format!("flush task failed: {e}")))?
            .map_err(BrokerError::from)
    }

    /// Makes everything appended so far durable without holding the lock
    /// during the fsync.
    pub fn flush_blocking(&self) -> Result<(), BrokerError> {
        let end = self.offsets()?.1;
        self.syncer.wait_durable(end).map_err(BrokerError::from)
    }

    /// Closes the log cleanly (flush, checkpoint, clean-shutdown marker).
    pub fn close(&self) -> Result<(), BrokerError> {
        let log = self.lock()?.take();
        match log {
            Some(log) => log.close().map_err(|e| {
                error!(dir = %self.dir.display(), cause = %e, "closing partition failed");
                BrokerError::from(e)
            }),
            None => Ok(()),
        }
    }

    /// Detaches the log so no request can reach it any more (topic deletion).
    pub fn detach(&self) -> Option<Log> {
        self.lock().ok().and_then(|mut guard| guard.take())
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}
