//! Evicting a data directory's files from the page cache, so every engine's read-back starts
//! from the disk.
//!
//! rill writes segments with `O_DIRECT`, which leaves nothing in the page cache, while the
//! peers write through it; reading back right after writing would then compare rill reading
//! the disk with peers reading memory. Every read-back phase (rill's and the peers') therefore
//! starts after the files were synced and their pages dropped with
//! `posix_fadvise(DONTNEED)`: a cold read-back, the case of a consumer catching up.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;

/// Syncs and drops the cached pages of every file under `dir`.
pub fn evict(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("list {}", dir.display()))?
            .path();
        if path.is_dir() {
            evict(&path)?;
        } else if path.is_file() {
            evict_file(&path)?;
        }
    }
    Ok(())
}

fn evict_file(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    // Dirty pages cannot be dropped; the engines synced already, this makes sure.
    file.sync_data()
        .with_context(|| format!("sync {}", path.display()))?;
    // SAFETY: the descriptor belongs to `file`, which is open for the whole call;
    // posix_fadvise only reads its arguments.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        anyhow::bail!(
            "posix_fadvise(DONTNEED) on {}: {}",
            path.display(),
            std::io::Error::from_raw_os_error(rc)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_every_file_of_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 1 << 20]).unwrap();
        std::fs::write(dir.path().join("sub/b"), vec![2u8; 1 << 20]).unwrap();
        evict(dir.path()).unwrap();
        // Contents survive eviction: it drops clean copies, never data.
        assert_eq!(
            std::fs::read(dir.path().join("sub/b")).unwrap(),
            vec![2u8; 1 << 20]
        );
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        assert!(evict(Path::new("/nonexistent/rill-bench")).is_err());
    }
}
