//! The durable store of committed offsets: an append-only log of CRC-checked
//! records, replayed and compacted when the broker starts.
//!
//! ```text
//! <data>/meta/offsets.log: records back to back
//! 0        4        8
//! +--------+--------+---------------------------------------------+
//! | len u32| crc u32| payload (len bytes; crc = CRC-32 of payload)|
//! +--------+--------+---------------------------------------------+
//! payload: kind u8 | group str
//!   kind 1 commit:        topic str | partition i32 | offset i64
//!                         | leader_epoch i32 | commit_ms i64 | metadata str
//!   kind 2 delete offset: topic str | partition i32
//!   kind 3 delete group
//! str = u32 length | UTF-8 bytes
//! ```
//!
//! A torn or corrupt tail (kill -9 during a write) ends the replay: the
//! records before it are kept, the compacted rewrite drops the rest.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, BytesMut};
use tracing::{info, warn};

use crate::broker::metadata::{io_err, sync_dir, write_atomic, MetadataError};

/// A committed offset with what the client attached to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_ms: i64,
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        committed: Committed,
    },
    DeleteOffset {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
}

/// Every group's committed offsets, keyed by (topic, partition).
pub type OffsetsByGroup = BTreeMap<String, BTreeMap<(String, i32), Committed>>;

fn put_str(out: &mut BytesMut, s: &str) {
    out.put_u32(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn get_str(buf: &mut &[u8]) -> Option<String> {
    if buf.remaining() < 4 {
        return None;
    }
    let len = buf.get_u32() as usize;
    if buf.remaining() < len {
        return None;
    }
    let s = String::from_utf8(buf[..len].to_vec()).ok()?;
    buf.advance(len);
    Some(s)
}

impl OffsetRecord {
    fn encode(&self, out: &mut BytesMut) {
        let mut payload = BytesMut::new();
        match self {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                committed,
            } => {
                payload.put_u8(1);
                put_str(&mut payload, group);
                put_str(&mut payload, topic);
                payload.put_i32(*partition);
                payload.put_i64(committed.offset);
                payload.put_i32(committed.leader_epoch);
                payload.put_i64(committed.commit_ms);
                put_str(&mut payload, &committed.metadata);
            }
            OffsetRecord::DeleteOffset {
                group,
                topic,
                partition,
            } => {
                payload.put_u8(2);
                put_str(&mut payload, group);
                put_str(&mut payload, topic);
                payload.put_i32(*partition);
            }
            OffsetRecord::DeleteGroup { group } => {
                payload.put_u8(3);
                put_str(&mut payload, group);
            }
        }
        out.put_u32(payload.len() as u32);
        out.put_u32(crc32fast::hash(&payload));
        out.put_slice(&payload);
    }

    fn decode(mut payload: &[u8]) -> Option<OffsetRecord> {
        let buf = &mut payload;
        if !buf.has_remaining() {
            return None;
        }
        let kind = buf.get_u8();
        let group = get_str(buf)?;
        let record = match kind {
            1 => {
                let topic = get_str(buf)?;
                if buf.remaining() < 4 + 8 + 4 + 8 {
                    return None;
                }
                let partition = buf.get_i32();
                let offset = buf.get_i64();
                let leader_epoch = buf.get_i32();
                let commit_ms = buf.get_i64();
                let metadata = get_str(buf)?;
                OffsetRecord::Commit {
                    group,
                    topic,
                    partition,
                    committed: Committed {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_ms,
                    },
                }
            }
            2 => {
                let topic = get_str(buf)?;
                if buf.remaining() < 4 {
                    return None;
                }
                OffsetRecord::DeleteOffset {
                    group,
                    topic,
                    partition: buf.get_i32(),
                }
            }
            3 => OffsetRecord::DeleteGroup { group },
            _ => return None,
        };
        buf.is_empty().then_some(record)
    }

    /// The group this record is about.
    pub fn group(&self) -> &str {
        match self {
            OffsetRecord::Commit { group, .. }
            | OffsetRecord::DeleteOffset { group, .. }
            | OffsetRecord::DeleteGroup { group } => group,
        }
    }

    /// Applies this change to one group's offsets (a group deletion clears
    /// them).
    pub fn apply_to_group(self, offsets: &mut BTreeMap<(String, i32), Committed>) {
        match self {
            OffsetRecord::Commit {
                topic,
                partition,
                committed,
                ..
            } => {
                offsets.insert((topic, partition), committed);
            }
            OffsetRecord::DeleteOffset {
                topic, partition, ..
            } => {
                offsets.remove(&(topic, partition));
            }
            OffsetRecord::DeleteGroup { .. } => offsets.clear(),
        }
    }

    /// Applies this change to the replayed view of every group.
    pub fn apply(self, offsets: &mut OffsetsByGroup) {
        let group = self.group().to_string();
        let of_group = offsets.entry(group.clone()).or_default();
        self.apply_to_group(of_group);
        if of_group.is_empty() {
            offsets.remove(&group);
        }
    }
}

/// The open offsets log.
pub struct OffsetStore {
    path: PathBuf,
    file: File,
}

/// Replays records from `bytes`; returns the state and how many bytes were
/// intact.
fn replay(bytes: &[u8]) -> (OffsetsByGroup, usize) {
    let mut offsets = OffsetsByGroup::new();
    let mut pos = 0;
    while bytes.len() - pos >= 8 {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().unwrap_or_default());
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(record) = OffsetRecord::decode(payload) else {
            break;
        };
        record.apply(&mut offsets);
        pos += 8 + len;
    }
    (offsets, pos)
}

