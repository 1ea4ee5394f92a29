//! Producer ids, handed out durably: an id is never given twice, across restarts and crashes.
//!
//! The data directory holds one small file, `producer-ids`, with the first id not yet
//! reserved (and a CRC-32C). Ids are reserved a block at a time: the file is replaced
//! atomically (written, synced, renamed, directory synced) with the end of the new block
//! *before* any id of the block is handed out, so a crash at any point loses at most the rest
//! of a block, never reuses an id. Every id starts at epoch 0; epochs are the producer's own
//! business afterwards (a partition fences older ones).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::{Error, IoContext, Result};

/// The file's name in the data directory.
pub(crate) const FILE_NAME: &str = "producer-ids";
const MAGIC: &[u8; 8] = b"RILLPID1";
const LEN: usize = 8 + 8 + 4;
/// Ids reserved per write of the file.
const BLOCK: i64 = 1000;

/// A producer's identity: the id the engine gave it and its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProducerIdentity {
    /// The producer id (>= 0), unique for the life of the data directory.
    pub id: i64,
    /// The producer epoch (0 for a fresh id).
    pub epoch: i16,
}

/// The allocator of one data directory.
#[derive(Debug)]
pub(crate) struct ProducerIds {
    path: PathBuf,
    /// (next id to hand out, end of the reserved block).
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    /// Reads the allocator's file in `root` (none yet: ids start at 0). Nothing of the old
    /// block is reused: the next id is the first one not reserved.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join(FILE_NAME);
        let next = match fs::read(&path) {
            Ok(bytes) => decode(&bytes).ok_or_else(|| Error::CorruptFile {
                path: path.clone(),
                reason: "not a producer id file, or its checksum does not match; \
                         ids already handed out are unknown, so none is handed out"
                    .into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io("read producer ids", path, e)),
        };
        Ok(Self {
            path,
            state: Mutex::new((next, next)),
        })
    }

    /// A fresh producer id at epoch 0.
    pub fn allocate(&self) -> Result<ProducerIdentity> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, end) = *state;
        if next == end {
            let end = next
                .checked_add(BLOCK)
                .ok_or_else(|| Error::ProducerIdsExhausted {
                    path: self.path.clone(),
                })?;
            self.reserve(end)?;
            state.1 = end;
        }
        state.0 = next + 1;
        Ok(ProducerIdentity { id: next, epoch: 0 })
    }

    /// Makes `end` the first unreserved id on disk.
    fn reserve(&self, end: i64) -> Result<()> {
        crate::log::write_synced(&self.path, &encode(end))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .context("sync directory", dir)
    }
}

fn encode(next: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&next.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != LEN || !bytes.starts_with(MAGIC) {
        return None;
    }
    let (body, crc) = bytes.split_at(LEN - 4);
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let next = i64::from_be_bytes(body[8..16].try_into().ok()?);
    (next >= 0).then_some(next)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ids_are_never_reused_after_a_reopen_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(
            ids.allocate().unwrap(),
            ProducerIdentity { id: 0, epoch: 0 }
        );
        assert_eq!(ids.allocate().unwrap().id, 1);
        // A crash now: the rest of the block is skipped, nothing is handed out twice.
        drop(ids);
        let ids = ProducerIds::open(dir.path()).unwrap();
        assert_eq!(ids.allocate().unwrap().id, BLOCK);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(
            ProducerIds::open(dir.path()),
            Err(Error::CorruptFile { .. })
        ));
    }
}
