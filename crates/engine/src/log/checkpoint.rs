//! A partition's checkpoint: its recovery point and its clean-shutdown marker in one small file.
//!
//! Every segment below the recovery point was synced and sealed, so recovery after a crash
//! only has to validate the segments from there on. The clean flag is written last on a clean
//! close and cleared as soon as the partition is opened again, so a crash at any moment in
//! between leaves it unset.

use std::fs;
use std::path::Path;

use super::segment::write_synced;
use crate::error::{IoContext, Result};

pub(crate) const FILE_NAME: &str = "checkpoint";
const MAGIC: &[u8; 8] = b"RILLCKP1";
const LEN: usize = 8 + 8 + 1 + 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub recovery_point: i64,
    pub clean: bool,
}

impl Checkpoint {
    /// What a partition with no (or an unreadable) checkpoint must assume: nothing is known to
    /// be safe, so everything is validated.
    pub const UNKNOWN: Checkpoint = Checkpoint {
        recovery_point: 0,
        clean: false,
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

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.recovery_point.to_be_bytes());
        out.push(u8::from(self.clean));
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        if bytes.len() != LEN || !bytes.starts_with(MAGIC) {
            return None;
        }
        let (body, crc) = bytes.split_at(LEN - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        Some(Checkpoint {
            recovery_point: i64::from_be_bytes(body[8..16].try_into().ok()?),
            clean: body[16] == 1,
        })
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
        };
        checkpoint.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), checkpoint);
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), Checkpoint::UNKNOWN);
    }
}
