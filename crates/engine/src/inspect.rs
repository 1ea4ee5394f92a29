//! Read-only inspection of a data directory: what `rill verify` and `rill topics` report.
//!
//! An [`Inspector`] takes a shared lock on the directory, so it refuses to run while an engine
//! has it open (whose files are changing) but several inspectors may run at once. Nothing here
//! writes: damage is reported, and left for recovery to cut when the directory is next opened.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, IoContext, Result};
use crate::lock::{DirLock, LockMode};
use crate::log::{Checkpoint, header_at, segment_paths};
use crate::record::{Batches, Limits};
use crate::store::list_topics;
use crate::topic::{TopicName, TopicPartition};

/// Offsets and sizes of one partition, as `rill topics` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSummary {
    pub partition: TopicPartition,
    pub segments: usize,
    pub start_offset: i64,
    pub next_offset: i64,
    pub size_bytes: u64,
}

/// Something wrong in a partition's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub position: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.position {
            Some(position) => write!(
                f,
                "{} at byte {position}: {}",
                self.path.display(),
                self.reason
            ),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

/// The result of checking every batch and index of a partition.
#[derive(Clone, Debug)]
pub struct PartitionCheck {
    pub summary: PartitionSummary,
    pub batches: u64,
    pub records: u64,
    pub problems: Vec<Problem>,
}

