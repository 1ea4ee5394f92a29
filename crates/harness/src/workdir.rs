//! Each scenario, peer and ceiling sample runs in a directory of its own, removed after it,
//! so one run's files never slow the next.

use std::path::Path;

use anyhow::Context;

/// Runs `f` in a new directory `dir` and removes it afterwards, whatever happened.
pub fn in_dir<T>(dir: &Path, f: impl FnOnce(&Path) -> anyhow::Result<T>) -> anyhow::Result<T> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let result = f(dir);
    let removed = std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()));
    let value = result?;
    removed?;
    Ok(value)
}
