//! Opening a partition directory: loading its segments and, after an unclean stop, validating
//! them from the recovery point and cutting the log at the first invalid byte.

use std::fs;
use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::config::LogConfig;
use super::segment::{self, IndexTracker, Room, Segment};
use crate::error::{Error, IoContext, Result};

/// The segments of a partition, oldest first, ready to serve; the last one is active.
pub(crate) struct Loaded {
    pub segments: Vec<Segment>,
    pub tracker: IndexTracker,
    /// Bytes cut from the log by recovery (0 after a clean stop).
    pub truncated_bytes: u64,
}

pub(crate) fn load(dir: &Path, config: &LogConfig, checkpoint: Checkpoint) -> Result<Loaded> {
    remove_temporaries(dir)?;
    let limit = checkpoint.untrusted_from.unwrap_or(i64::MAX);
    let paths = segment_paths(dir)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(paths.len());
    let mut tracker = IndexTracker::new(config.index_interval_bytes);
    let mut truncated_bytes = 0;
    let count = paths.len();
    for (i, (base_offset, path)) in paths.into_iter().enumerate() {
        let is_last = i + 1 == count;
        // The length before opening: opening the active segment extends it to capacity.
        let file_size = fs::metadata(&path).context("stat segment", &path)?.len();
        let capacity = if is_last { config.segment_bytes } else { 0 };
        // Only the active segment gets room to grow: a sealed one keeps its length.
        let room = if is_last {
            Room::of(config.preallocate)
        } else {
            Room::Sparse
        };
        let mut segment = Segment::open(
            path,
            base_offset,
            capacity,
            config.index_interval_bytes,
            room,
        )?;
        if let Some(previous) = segments.last()
            && previous.next_offset() != base_offset
        {
            return Err(Error::CorruptFile {
                path: segment.path().to_owned(),
                reason: format!(
                    "segment starts at offset {base_offset}, the previous one ends at {}",
                    previous.next_offset()
                ),
            });
        }
        let trusted = checkpoint.clean || base_offset < checkpoint.recovery_point;
        if trusted && segment.load_indexes(file_size) {
            match segment.load_tail(file_size, config.limits, config.index_interval_bytes) {
                // Records past a failed sync: scan, and cut there.
                Ok(_) if segment.next_offset() > limit => segment.reset_indexes(),
                Ok(loaded) => {
                    tracker = loaded;
                    segments.push(segment);
                    continue;
                }
                // The newest segment is the one a torn write, a cut or a zero-filled
                // preallocation damages: scanning it keeps the intact prefix, and nothing
                // follows it that cutting could orphan.
                Err(reason) if is_last => {
                    log::warn!(
                        "{}: {reason}; scanning the segment",
                        segment.path().display()
                    );
                    segment.reset_indexes();
                }
                // A sealed segment was synced before anything after it was written: damage
                // there is not a crash's doing, and cutting would delete every later
                // segment, so the operator decides.
                Err(reason) => {
                    return Err(Error::CorruptFile {
                        path: segment.path().to_owned(),
                        reason,
                    });
                }
            }
        }
        let outcome = segment.scan(file_size, config.limits, config.index_interval_bytes, limit);
        tracker = outcome.tracker;
        if !outcome.limited && outcome.failure.is_none() {
            if !is_last {
                segment.write_indexes()?;
            }
            segments.push(segment);
            continue;
        }
        if outcome.limited {
            log::warn!(
                "{}: a sync failed before the last stop; dropping the records from offset \
                 {limit} on (byte {}), which may not be on disk",
                segment.path().display(),
                outcome.valid_bytes,
            );
        } else if let Some(failure) = outcome.failure
            && !is_zero_tail(&segment, outcome.valid_bytes, file_size)
        {
            let cut = file_size - outcome.valid_bytes;
            log::warn!(
                "{}: invalid batch at byte {}: {}; truncating the log there ({cut} bytes cut)",
                segment.path().display(),
                failure.position,
                failure.source,
            );
            truncated_bytes += cut;
        }
        segment.cut(outcome.valid_bytes, is_last.then_some(room))?;
        if !is_last {
            segment.write_indexes()?;
            segments.push(segment);
            truncated_bytes += delete_later_segments(dir, base_offset)?;
            break;
        }
        segments.push(segment);
    }
    Ok(Loaded {
        segments,
        tracker,
        truncated_bytes,
    })
}

const ZERO_CHECK_BYTES: u64 = 4 * 1024 * 1024;

/// True when everything after the valid bytes is zeros: what an extended-but-unwritten file
/// looks like after a crash, which is not damage worth a warning.
fn is_zero_tail(segment: &Segment, valid: u64, file_size: u64) -> bool {
    let Ok(file) = fs::File::open(segment.path()) else {
        return false;
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut position = valid;
    // A torn write leaves at most a few batches of garbage; zeros beyond are not inspected.
    let end = file_size.min(valid.saturating_add(ZERO_CHECK_BYTES));
    while position < end {
        use std::os::unix::fs::FileExt;
        let want = usize::try_from((end - position).min(buf.len() as u64)).unwrap_or(buf.len());
        match file.read_at(&mut buf[..want], position) {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n].iter().any(|&b| b != 0) => return false,
            Ok(n) => position += n as u64,
        }
    }
    true
}

/// Deletes segments after `base_offset`: once a segment is cut, what follows it can no longer
/// continue the log's dense offsets. Returns the bytes removed.
fn delete_later_segments(dir: &Path, base_offset: i64) -> Result<u64> {
    let mut removed = 0;
    for (later, path) in segment_paths(dir)? {
        if later <= base_offset {
            continue;
        }
        removed += fs::metadata(&path).map_or(0, |m| m.len());
        log::warn!(
            "{}: deleted, it follows a truncated segment",
            path.display()
        );
        for suffix in [
            segment::LOG_SUFFIX,
            segment::INDEX_SUFFIX,
            segment::TIME_INDEX_SUFFIX,
        ] {
            let file = path.with_extension(suffix);
            if let Err(e) = fs::remove_file(&file)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(Error::io("delete segment file", file, e));
            }
        }
    }
    Ok(removed)
}

/// The `.log` files of a partition directory, sorted by base offset.
pub(crate) fn segment_paths(dir: &Path) -> Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).context("list partition", dir)? {
        let entry = entry.context("list partition", dir)?;
        let name = entry.file_name();
        if let Some(base) = name.to_str().and_then(segment::parse_log_name) {
            found.push((base, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(base, _)| *base);
    Ok(found)
}

/// A crash while writing an index or checkpoint can leave a `.tmp` file; it is never needed.
fn remove_temporaries(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).context("list partition", dir)? {
        let path = entry.context("list partition", dir)?.path();
        if path.extension().is_some_and(|ext| ext == "tmp") {
            fs::remove_file(&path).context("remove temporary", &path)?;
        }
    }
    Ok(())
}