impl PartitionCheck {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A read-only view of a data directory.
#[derive(Debug)]
pub struct Inspector {
    root: PathBuf,
    limits: Limits,
    _lock: DirLock,
}

impl Inspector {
    /// Opens `root` for inspection; fails with [`Error::DirectoryLocked`] while an engine has
    /// it open.
    pub fn open(root: impl AsRef<Path>, limits: Limits) -> Result<Self> {
        let root = root.as_ref().to_owned();
        if !root.is_dir() {
            return Err(Error::io(
                "open data directory",
                &root,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        let lock = DirLock::acquire(&root, LockMode::Shared, |path| Error::DirectoryLocked {
            path,
        })?;
        Ok(Self {
            root,
            limits,
            _lock: lock,
        })
    }

    pub fn topics(&self) -> Result<Vec<(TopicName, u32)>> {
        list_topics(&self.root)
    }

    /// Every partition of every topic, in order.
    pub fn partitions(&self) -> Result<Vec<TopicPartition>> {
        Ok(self
            .topics()?
            .into_iter()
            .flat_map(|(topic, count)| {
                (0..count).map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect())
    }

    /// Offsets and sizes, walking batch headers only.
    pub fn summarize(&self, partition: &TopicPartition) -> Result<PartitionSummary> {
        let dir = self.root.join(partition.dir_name());
        let paths = segment_paths(&dir)?;
        let mut summary = PartitionSummary {
            partition: partition.clone(),
            segments: paths.len(),
            start_offset: paths.first().map_or(0, |(base, _)| *base),
            next_offset: paths.first().map_or(0, |(base, _)| *base),
            size_bytes: 0,
        };
        for (base, path) in &paths {
            let map = map_read_only(path)?;
            let bytes = map.as_deref().unwrap_or(&[]);
            let mut position = 0;
            summary.next_offset = *base;
            while let Some((header, len)) = header_at(bytes, position) {
                if header.base_offset.get() != summary.next_offset || header.magic != 2 {
                    break;
                }
                summary.next_offset = header.next_offset();
                position += len;
            }
            summary.size_bytes += position;
        }
        Ok(summary)
    }

    /// Checks every batch (framing, magic, CRC, records), that offsets are dense across
    /// segments, and that the index files agree with the log.
    pub fn verify(&self, partition: &TopicPartition) -> Result<PartitionCheck> {
        let dir = self.root.join(partition.dir_name());
        let paths = segment_paths(&dir)?;
        let clean = Checkpoint::read(&dir).clean;
        let mut check = PartitionCheck {
            summary: self.summarize(partition)?,
            batches: 0,
            records: 0,
            problems: Vec::new(),
        };
        let mut expected: Option<i64> = None;
        for (i, (base, path)) in paths.iter().enumerate() {
            let is_last = i + 1 == paths.len();
            if let Some(next) = expected
                && next != *base
            {
                check.problem(
                    path,
                    None,
                    format!("starts at offset {base}, the previous segment ends at {next}"),
                );
            }
            let starts = self.verify_segment(&mut check, *base, path);
            expected = Some(starts.next_offset);
            if !is_last || clean {
                verify_indexes(&mut check, *base, path, &starts.positions);
            }
        }
        Ok(check)
    }

    fn verify_segment(&self, check: &mut PartitionCheck, base: i64, path: &Path) -> SegmentWalk {
        let mut walk = SegmentWalk {
            next_offset: base,
            positions: HashMap::new(),
        };
        let map = match map_read_only(path) {
            Ok(map) => map,
            Err(e) => {
                check.problem(path, None, e.to_string());
                return walk;
            }
        };
        let bytes = map.as_deref().unwrap_or(&[]);
        let mut batches = Batches::new(bytes, self.limits);
        for item in &mut batches {
            let (position, batch) = match item {
                Ok(found) => found,
                Err(invalid) => {
                    let zeros = bytes[invalid.position as usize..].iter().all(|&b| b == 0);
                    let reason = if zeros {
                        "zero-filled tail after the last batch: the log was not closed cleanly (opening it recovers)".to_owned()
                    } else {
                        invalid.source.to_string()
                    };
                    check.problem(path, Some(invalid.position), reason);
                    break;
                }
            };
            let header = batch.header();
            if batch.base_offset() != walk.next_offset {
                check.problem(
                    path,
                    Some(position),
                    format!(
                        "batch starts at offset {}, expected {}",
                        batch.base_offset(),
                        walk.next_offset
                    ),
                );
            }
            if header.record_count.get() != header.last_offset_delta.get().wrapping_add(1) {
                check.problem(
                    path,
                    Some(position),
                    "record count and last offset delta disagree".into(),
                );
            }
            let records = batch
                .records(&self.limits)
                .and_then(|records| records.iter().try_fold(0u64, |n, r| r.map(|_| n + 1)));
            match records {
                Ok(n) => check.records += n,
                Err(e) => check.problem(path, Some(position), format!("record: {e}")),
            }
            check.batches += 1;
            walk.positions.insert(position, batch.base_offset());
            walk.next_offset = batch.next_offset();
        }
        walk
    }
}

impl PartitionCheck {
    fn problem(&mut self, path: &Path, position: Option<u64>, reason: String) {
        self.problems.push(Problem {
            path: path.to_owned(),
            position,
            reason,
        });
    }
}

/// What a walk over a segment learned: where it ends, and which positions start batches.
struct SegmentWalk {
    next_offset: i64,
    positions: HashMap<u64, i64>,
}

fn verify_indexes(
    check: &mut PartitionCheck,
    base: i64,
    log_path: &Path,
    positions: &HashMap<u64, i64>,
) {
    let index_path = log_path.with_extension("index");
    match fs::read(&index_path) {
        Err(_) => check.problem(&index_path, None, "missing (rebuilt on next open)".into()),
        Ok(bytes) if bytes.len() % 8 != 0 => {
            check.problem(&index_path, None, "length is not a multiple of 8".into())
        }
        Ok(bytes) => {
            let mut previous: Option<(u32, u32)> = None;
            for (n, entry) in bytes.chunks_exact(8).enumerate() {
                let relative = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]);
                let position = u32::from_be_bytes([entry[4], entry[5], entry[6], entry[7]]);
                let points_at = positions.get(&u64::from(position)).copied();
                if points_at != Some(base + i64::from(relative)) {
                    check.problem(
                        &index_path,
                        Some(n as u64 * 8),
                        format!(
                            "entry for offset {} does not point at its batch",
                            base + i64::from(relative)
                        ),
                    );
                    return;
                }
                if previous.is_some_and(|(r, p)| r >= relative || p >= position) {
                    check.problem(
                        &index_path,
                        Some(n as u64 * 8),
                        "entries do not increase".into(),
                    );
                    return;
                }
                previous = Some((relative, position));
            }
        }
    }
    let time_path = log_path.with_extension("timeindex");
    match fs::read(&time_path) {
        Err(_) => check.problem(&time_path, None, "missing (rebuilt on next open)".into()),
        Ok(bytes) if bytes.len() % 12 != 0 => {
            check.problem(&time_path, None, "length is not a multiple of 12".into())
        }
        Ok(bytes) => {
            let starts: std::collections::HashSet<i64> = positions.values().copied().collect();
            let mut previous = i64::MIN;
            for (n, entry) in bytes.chunks_exact(12).enumerate() {
                let mut timestamp = [0u8; 8];
                timestamp.copy_from_slice(&entry[..8]);
                let timestamp = i64::from_be_bytes(timestamp);
                let relative = u32::from_be_bytes([entry[8], entry[9], entry[10], entry[11]]);
                if timestamp <= previous || !starts.contains(&(base + i64::from(relative))) {
                    check.problem(
                        &time_path,
                        Some(n as u64 * 12),
                        "entry out of order or not at a batch".into(),
                    );
                    return;
                }
                previous = timestamp;
            }
        }
    }
}

fn map_read_only(path: &Path) -> Result<Option<Mmap>> {
    let file = File::open(path).context("open segment", path)?;
    if file.metadata().context("stat segment", path)?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: the inspector holds a shared lock on the data directory, which no engine can
    // hold while it writes (writers lock exclusively), so the file does not change while
    // mapped; the map is read-only.
    let map = unsafe { Mmap::map(&file) }.context("map segment", path)?;
    Ok(Some(map))
}
