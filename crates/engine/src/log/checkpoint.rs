//! A partition's checkpoint: its recovery point, its clean-shutdown marker and, after a failed
//! sync, where trust in its bytes ends, in one small file.
//!
//! Every segment below the recovery point was synced and sealed, so recovery after a crash
//! only has to validate the segments from there on. The clean flag is written last on a clean
//! close and cleared as soon as the partition is opened again, so a crash at any moment in
//! between leaves it unset.
//!
//! When a sync fails, the kernel may have dropped the dirty pages it covered while the page
//! cache still serves them: a reopen in the same boot would read them back, find them valid,
//! and a later successful sync would vouch for bytes that may never reach the disk. So the
//! partition records the first offset the failed sync left unsynced (`untrusted_from`), and the
//! next open cuts the log there, as a crash at that moment would have, before it trusts
//! anything.

use std::fs;
use std::path::{Path, PathBuf};

use super::segment::{Reserved, write_synced};
use crate::error::{IoContext, Result};

pub(crate) const FILE_NAME: &str = "checkpoint";
/// The first format, without `untrusted_from`; still read.
const MAGIC_V1: &[u8; 8] = b"RILLCKP1";
const LEN_V1: usize = 8 + 8 + 1 + 4;
const MAGIC: &[u8; 8] = b"RILLCKP2";
const LEN: usize = 8 + 8 + 1 + 8 + 4;
/// `untrusted_from` when there is no limit.
const NO_LIMIT: i64 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub recovery_point: i64,
    pub clean: bool,
    /// Records at and after this offset were covered by a failed sync: the next open drops
    /// them.
    pub untrusted_from: Option<i64>,
}

impl Checkpoint {
    /// What a partition with no (or an unreadable) checkpoint must assume: nothing is known to
    /// be safe, so everything is validated.
    pub const UNKNOWN: Checkpoint = Checkpoint {
        recovery_point: 0,
        clean: false,
        untrusted_from: None,
    };

    pub fn read(dir: &Path) -> Checkpoint {
        fs::read(dir.join(FILE_NAME))
            .ok()
            .and_then(|bytes| Self::decode(&bytes))
            .unwrap_or(Self::UNKNOWN)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        write_synced(&dir.join(FILE_NAME), &self.encode())?;
        // The rename must be durable too, or a crash could bring back the previous checkpoint.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .context("sync directory", dir)
    }

    /// [`Checkpoint::write`] in two halves: the file's space now (a full disk shows here), the
    /// bytes, syncs and rename with [`PendingCheckpoint::finish`], on another thread.
    pub fn reserve(self, dir: &Path, tag: i64) -> Result<PendingCheckpoint> {
        let file = Reserved::new(&dir.join(FILE_NAME), tag, LEN)?;
        Ok(PendingCheckpoint {
            checkpoint: self,
            file,
            dir: dir.to_owned(),
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.recovery_point.to_be_bytes());
        out.push(u8::from(self.clean));
        out.extend_from_slice(&self.untrusted_from.unwrap_or(NO_LIMIT).to_be_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let v1 = bytes.len() == LEN_V1 && bytes.starts_with(MAGIC_V1);
        let v2 = bytes.len() == LEN && bytes.starts_with(MAGIC);
        if !(v1 || v2) {
            return None;
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let untrusted_from = match body.get(17..25) {
            Some(limit) => Some(i64::from_be_bytes(limit.try_into().ok()?)).filter(|&l| l >= 0),
            None => None,
        };
        Some(Checkpoint {
            recovery_point: i64::from_be_bytes(body[8..16].try_into().ok()?),
            clean: body[16] == 1,
            untrusted_from,
        })
    }
}

/// A checkpoint whose file is reserved, not yet written (see [`Checkpoint::reserve`]).
#[derive(Debug)]
pub(crate) struct PendingCheckpoint {
    checkpoint: Checkpoint,
    file: Reserved,
    dir: PathBuf,
}

impl PendingCheckpoint {
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// Writes, syncs and renames the checkpoint, then syncs its directory.
    pub fn finish(self) -> Result<()> {
        self.file.finish(&self.checkpoint.encode())?;
        // The rename must be durable too, or a crash could bring back the previous checkpoint.
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .context("sync directory", &self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Checkpoint {
            recovery_point: 1234,
            clean: true,
            untrusted_from: None,
        };
        checkpoint.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), checkpoint);
        let limited = Checkpoint {
            untrusted_from: Some(77),
            ..checkpoint
        };
        limited.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), limited);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), Checkpoint::UNKNOWN);
    }

    #[test]
    fn reads_the_first_format() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&99i64.to_be_bytes());
        bytes.push(1);
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_be_bytes());
        fs::write(dir.path().join(FILE_NAME), bytes).unwrap();
        let expected = Checkpoint {
            recovery_point: 99,
            clean: true,
            untrusted_from: None,
        };
        assert_eq!(Checkpoint::read(dir.path()), expected);
    }
}
