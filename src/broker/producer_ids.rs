//! Producer id allocation for InitProducerId: ids are handed out from
//! blocks reserved durably in `<data>/meta/producer_ids`, so no id is ever
//! given twice, even after a crash (the unused rest of a block is skipped).
//!
//! ```text
//! <data>/meta/producer_ids (12 bytes, big-endian, replaced atomically)
//!  0  8  reserved_until i64   every id below this may have been handed out
//!  8  4  crc            u32   CRC-32 (crc32fast) of bytes 0..8
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::metadata::{write_atomic, MetadataError};
use super::BrokerError;

/// Ids reserved per write of the high-water mark.
pub const ID_BLOCK: i64 = 1000;

const FILE: &str = "producer_ids";

/// What InitProducerId asks for, after decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitRequest {
    /// A new producer: a fresh id, epoch 0.
    New,
    /// v3+: the producer's current id and epoch, asking for an epoch bump.
    Bump { producer_id: i64, epoch: i16 },
}

#[derive(Debug)]
struct IdState {
    next: i64,
    reserved_until: i64,
    /// Epochs handed out by bumps since startup, to fence stale bumpers.
    epochs: HashMap<i64, i16>,
}

/// The broker's producer id allocator.
#[derive(Debug)]
pub struct ProducerIds {
    path: PathBuf,
    state: Mutex<IdState>,
}

fn encode(reserved_until: i64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&reserved_until.to_be_bytes());
    let crc = crc32fast::hash(&out[..8]);
    out[8..].copy_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Result<i64, String> {
    if bytes.len() != 12 {
        return Err(format!("expected 12 bytes, found {}", bytes.len()));
    }
    let stored = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let actual = crc32fast::hash(&bytes[..8]);
    if stored != actual {
        return Err(format!(
            "CRC mismatch: stored {stored:#010x}, bytes give {actual:#010x}"
        ));
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[..8]);
    let value = i64::from_be_bytes(a);
    if value < 0 {
        return Err(format!("expected a high-water mark >= 0, found {value}"));
    }
    Ok(value)
}

impl ProducerIds {
    /// Loads the high-water mark from `meta_dir`. A damaged file stops
    /// startup: guessing could hand out an id twice.
    pub fn open(meta_dir: &Path) -> Result<ProducerIds, MetadataError> {
        let path = meta_dir.join(FILE);
        let reserved_until = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| MetadataError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(MetadataError::Io {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        Ok(ProducerIds {
            path,
            state: Mutex::new(IdState {
                next: reserved_until,
                reserved_until,
                epochs: HashMap::new(),
            }),
        })
    }

    /// Answers InitProducerId: (producer id, epoch). Blocking (may fsync).
    ///
    /// A bump of an id this broker handed out returns the same id with the
    /// next epoch; a retried bump (the previous epoch) gets the current one
    /// again; an older epoch is fenced. An id never handed out, or one whose
    /// epoch would overflow, gets a fresh id with epoch 0.
    pub fn init(&self, request: InitRequest) -> Result<(i64, i16), BrokerError> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| BrokerError::Internal("producer id lock poisoned".into()))?;
        if let InitRequest::Bump { producer_id, epoch } = request {
            if (0..st.next).contains(&producer_id) && (0..i16::MAX - 1).contains(&epoch) {
                let current = st.epochs.get(&producer_id).copied();
                return match current {
                    Some(c) if epoch == c - 1 => Ok((producer_id, c)),
                    Some(c) if epoch != c => Err(BrokerError::InvalidProducerEpoch(format!(
                        "producer {producer_id}: epoch {epoch} is not the current epoch {c}"
                    ))),
                    _ => {
                        st.epochs.insert(producer_id, epoch + 1);
                        Ok((producer_id, epoch + 1))
                    }
                };
            }
        }
        if st.next == st.reserved_until {
            let until = st.reserved_until + ID_BLOCK;
            write_atomic(&self.path, &encode(until))?;
            st.reserved_until = until;
        }
        let id = st.next;
        st.next += 1;
        Ok((id, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3)
            .map(|_| a.init(InitRequest::New).unwrap().0)
            .collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(b.init(InitRequest::New).unwrap(), (ID_BLOCK, 0));
    }

    #[test]
    fn bumps_keep_the_id_and_fence_stale_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        let (pid, e) = ids.init(InitRequest::New).unwrap();
        let bump = |epoch| {
            ids.init(InitRequest::Bump {
                producer_id: pid,
                epoch,
            })
        };
        assert_eq!(bump(e).unwrap(), (pid, 1));
        assert_eq!(bump(0).unwrap(), (pid, 1), "retried bump");
        assert_eq!(bump(1).unwrap(), (pid, 2));
        assert!(matches!(bump(0), Err(BrokerError::InvalidProducerEpoch(_))));
        // An id never handed out gets a fresh one.
        let (other, epoch) = ids
            .init(InitRequest::Bump {
                producer_id: 10_000_000,
                epoch: 3,
            })
            .unwrap();
        assert_ne!(other, 10_000_000);
        assert_eq!(epoch, 0);
    }

    #[test]
    fn a_damaged_file_stops_startup() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), [1, 2, 3]).unwrap();
        let err = ProducerIds::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("expected 12 bytes"), "{err}");
        let mut bytes = encode(5000);
        bytes[3] ^= 1;
        std::fs::write(dir.path().join(FILE), bytes).unwrap();
        assert!(ProducerIds::open(dir.path()).is_err());
    }
}
