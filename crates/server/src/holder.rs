//! The note a running server leaves in its data directory, so that other commands that find
//! the directory locked can say which process holds it and how to reach it.
//!
//! `DATA_DIR/.server`, plain text: `pid <pid>`, then one `listen <addr>` per listener and an
//! `advertise <host:port>` line. It is consulted only when the directory's lock is held, so a
//! file left behind by a killed server misleads nobody; a clean stop removes it.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::Error;

const FILE: &str = ".server";

/// What a running server wrote about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub listen: Vec<SocketAddr>,
    /// The address clients are told to use (`host:port`).
    pub advertise: String,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Writes the note (replacing any stale one).
pub fn write(dir: &Path, holder: &Holder) -> Result<(), Error> {
    let mut text = format!("pid {}\n", holder.pid);
    for addr in &holder.listen {
        text.push_str(&format!("listen {addr}\n"));
    }
    text.push_str(&format!("advertise {}\n", holder.advertise));
    let path = path(dir);
    fs::write(&path, text).map_err(|source| Error::StateFile { path, source })
}

/// The note of the server holding `dir`, if one left it.
pub fn read(dir: &Path) -> Option<Holder> {
    let text = fs::read_to_string(path(dir)).ok()?;
    let mut holder = Holder::default();
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("pid", pid)) => holder.pid = pid.parse().ok()?,
            Some(("listen", addr)) => holder.listen.push(addr.parse().ok()?),
            Some(("advertise", addr)) => holder.advertise = addr.to_owned(),
            _ => {}
        }
    }
    Some(holder)
}

/// Removes the note at a clean stop.
pub fn remove(dir: &Path) {
    if let Err(error) = fs::remove_file(path(dir))
        && error.kind() != std::io::ErrorKind::NotFound
    {
        log::warn!("cannot remove {}: {error}", path(dir).display());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()), None);
        let holder = Holder {
            pid: 42,
            listen: vec![
                "127.0.0.1:9092".parse().unwrap(),
                "[::1]:9092".parse().unwrap(),
            ],
            advertise: "localhost:9092".into(),
        };
        write(dir.path(), &holder).unwrap();
        assert_eq!(read(dir.path()), Some(holder));
        remove(dir.path());
        assert_eq!(read(dir.path()), None);
    }
}