impl OffsetStore {
    /// Replays `<meta_dir>/offsets.log`, rewrites it compacted, and opens it
    /// for appending.
    pub fn open(meta_dir: &Path) -> Result<(OffsetStore, OffsetsByGroup), MetadataError> {
        let path = meta_dir.join("offsets.log");
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        let (offsets, intact) = replay(&bytes);
        if intact < bytes.len() {
            warn!(path = %path.display(), intact, total = bytes.len(), "offsets log has a damaged tail; dropping it");
        }
        let mut compacted = BytesMut::new();
        for (group, partitions) in &offsets {
            for ((topic, partition), committed) in partitions {
                OffsetRecord::Commit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    committed: committed.clone(),
                }
                .encode(&mut compacted);
            }
        }
        write_atomic(&path, &compacted)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        sync_dir(meta_dir)?;
        let count: usize = offsets.values().map(BTreeMap::len).sum();
        info!(path = %path.display(), groups = offsets.len(), offsets = count, "offsets store loaded");
        Ok((OffsetStore { path, file }, offsets))
    }

    /// Appends `records` and fdatasyncs them: when this returns Ok they
    /// survive kill -9 and power loss. Blocking.
    pub fn append(&mut self, records: &[OffsetRecord]) -> Result<(), MetadataError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut out = BytesMut::new();
        for r in records {
            r.encode(&mut out);
        }
        self.file
            .write_all(&out)
            .map_err(io_err("append", &self.path))?;
        self.file
            .sync_data()
            .map_err(io_err("fdatasync", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            committed: Committed {
                offset,
                leader_epoch: -1,
                metadata: format!("meta {offset}"),
                commit_ms: 1000 + offset,
            },
        }
    }

    #[test]
    fn commits_and_deletions_replay_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, offsets) = OffsetStore::open(dir.path()).unwrap();
        assert!(offsets.is_empty());
        store
            .append(&[
                commit("g", "t", 0, 5),
                commit("g", "t", 0, 9),
                commit("g", "t", 1, 3),
                commit("h", "t", 0, 1),
                OffsetRecord::DeleteOffset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 1,
                },
                OffsetRecord::DeleteGroup { group: "h".into() },
            ])
            .unwrap();
        drop(store);
        let (_, offsets) = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(offsets.len(), 1);
        let g = &offsets["g"];
        assert_eq!(g.len(), 1);
        assert_eq!(g[&("t".to_string(), 0)].offset, 9);
        assert_eq!(g[&("t".to_string(), 0)].metadata, "meta 9");
    }

    #[test]
    fn a_torn_tail_keeps_every_record_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = OffsetStore::open(dir.path()).unwrap();
        store
            .append(&[commit("g", "t", 0, 1), commit("g", "t", 1, 2)])
            .unwrap();
        drop(store);
        let path = dir.path().join("offsets.log");
        let full = fs::read(&path).unwrap();
        let first_len = 8 + u32::from_be_bytes(full[0..4].try_into().unwrap()) as usize;
        for cut in first_len..full.len() {
            fs::write(&path, &full[..cut]).unwrap();
            let (_, offsets) = OffsetStore::open(dir.path()).unwrap();
            assert_eq!(offsets["g"].len(), 1, "cut at {cut}");
        }
        let mut flipped = full.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        fs::write(&path, &flipped).unwrap();
        let (_, offsets) = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(offsets["g"].len(), 1, "flipped byte in the last record");
    }
}
