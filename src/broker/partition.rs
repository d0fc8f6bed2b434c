//! One partition: its log behind a lock, its idempotent-producer state
//! checked under the same lock, its group-commit handle and a watch on its
//! end offset that wakes long-polling fetches.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use strom_storage::batch::{self, BatchIter};
use strom_storage::{Log, LogConfig, Offset, ReadData, StorageError, Syncer};
use tokio::sync::watch;
use tracing::{debug, error, info};

use super::flusher::Flusher;
use super::producer_state::{self, ProducerError, ProducerStates, Verdict};
use super::{metadata, now_ms, BrokerError};

/// What a produce to one partition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    /// Offset of the first record (the original one for a duplicate).
    pub base_offset: Offset,
    /// The acknowledgement holds once everything below this is durable.
    pub durable_at: Offset,
    /// An exact retry of a stored batch: nothing was appended.
    pub duplicate: bool,
}

/// A partition of a topic. Appends and reads take the log lock briefly;
/// waiting for durability does not hold it.
pub struct Partition {
    pub index: i32,
    dir: PathBuf,
    /// None once the topic is deleted or the broker shut down.
    log: Mutex<Option<Log>>,
    /// Idempotent-producer state. Lock order: `snapshot_at`, `log`,
    /// `producers`; a check and its append happen under both of the last
    /// two, so they are atomic.
    producers: Mutex<ProducerStates>,
    /// Log end offset covered by the last snapshot written; held while a
    /// snapshot is written.
    snapshot_at: Mutex<Offset>,
    syncer: Syncer,
    flusher: Flusher,
    end_offset: watch::Sender<Offset>,
}

impl Partition {
    /// Opens (recovering if needed) the partition's log in `dir`.
    pub fn open(index: i32, dir: PathBuf, config: LogConfig) -> Result<Partition, BrokerError> {
        let log = Log::open(&dir, config)?;
        let (producers, scanned_from) = ProducerStates::load(&dir, &log, now_ms())?;
        if !producers.is_empty() {
            info!(dir = %dir.display(), producers = producers.len(), scanned_from,
                log_end = log.log_end_offset(), "producer state loaded");
        }
        let syncer = log.syncer();
        let (end_offset, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            index,
            dir,
            log: Mutex::new(Some(log)),
            producers: Mutex::new(producers),
            snapshot_at: Mutex::new(-1),
            flusher: Flusher::new(syncer.clone()),
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

    fn lock_producers(&self) -> Result<MutexGuard<'_, ProducerStates>, BrokerError> {
        self.producers.lock().map_err(|_| {
            BrokerError::Storage(StorageError::Offline {
                path: self.dir.clone(),
            })
        })
    }

    /// Validates and appends producer batches; wakes waiting fetches.
    ///
    /// A batch with a producer id is first checked against the producer
    /// state (DESIGN.md section 8) under the log's lock: an exact retry of
    /// one of the producer's last 5 batches is answered with its original
    /// offsets and not stored again.
    pub fn append(&self, batches: &[u8]) -> Result<Produced, BrokerError> {
        let mut guard = self.lock()?;
        let log = guard.as_mut().ok_or(BrokerError::UnknownTopicOrPartition)?;
        // A cheap look at the headers (no CRC): log.append validates fully.
        let mut iter = BatchIter::new(batches, false);
        let headers: Vec<_> = iter.by_ref().map(|b| b.header).collect();
        let sound = iter.stop().is_none();
        if let Some(h) = headers.iter().find(|h| h.is_transactional()) {
            return Err(ProducerError::Transactional(format!(
                "transactional batch from producer {}",
                h.producer_id
            ))
            .into());
        }
        let idempotent = sound && headers.iter().any(|h| h.producer_id >= 0);
        if !idempotent {
            let info = log.append(batches)?;
            self.end_offset.send_replace(info.log_end_offset);
            return Ok(Produced {
                base_offset: info.base_offset,
                durable_at: info.log_end_offset,
                duplicate: false,
            });
        }
        // Kafka requires exactly one batch per partition from v3 on.
        let [h] = headers.as_slice() else {
            return Err(StorageError::InvalidRecord(format!(
                "expected one record batch per partition from an idempotent producer, found {}",
                headers.len()
            ))
            .into());
        };
        let mut producers = self.lock_producers()?;
        match producers.check(h)? {
            Verdict::Duplicate(original) => {
                // Only a sound batch may be called a duplicate.
                batch::validate(batches, log.config().max_message_bytes as usize)?;
                debug!(
                    producer_id = h.producer_id,
                    epoch = h.producer_epoch,
                    sequence = h.base_sequence,
                    base_offset = original.base_offset,
                    "duplicate batch answered with its original offsets"
                );
                Ok(Produced {
                    base_offset: original.base_offset,
                    durable_at: original.last_offset() + 1,
                    duplicate: true,
                })
            }
            Verdict::Append => {
                let info = log.append(batches)?;
                producers.record(h, info.base_offset, now_ms());
                drop(producers);
                self.end_offset.send_replace(info.log_end_offset);
                Ok(Produced {
                    base_offset: info.base_offset,
                    durable_at: info.log_end_offset,
                    duplicate: false,
                })
            }
        }
    }

    /// Writes the producer state snapshot if the log moved since the last
    /// one, after forgetting idle producers. The table and the end offset
    /// it covers are taken together under the log's lock; the file is
    /// written outside it (temp file, fsync, rename, fsync dir). Blocking.
    pub fn snapshot_producers(&self) -> Result<(), BrokerError> {
        // Held across the write: one snapshot writer at a time (the
        // periodic task and close share the temp file name).
        let mut written_at = self.lock_snapshot()?;
        let (bytes, covers) = {
            let guard = self.lock()?;
            let log = guard.as_ref().ok_or(BrokerError::UnknownTopicOrPartition)?;
            let end = log.log_end_offset();
            let mut producers = self.lock_producers()?;
            let expired = producers.expire(now_ms(), producer_state::PRODUCER_ID_EXPIRATION_MS);
            if expired > 0 {
                info!(dir = %self.dir.display(), expired, "expired idle producer ids");
            }
            if *written_at == end && expired == 0 {
                return Ok(());
            }
            (producer_state::encode_snapshot(&producers, end), end)
        };
        self.write_snapshot(&bytes)?;
        *written_at = covers;
        Ok(())
    }

    /// Lock order: `snapshot_at`, then `log`, then `producers`.
    fn lock_snapshot(&self) -> Result<MutexGuard<'_, Offset>, BrokerError> {
        self.snapshot_at
            .lock()
            .map_err(|_| BrokerError::Internal("producer snapshot lock poisoned".into()))
    }

