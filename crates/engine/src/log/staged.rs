//! Appends whose bytes are written by someone else, later: the shard's asynchronous writes.
//!
//! [`PartitionLog::stage`] validates a batch and assigns its offsets at once (so the producer
//! learns them), and remembers where it goes; the caller copies it into a staging buffer and
//! writes it however it likes. [`PartitionLog::complete_through`] then publishes every staged
//! batch the write covered, in order: index entries, the segment's size, the written (and,
//! after a sync, durable) watermark.
//!
//! A write that fails for good poisons the log ([`PartitionLog::poison_with`]): the staged
//! batches stay where they are, never published, their offsets never handed out again, until
//! recovery. Only a write refused for lack of space is undone, by
//! [`PartitionLog::discard_failed_writes`], once nothing is in flight and every staged batch's
//! ticket has failed; the log then assigns those offsets again and stays dense.

use std::collections::VecDeque;
use std::path::Path;

use super::{Origin, PartitionLog};
use crate::error::{Error, Result};
use crate::record::set_base_offset;
use crate::recycle::BatchBuf;

/// A staged batch, waiting for its write to complete.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StagedBatch {
    pub base_offset: i64,
    pub next_offset: i64,
    pub position: u64,
    pub len: u64,
    pub max_timestamp: i64,
    /// The batch repeats one an idempotent producer already appended: nothing is staged, the
    /// offsets are those of the first send, and nothing is to be written.
    pub duplicate: bool,
}

/// What the writer keeps about batches staged but not yet published.
#[derive(Debug, Default)]
pub(crate) struct Staging {
    batches: VecDeque<StagedBatch>,
    /// Where the next staged batch goes in the active segment.
    end: Option<u64>,
    /// Reused list of the tail chunks one completion publishes.
    chunks: Vec<super::tail::TailChunk>,
}

impl PartitionLog {
    /// Validates `batch`, stamps its base offset and records where it goes, without writing.
    /// Returns where it must be written. Call [`PartitionLog::needs_roll`] first: a batch is
    /// never staged across a segment boundary.
    pub(crate) fn stage(&mut self, batch: &mut [u8], origin: Origin) -> Result<StagedBatch> {
        self.check_writable()?;
        let checked = self.check_batch(batch, origin)?;
        if let Some(original) = self.screen(&checked)? {
            return Ok(StagedBatch {
                base_offset: original.base_offset,
                next_offset: original.last_offset + 1,
                position: self.staged_end(),
                len: 0,
                max_timestamp: checked.max_timestamp,
                duplicate: true,
            });
        }
        let (record_count, max_timestamp) = (checked.records, checked.max_timestamp);
        let base_offset = self.next_offset;
        set_base_offset(batch, base_offset).map_err(|source| self.invalid(source))?;
        let position = self.staged_end();
        let staged = StagedBatch {
            base_offset,
            next_offset: base_offset + i64::from(record_count),
            position,
            len: batch.len() as u64,
            max_timestamp,
            duplicate: false,
        };
        self.staging.batches.push_back(staged);
        self.staging.end = Some(position + staged.len);
        self.next_offset = staged.next_offset;
        self.remember(&checked, base_offset);
        Ok(staged)
    }

    /// Whether a batch of `len` bytes must go to a new segment (by size or age); the caller
    /// completes every write in flight, then calls [`PartitionLog::roll_now`].
    pub(crate) fn needs_roll(&self, len: u64) -> bool {
        let size = self.staged_end();
        if size == 0 {
            return false;
        }
        let full = size + len > self.config.segment_bytes;
        let old = self
            .config
            .segment_age
            .is_some_and(|age| self.active().age() >= age);
        full || old
    }

    /// Rolls to a new segment; only when nothing is staged.
    pub(crate) fn roll_now(&mut self) -> Result<()> {
        self.check_writable()?;
        if !self.staging.batches.is_empty() {
            return Err(Error::Invariant {
                what: "roll requested while writes are in flight".into(),
            });
        }
        self.staging.end = None;
        self.roll()
    }

    /// Publishes every staged batch that ends at or before `end` in the active segment: they
    /// were written (and synced, with `synced`). `batches`, when not empty, holds exactly those
    /// batches, in order, and is drained into the in-memory tail. Returns how many were
    /// published: none once the log is poisoned, whatever the write says.
    pub(crate) fn complete_through(
        &mut self,
        end: u64,
        synced: bool,
        batches: &mut Vec<BatchBuf>,
    ) -> usize {
        if self.poison().is_some() {
            batches.clear();
            return 0;
        }
        let active = self.active().clone();
        let mut published = 0;
        let mut last = None;
        let mut kept = batches.drain(..);
        let mut chunks = std::mem::take(&mut self.staging.chunks);
        let mut matches = true;
        while let Some(batch) = self.staging.batches.front().copied() {
            if batch.position + batch.len > end {
                break;
            }
            self.staging.batches.pop_front();
            active.index_batch(
                &mut self.tracker,
                batch.base_offset,
                batch.position,
                batch.max_timestamp,
                batch.len,
            );
            match kept.next() {
                // The bytes staged for this batch (it was stamped before it was copied).
                Some(bytes) if matches && bytes.len() as u64 == batch.len => {
                    chunks.push(super::tail::TailChunk {
                        segment: active.clone(),
                        position: batch.position,
                        base_offset: batch.base_offset,
                        next_offset: batch.next_offset,
                        bytes,
                    });
                }
                // A list that does not line up with the staged batches is never published.
                _ => matches = false,
            }
            last = Some(batch);
            published += 1;
        }
        matches &= kept.next().is_none();
        drop(kept);
        // The chunks go in before the watermark moves, so a reader that sees the new watermark
        // finds the bytes in memory (readers never look past the watermark either way).
        if matches {
            self.shared.tail.extend(chunks.drain(..));
        }
        chunks.clear();
        self.staging.chunks = chunks;
        if let Some(batch) = last {
            active.publish(
                batch.position + batch.len,
                batch.next_offset,
                batch.max_timestamp,
            );
            self.shared.watermarks.publish_written(batch.next_offset);
            if synced {
                self.publish_durable(batch.next_offset);
            }
        }
        published
    }

