//! Topics and partitions, their durable metadata, and the background work
//! (interval flushes, retention) that keeps their logs in shape.

mod flusher;
pub mod groups;
mod metadata;
mod partition;
pub mod producer_ids;
pub mod producer_state;
pub mod topic_config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use strom_storage::{FlushMode, LogConfig, StorageError};
use tracing::{error, info, warn};

use crate::config::Config;
use metadata::MetadataStore;
pub use metadata::{MetadataError, TopicRecord};
pub use partition::{Partition, Produced};
pub use producer_ids::InitRequest;
pub use producer_state::ProducerError;
pub use topic_config::{ConfigEntry, ConfigSource, ConfigType, TopicConfigs};

/// Errors of the broker layer; `server::errors` maps them to Kafka codes.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// A broker limit (`topics.max_partitions`) refuses the request.
    #[error("{0}")]
    PolicyViolation(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Stored bytes failed their CRC on the way out.
    #[error("{0}")]
    CorruptLog(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error("{0}")]
    InvalidProducerEpoch(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A topic: its identity, config overrides and partitions.
pub struct Topic {
    pub name: String,
    pub id: uuid::Uuid,
    pub configs: TopicConfigs,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id.to_string(),
            partitions: self.partitions.len() as i32,
            configs: self.configs.clone(),
        }
    }
}

/// What CreateTopics asks for, after decoding.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1 = the broker's num_partitions.
    pub partitions: i32,
    /// -1 or 1 on a single broker.
    pub replication_factor: i16,
    pub configs: Vec<(String, Option<String>)>,
}

/// The broker: every topic, the durable metadata, and the configuration.
pub struct Broker {
    pub config: Config,
    /// Consumer groups and their committed offsets.
    pub groups: groups::GroupCoordinator,
    /// InitProducerId: producer ids from a durable high-water mark.
    pub producer_ids: producer_ids::ProducerIds,
    data_dir: PathBuf,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Serializes topic creation and deletion and owns the metadata file.
    store: Mutex<MetadataStore>,
    /// Held (flock) for the broker's lifetime: one broker per data dir.
    _lock: std::fs::File,
}

/// Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let bad = |why: &str| Err(BrokerError::InvalidTopic(format!("{name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("is not allowed");
    }
    if name.len() > 249 {
        return bad("is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Takes an exclusive lock on `<data>/.lock`, so a second broker on the
/// same data dir fails at startup instead of corrupting the first one's logs.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, BrokerError> {
    let path = data_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| MetadataError::Io {
            op: "open lock file",
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BrokerError::Internal(format!(
            "data dir {} is in use by another strom process",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(source)) => Err(MetadataError::Io {
            op: "lock",
            path,
            source,
        }
        .into()),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Broker {
    /// Opens the data dir, loading and recovering every persisted topic.
    pub fn open(config: Config) -> Result<Broker, BrokerError> {
        let data_dir = config.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| MetadataError::Io {
            op: "create data dir",
            path: data_dir.clone(),
            source,
        })?;
        let lock = lock_data_dir(&data_dir)?;
        let store = MetadataStore::open(&data_dir)?;
        let mut topics = BTreeMap::new();
        for record in store.load()? {
            let topic = Self::open_topic(&config, &data_dir, &record)?;
            topics.insert(record.name.clone(), Arc::new(topic));
        }
        let groups = groups::GroupCoordinator::open(
            &data_dir.join("meta"),
            config.groups.clone(),
            now_ms(),
        )?;
        let producer_ids = producer_ids::ProducerIds::open(&data_dir.join("meta"))?;
        info!(data_dir = %data_dir.display(), topics = topics.len(), "data dir opened");
        Ok(Broker {
            groups,
            producer_ids,
            config,
            data_dir,
            topics: RwLock::new(topics),
            store: Mutex::new(store),
            _lock: lock,
        })
    }

    fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
        data_dir.join(format!("{topic}-{index}"))
    }

    fn open_topic(
        config: &Config,
        data_dir: &Path,
        record: &TopicRecord,
    ) -> Result<Topic, BrokerError> {
        let log_config = record
            .configs
            .log_config(&config.log)
            .map_err(BrokerError::InvalidConfig)?;
        let partitions =
            Self::open_partitions(data_dir, &record.name, 0..record.partitions, &log_config)?;
        let id = uuid::Uuid::parse_str(&record.id).map_err(|e| {
            BrokerError::Internal(format!("topic {} has a bad id: {e}", record.name))
        })?;
        Ok(Topic {
            name: record.name.clone(),
            id,
            configs: record.configs.clone(),
            partitions,
        })
    }

    /// Opens (creating if missing) partitions `range` of topic `name`.
    fn open_partitions(
        data_dir: &Path,
        name: &str,
        range: std::ops::Range<i32>,
        log_config: &LogConfig,
    ) -> Result<Vec<Arc<Partition>>, BrokerError> {
        range
            .map(|i| {
                let dir = Self::partition_dir(data_dir, name, i);
                Partition::open(i, dir, log_config.clone()).map(Arc::new)
            })
            .collect()
    }

    /// The metadata store, which also serializes topic creation, deletion
    /// and config changes.
    fn lock_store(&self) -> Result<std::sync::MutexGuard<'_, MetadataStore>, BrokerError> {
        self.store
            .lock()
            .map_err(|_| BrokerError::Internal("metadata lock poisoned".into()))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().ok()?.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .ok()?
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Result<Arc<Partition>, BrokerError> {
        self.topic(topic)
            .and_then(|t| t.partition(index).cloned())
            .ok_or(BrokerError::UnknownTopicOrPartition)
    }

    /// Checks a CreateTopics entry and returns the effective partition count
    /// and configs, without creating anything.
    pub fn validate_new_topic(&self, new: &NewTopic) -> Result<(i32, TopicConfigs), BrokerError> {
        validate_topic_name(&new.name)?;
        let partitions = match new.partitions {
            -1 => self.config.topics.num_partitions,
            n if n >= 1 => n,
            n => {
                return Err(BrokerError::InvalidPartitions(format!(
                    "number of partitions must be at least 1 (or -1 for the default), found {n}"
                )))
            }
        };
        if !matches!(new.replication_factor, -1 | 1) {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "replication factor {} is larger than the 1 available broker",
                new.replication_factor
            )));
        }
        let configs = TopicConfigs::from_pairs(
            new.configs.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            &self.config.log,
        )
        .map_err(BrokerError::InvalidConfig)?;
        if self.topic(&new.name).is_some() {
            return Err(BrokerError::TopicAlreadyExists(new.name.clone()));
        }
        self.check_partition_budget(partitions)?;
        Ok((partitions, configs))
    }

    /// Refuses `adding` partitions that would take the broker past
    /// `topics.max_partitions`.
    fn check_partition_budget(&self, adding: i32) -> Result<(), BrokerError> {
        let held: i64 = self
            .topics()
            .iter()
            .map(|t| t.partitions.len() as i64)
            .sum();
        let max = i64::from(self.config.topics.max_partitions);
        if held + i64::from(adding) > max {
            return Err(BrokerError::PolicyViolation(format!(
                "{adding} more partition(s) would exceed topics.max_partitions = {max} \
                 (the broker holds {held})"
            )));
        }
        Ok(())
    }

    /// Creates a topic: its partition logs first, then the metadata
    /// (durably) that names it. Blocking: call from a blocking context.
    pub fn create_topic(&self, new: &NewTopic) -> Result<Arc<Topic>, BrokerError> {
        let store = self.lock_store()?;
        let (partitions, configs) = self.validate_new_topic(new)?;
        self.remove_leftover_dirs(&new.name, 0..partitions)?;
        let record = TopicRecord {
            name: new.name.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            partitions,
            configs,
        };
        // Partitions before metadata: if one cannot be created (a full
        // disk), the rest are removed and the metadata never names the
        // topic, so no restart trips over it. A crash in between leaves
        // dirs the next topic of this name clears.
        let topic = Self::open_topic(&self.config, &self.data_dir, &record)
            .map_err(|e| self.undo_partitions(&new.name, 0..partitions, e))?;
        let mut records: Vec<TopicRecord> = self.topics().iter().map(|t| t.record()).collect();
        records.push(record.clone());
        let topic = self
            .commit_new_partitions(&new.name, 0..partitions, topic, || Ok(store.save(records)?))?;
        let topic = Arc::new(topic);
        self.install(topic.clone())?;
        info!(topic = %new.name, partitions, "topic created");
        Ok(topic)
    }

    /// Returns the topic, creating it with defaults when allowed.
    pub fn get_or_create_topic(&self, name: &str) -> Result<Arc<Topic>, BrokerError> {
        if let Some(topic) = self.topic(name) {
            return Ok(topic);
        }
        let new = NewTopic {
            name: name.to_string(),
            partitions: -1,
            replication_factor: -1,
            configs: Vec::new(),
        };
        match self.create_topic(&new) {
            Err(BrokerError::TopicAlreadyExists(_)) => {
                self.topic(name).ok_or(BrokerError::UnknownTopicOrPartition)
            }
            other => other,
        }
    }

    /// Deletes a topic: forgets it durably, then removes its data from disk.
    /// Blocking: call from a blocking context.
    pub fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        let store = self.lock_store()?;
        let topic = self
            .topic(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let records: Vec<TopicRecord> = self
            .topics()
            .iter()
            .filter(|t| t.name != name)
            .map(|t| t.record())
            .collect();
        store.save(records)?;
        self.topics
            .write()
            .map_err(|_| BrokerError::Internal("topics lock poisoned".into()))?
            .remove(name);
        for partition in &topic.partitions {
            // Readers may still hold views of the maps; unlinking is safe.
            drop(partition.detach());
            std::fs::remove_dir_all(partition.dir()).map_err(|source| MetadataError::Io {
                op: "remove partition dir",
                path: partition.dir().to_path_buf(),
                source,
            })?;
        }
        metadata::sync_dir(&self.data_dir)?;
        if let Err(e) = self.groups.remove_topic(name, now_ms()) {
            error!(topic = %name, cause = %e, "dropping the deleted topic's committed offsets failed");
        }
        info!(topic = %name, "topic deleted");
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`, back to the broker default) topic
    /// config overrides: validated, persisted, then applied to every partition's
    /// log. Blocking: call from a blocking context.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), BrokerError> {
        let store = self.lock_store()?;
        let topic = self
            .topic(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let mut merged = topic.configs.0.clone();
        for (key, value) in changes {
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        let configs = TopicConfigs::from_pairs(
            merged.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
            &self.config.log,
        )
        .map_err(BrokerError::InvalidConfig)?;
        let log_config = configs
            .log_config(&self.config.log)
            .map_err(BrokerError::InvalidConfig)?;
        let altered = Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            configs,
            partitions: topic.partitions.clone(),
        });
        self.save_replacing(&store, altered.record())?;
        for partition in &altered.partitions {
            partition.maintain(|log| {
                log.set_config(log_config.clone());
                Ok(())
            })?;
        }
        self.install(altered)?;
        info!(topic = %name, "topic configs altered");
        Ok(())
    }

    /// Raises a topic's partition count to `count` (CreatePartitions). The
    /// count can only grow; existing partitions and their data stay as they
    /// are, so keys may map to other partitions from now on. The new
    /// partitions' logs are created before the metadata (saved durably)
    /// counts them; if one fails, the others are removed. With
    /// `validate_only`, nothing changes. Blocking: call from a blocking
    /// context.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), BrokerError> {
        let store = self.lock_store()?;
        let topic = self
            .topic(name)
            .ok_or(BrokerError::UnknownTopicOrPartition)?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {current} partitions and can only grow; {count} is not more"
            )));
        }
        self.check_partition_budget(count - current)?;
        if validate_only {
            return Ok(());
        }
        self.remove_leftover_dirs(name, current..count)?;
        let log_config = topic
            .configs
            .log_config(&self.config.log)
            .map_err(BrokerError::InvalidConfig)?;
        // New partitions before metadata, as in create_topic.
        let added = Self::open_partitions(&self.data_dir, name, current..count, &log_config)
            .map_err(|e| self.undo_partitions(name, current..count, e))?;
        let record = TopicRecord {
            partitions: count,
            ..topic.record()
        };
        let added = self.commit_new_partitions(name, current..count, added, || {
            self.save_replacing(&store, record)
        })?;
        self.install(Arc::new(Topic {
            name: topic.name.clone(),
            id: topic.id,
            configs: topic.configs.clone(),
            partitions: topic.partitions.iter().cloned().chain(added).collect(),
        }))?;
        info!(topic = %name, from = current, to = count, "partitions added");
        Ok(())
    }

    /// Deletes the records below `offset` (-1: all of them) in one partition
    /// (DeleteRecords) and returns its new log start, durable on return.
    /// Blocking: call from a blocking context.
    pub fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<i64, BrokerError> {
        self.partition(topic, partition)?
            .maintain(|log| log.delete_records_before(offset))
    }

    /// Partition dirs in `range` left by an earlier topic of this name (a
    /// crash during its deletion): removed, so they are not resurrected as
    /// the new partitions' data.
    fn remove_leftover_dirs(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
    ) -> Result<(), BrokerError> {
        for i in range {
            let dir = Self::partition_dir(&self.data_dir, name, i);
            if dir.exists() {
                warn!(dir = %dir.display(), "removing leftover partition dir of a deleted topic");
                std::fs::remove_dir_all(&dir).map_err(|source| MetadataError::Io {
                    op: "remove leftover dir",
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Saves (`save`) the metadata that names the just created partitions
    /// `range` of `name`, whose logs `opened` holds, after making their
    /// dirs' entries durable. If either fails, the logs are closed and the
    /// dirs removed.
    fn commit_new_partitions<T>(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
        opened: T,
        save: impl FnOnce() -> Result<(), BrokerError>,
    ) -> Result<T, BrokerError> {
        match metadata::sync_dir(&self.data_dir)
            .map_err(BrokerError::from)
            .and_then(|()| save())
        {
            Ok(()) => Ok(opened),
            Err(e) => {
                drop(opened);
                Err(self.undo_partitions(name, range, e))
            }
        }
    }

    /// After a failed creation: removes the dirs of partitions `range` of
    /// `name` (their logs are closed by now) and returns `cause`, the error
    /// to report.
    fn undo_partitions(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
        cause: BrokerError,
    ) -> BrokerError {
        for i in range {
            let dir = Self::partition_dir(&self.data_dir, name, i);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    error!(dir = %dir.display(), cause = %e, "removing a partition dir after a failed creation failed");
                }
            }
        }
        warn!(topic = %name, cause = %cause, "partition creation failed; removed what it created");
        cause
    }

    /// Saves every topic's record, with `record` in place of its topic's.
    fn save_replacing(
        &self,
        store: &MetadataStore,
        record: TopicRecord,
    ) -> Result<(), BrokerError> {
        let records = self
            .topics()
            .iter()
            .map(|t| {
                if t.name == record.name {
                    record.clone()
                } else {
                    t.record()
                }
            })
            .collect();
        Ok(store.save(records)?)
    }

    /// Makes `topic` the one requests see under its name.
    fn install(&self, topic: Arc<Topic>) -> Result<(), BrokerError> {
        self.topics
            .write()
            .map_err(|_| BrokerError::Internal("topics lock poisoned".into()))?
            .insert(topic.name.clone(), topic);
        Ok(())
    }

    /// Flushes every partition (interval flush). Blocking.
    pub fn flush_all(&self) {
        for topic in self.topics() {
            for p in &topic.partitions {
                if let Err(e) = p.flush_blocking() {
                    if !matches!(e, BrokerError::UnknownTopicOrPartition) {
                        error!(topic = %topic.name, partition = p.index, cause = %e, "interval flush failed");
                    }
                }
            }
        }
    }

    /// Rolls by age and applies retention on every partition. Blocking.
    pub fn maintain_all(&self) {
        let now = now_ms();
        for topic in self.topics() {
            for p in &topic.partitions {
                let result = p.maintain(|log| {
                    log.maybe_roll(now)?;
                    log.apply_retention(now)
                });
                match result {
                    Ok(0) | Err(BrokerError::UnknownTopicOrPartition) => {}
                    Ok(deleted) => {
                        info!(topic = %topic.name, partition = p.index, deleted, "retention deleted segments")
                    }
                    Err(e) => {
                        error!(topic = %topic.name, partition = p.index, cause = %e, "retention failed")
                    }
                }
            }
        }
    }

    /// Writes each partition's producer state snapshot (when its log moved)
    /// and expires idle producers, so a restart after kill -9 scans only
    /// the log written since. Blocking.
    pub fn snapshot_producers(&self) {
        for topic in self.topics() {
            for p in &topic.partitions {
                match p.snapshot_producers() {
                    Ok(()) | Err(BrokerError::UnknownTopicOrPartition) => {}
                    Err(e) => {
                        error!(topic = %topic.name, partition = p.index, cause = %e, "producer snapshot failed")
                    }
                }
            }
        }
    }

    /// Expires committed offsets of long-empty groups. Blocking.
    pub fn expire_offsets(&self) {
        match self.groups.expire_offsets(now_ms()) {
            Ok(0) => {}
            Ok(n) => info!(expired = n, "expired committed offsets of empty groups"),
            Err(e) => error!(cause = %e, "expiring committed offsets failed"),
        }
    }

    /// Whether an acks=-1 produce must wait for an fsync.
    pub fn acks_all_waits_for_flush(&self) -> bool {
        self.config.flush.mode == FlushMode::AcksAll
    }

    /// Closes every log cleanly. Blocking; returns whether all succeeded.
    pub fn shutdown(&self) -> bool {
        let mut ok = true;
        for topic in self.topics() {
            for p in &topic.partitions {
                ok &= p.close().is_ok();
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        let cases = [
            ("orders", true),
            ("a.b_c-D9", true),
            ("", false),
            (".", false),
            ("..", false),
            ("has space", false),
            ("slash/name", false),
            ("ünicode", false),
        ];
        for (name, ok) in cases {
            assert_eq!(validate_topic_name(name).is_ok(), ok, "case {name:?}");
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
