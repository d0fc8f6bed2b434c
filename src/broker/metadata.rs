//! The broker's durable topic metadata: names, ids, partition counts and
//! config overrides, in one CRC-checked file replaced atomically.
//!
//! ```text
//! <data>/meta/topics.toml
//!   line 1   "# strom topics crc32=XXXXXXXX\n"   CRC-32 (crc32fast) of the body
//!   body     TOML: [[topic]] name, id, partitions, [topic.configs]
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::error;

use super::topic_config::TopicConfigs;

const HEADER_PREFIX: &str = "# strom topics crc32=";

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("topic metadata {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// One topic as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: String,
    pub partitions: i32,
    #[serde(default)]
    pub configs: TopicConfigs,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    #[serde(default, rename = "topic")]
    topics: Vec<TopicRecord>,
}

/// Reads and writes `<data>/meta/topics.toml`.
#[derive(Debug)]
pub struct MetadataStore {
    dir: PathBuf,
}

/// Logs an I/O failure with its cause and wraps it with what was done where.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> MetadataError + 'a {
    move |source| {
        error!(path = %path.display(), cause = %source, op, "metadata I/O failed");
        MetadataError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new
/// file: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetadataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    sync_dir(dir)
}

/// fsyncs a directory so that creations, renames and deletions in it survive
/// power loss.
pub fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync dir", dir))
}

impl MetadataStore {
    /// Opens the store under `data_dir`, creating its directory.
    pub fn open(data_dir: &Path) -> Result<MetadataStore, MetadataError> {
        let dir = data_dir.join("meta");
        fs::create_dir_all(&dir).map_err(io_err("create dir", &dir))?;
        Ok(MetadataStore { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("topics.toml")
    }

    /// Every persisted topic; empty on a new data dir.
    pub fn load(&self) -> Result<Vec<TopicRecord>, MetadataError> {
        let path = self.path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let corrupt = |reason: String| MetadataError::Corrupt {
            path: path.clone(),
            reason,
        };
        let (header, body) = text
            .split_once('\n')
            .ok_or_else(|| corrupt("no header line".into()))?;
        let expected = header
            .strip_prefix(HEADER_PREFIX)
            .and_then(|hex| u32::from_str_radix(hex.trim(), 16).ok())
            .ok_or_else(|| {
                corrupt(format!(
                    "expected a '{HEADER_PREFIX}XXXXXXXX' header, found {header:?}"
                ))
            })?;
        let actual = crc32fast::hash(body.as_bytes());
        if actual != expected {
            return Err(corrupt(format!(
                "CRC mismatch: header says {expected:08x}, body gives {actual:08x}"
            )));
        }
        let file: TopicsFile = toml::from_str(body).map_err(|e| corrupt(e.to_string()))?;
        Ok(file.topics)
    }

    /// Replaces the persisted topic list.
    pub fn save(&self, topics: Vec<TopicRecord>) -> Result<(), MetadataError> {
        let body = toml::to_string(&TopicsFile { topics }).map_err(|e| MetadataError::Corrupt {
            path: self.path(),
            reason: format!("cannot encode: {e}"),
        })?;
        let text = format!(
            "{HEADER_PREFIX}{:08x}\n{body}",
            crc32fast::hash(body.as_bytes())
        );
        write_atomic(&self.path(), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> TopicRecord {
        let mut configs = TopicConfigs::default();
        configs.0.insert("retention.ms".into(), "1000".into());
        TopicRecord {
            name: name.into(),
            id: "0b7e1c3a-0000-4000-8000-000000000001".into(),
            partitions: 3,
            configs,
        }
    }

    #[test]
    fn topics_round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        assert!(store.load().unwrap().is_empty());
        store.save(vec![record("a"), record("b.c_d-e")]).unwrap();
        assert_eq!(store.load().unwrap(), vec![record("a"), record("b.c_d-e")]);
    }

    #[test]
    fn a_damaged_metadata_file_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        store.save(vec![record("a")]).unwrap();
        let path = dir.path().join("meta/topics.toml");
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("partitions = 3", "partitions = 4");
        fs::write(&path, text).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("CRC mismatch"), "{err}");
    }
}