    fn write_snapshot(&self, bytes: &[u8]) -> Result<(), BrokerError> {
        let path = self.dir.join(producer_state::SNAPSHOT_FILE);
        metadata::write_atomic(&path, bytes)?;
        Ok(())
    }

    /// Batches from `offset`. A partition whose flush failed serves nothing
    /// (KAFKA_STORAGE_ERROR): what it holds past the last good flush may
    /// have holes.
    ///
    /// Every batch is checked against its CRC-32C before it is served (after
    /// the lock is released): bytes damaged on disk are reported with where
    /// they are and never handed to a client. Batches before the damage are
    /// served; a read that starts at it fails with CORRUPT_MESSAGE.
    pub fn read(&self, offset: Offset, max_bytes: usize) -> Result<ReadData, BrokerError> {
        let mut data = self.with_log(|log| {
            if log.is_offline() {
                return Err(StorageError::Offline {
                    path: log.dir().to_path_buf(),
                });
            }
            log.read(offset, max_bytes)
        })?;
        let mut scan = BatchIter::new(&data.records, true);
        scan.by_ref().for_each(drop);
        if let Some(stop) = scan.stop() {
            let at = stop.position;
            let damaged_offset = data
                .records
                .get(at..at + 8)
                .map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()));
            error!(
                dir = %self.dir.display(),
                read_from = offset,
                damaged_batch_offset = ?damaged_offset,
                good_bytes = at,
                reason = %stop.reason,
                "damaged batch in the log; not serving it (run `strom log verify`)"
            );
            if at == 0 {
                return Err(BrokerError::CorruptLog(format!(
                    "the batch at offset {offset} in {} is damaged: {}",
                    self.dir.display(),
                    stop.reason
                )));
            }
            data.records = data.records.slice(..at);
        }
        Ok(data)
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
        self.flusher.wait_durable(offset).await
    }

    /// Makes everything appended so far durable without holding the lock
    /// during the fsync.
    pub fn flush_blocking(&self) -> Result<(), BrokerError> {
        let end = self.offsets()?.1;
        self.syncer.wait_durable(end).map_err(BrokerError::from)
    }

    /// Closes the log cleanly (flush, checkpoint, clean-shutdown marker).
    pub fn close(&self) -> Result<(), BrokerError> {
        // Waits for a periodic snapshot in progress (lock order).
        let written_at = self.lock_snapshot();
        let mut guard = self.lock()?;
        if let Some(log) = guard.as_ref() {
            // The snapshot only saves the next startup a scan of the log
            // tail; failing to write it must not stop the log's own close.
            let written = written_at.and_then(|_held| {
                let producers = self.lock_producers()?;
                let bytes = producer_state::encode_snapshot(&producers, log.log_end_offset());
                drop(producers);
                self.write_snapshot(&bytes)
            });
            if let Err(e) = written {
                error!(dir = %self.dir.display(), cause = %e, "writing the producer snapshot failed; the next start rescans the log tail");
            }
        }
        let log = guard.take();
        drop(guard);
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