    /// Whether staged batches go into the in-memory tail, and become visible, at once
    /// ([`Visibility::Appended`](super::Visibility::Appended)) rather than when their write
    /// completes.
    pub(crate) fn tails_when_staged(&self) -> bool {
        self.config.visibility == super::Visibility::Appended && self.shared.tail.is_enabled()
    }

    /// Puts a just-staged batch (its bytes already copied for the write) in the in-memory tail
    /// and moves the appended watermark past it: consumers of an `Appended` log see it now.
    pub(crate) fn publish_staged(&mut self, batch: BatchBuf, staged: &StagedBatch) {
        let chunk = super::tail::TailChunk {
            segment: self.active().clone(),
            position: staged.position,
            base_offset: staged.base_offset,
            next_offset: staged.next_offset,
            bytes: batch,
        };
        // The chunk goes in before the watermark moves, so a reader that sees the watermark
        // finds the bytes.
        self.shared.tail.extend(std::iter::once(chunk));
        self.shared.watermarks.publish_appended(staged.next_offset);
    }

    /// Whether a completed write, after which the written watermark moved from
    /// `written_before`, gave readers anything new: always, unless the log made its batches
    /// visible at staging and every one of them was still in the tail (one evicted before its
    /// write completed becomes readable only now).
    pub(crate) fn completion_news_for_readers(&self, written_before: i64) -> bool {
        !self.tails_when_staged()
            || self
                .shared
                .tail
                .oldest_base()
                .is_none_or(|oldest| oldest > written_before)
    }

    /// Undoes the staging of batches whose write ran out of space: the next batch gets the
    /// first unpublished offset and position again, and the active segment is cut at its
    /// published end (synced; a rare path), since bytes of the undone writes may have landed
    /// past it. The caller must have failed the ticket of
    /// every one of the `expected` batches, and have no write of this log in flight; if the
    /// count does not match, the log is poisoned instead (something else was staged, and
    /// reusing its offsets could acknowledge two batches at one offset).
    pub(crate) fn discard_failed_writes(&mut self, expected: usize) -> Result<()> {
        self.check_writable()?;
        if self.staging.batches.len() != expected {
            let what = format!(
                "{} batches staged but {expected} failed writes to discard",
                self.staging.batches.len()
            );
            let path = self.active_path().to_owned();
            return Err(self.poison_with(
                super::StorageOp::DiscardFailed,
                path,
                &std::io::Error::other(what),
            ));
        }
        // Bytes of the undone writes may be in the file past the published end: a prefix of
        // the write that ran out of space, or a whole later write that did land. Cut them, so
        // that neither recovery nor a shorter next write can line them up after the log's end
        // (they hold the very offsets the next batches get). Rare, so synced at once.
        let published = self.active().size();
        let room = super::segment::Room::of(self.config.preallocate);
        if let Err(error) = self.active().cut(published, Some(room)) {
            let path = self.active_path().to_owned();
            return Err(self.poison_with(
                super::StorageOp::DiscardFailed,
                path,
                &std::io::Error::other(error.to_string()),
            ));
        }
        self.staging.batches.clear();
        self.staging.end = None;
        self.next_offset = self.active().next_offset();
        // Under `Appended` the undone batches were visible: take them back from the tail and
        // the watermark, so their offsets can name the next batches (see `Visibility`).
        self.shared.tail.truncate_from(self.next_offset);
        self.shared.watermarks.retract_appended(self.next_offset);
        // The discarded batches' offsets go to other batches: a retry of one is new again.
        self.producers.truncate_from(self.next_offset);
        Ok(())
    }

    /// The active segment's path, for a backend that opens and writes it by itself.
    pub(crate) fn active_path(&self) -> &Path {
        self.active().path()
    }

    /// Published bytes of the active segment from `from` to its end (for the O_DIRECT
    /// writer's partial tail block).
    pub(crate) fn active_bytes_from(&self, from: u64) -> &[u8] {
        let bytes = self.active().bytes();
        bytes
            .get(usize::try_from(from).unwrap_or(usize::MAX)..)
            .unwrap_or_default()
    }

    /// Whether completed writes should hand over a copy of their batches for the tail.
    pub(crate) fn keeps_tail(&self) -> bool {
        self.shared.tail.is_enabled()
    }

    pub(crate) fn published_size(&self) -> u64 {
        self.active().size()
    }

    fn staged_end(&self) -> u64 {
        self.staging.end.unwrap_or_else(|| self.active().size())
    }
}
