//! Reading a partition's log from any thread, in place.

use std::sync::Arc;

use super::Shared;
use super::segment::{Segment, header_at};
use super::tail::TailChunk;
use crate::error::{Error, Result};
use crate::record::{Batch, Batches, Limits};
use crate::topic::TopicPartition;

/// A cloneable, thread-safe read handle on one partition's log.
#[derive(Clone, Debug)]
pub struct LogReader {
    shared: Arc<Shared>,
}

impl LogReader {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    pub fn partition(&self) -> &TopicPartition {
        &self.shared.partition
    }

    /// The first offset still in the log (older ones were removed by retention).
    pub fn start_offset(&self) -> i64 {
        self.shared
            .with_table(|t| t.segments.first().map(|s| s.base_offset()))
            .flatten()
            .unwrap_or(0)
    }

    /// The offset after the last readable record (the visible watermark, per the log's
    /// [`Visibility`](super::Visibility)).
    pub fn end_offset(&self) -> i64 {
        self.shared.watermarks.visible()
    }

    /// Offsets below this are written to the file (possibly not yet synced).
    pub fn written_offset(&self) -> i64 {
        self.shared.watermarks.written()
    }

    /// Offsets below this have been synced to disk.
    pub fn durable_offset(&self) -> i64 {
        self.shared.watermarks.durable()
    }

    /// Why the partition stopped taking writes (fail-stop), if it did; reads go on.
    pub fn poison(&self) -> Option<&super::Poison> {
        self.shared.poison.get()
    }

    /// Whole batches starting with the one that holds `offset`, up to about `max_bytes` (at
    /// least one batch, however large, so a reader always progresses).
    ///
    /// The first batch may start before `offset`, as in Kafka: a batch is the unit of storage,
    /// and readers skip the records before the offset they asked for. Reading at the end of
    /// the log gives an empty slice; outside `[start, end]` it is an error.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<LogSlice> {
        let end = self.end_offset();
        let start = self.start_offset();
        if offset < start || offset > end {
            return Err(self.out_of_range(offset, start, end));
        }
        if offset == end {
            return Ok(LogSlice::empty(end));
        }
        if let Some(chunk) = self.shared.tail.find(offset) {
            return Ok(LogSlice::from_tail(
                chunk,
                offset,
                end,
                max_bytes,
                self.shared.limits,
            ));
        }
        let Some(mut segment) = self
            .shared
            .with_table(|t| t.floor(offset).cloned())
            .flatten()
        else {
            return Err(self.out_of_range(offset, self.start_offset(), end));
        };
        loop {
            if let Some(position) = batch_after(&segment, offset) {
                return Ok(LogSlice::collect(
                    segment,
                    position,
                    end,
                    max_bytes,
                    self.shared.limits,
                ));
            }
            // No complete batch of this segment ends after `offset`. If the log rolled past
            // the segment, every batch of it is published (a roll waits for its writes), and
            // an `offset` at or past its end is in a later segment. Otherwise the batch is not
            // written yet (`Visibility::Appended` shows batches before their write completes,
            // and the tail may have let this one go) or was published just now: the caller
            // reads again. Reading the next segment from its start then would skip `offset`.
            let base = segment.base_offset();
            match self.shared.with_table(|t| t.after(base).cloned()).flatten() {
                Some(next) if offset >= segment.next_offset() => segment = next,
                _ => return Ok(LogSlice::empty(offset)),
            }
        }
    }

    /// The offset of the first record with a timestamp at or after `timestamp_ms`, or `None`
    /// when every readable record is older.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<i64>> {
        let end = self.end_offset();
        let candidates: Vec<Arc<Segment>> = self
            .shared
            .with_table(|t| {
                t.segments
                    .iter()
                    .filter(|s| s.max_timestamp() >= timestamp_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for segment in candidates {
            let Some(position) = segment.position_of_time(timestamp_ms) else {
                continue;
            };
            let bytes = segment.bytes();
            let Some(rest) = usize::try_from(position).ok().and_then(|p| bytes.get(p..)) else {
                continue;
            };
            let batch =
                Batch::parse(rest, &self.shared.limits).map_err(|source| Error::Corrupt {
                    path: segment.path().to_owned(),
                    position,
                    source,
                })?;
            if batch.base_offset() >= end {
                return Ok(None);
            }
            let records = batch
                .records(&self.shared.limits)
                .map_err(|source| Error::Corrupt {
                    path: segment.path().to_owned(),
                    position,
                    source,
                })?;
            for record in records.iter() {
                let record = record.map_err(|source| Error::Corrupt {
                    path: segment.path().to_owned(),
                    position,
                    source,
                })?;
                if record.timestamp >= timestamp_ms {
                    return Ok(Some(record.offset));
                }
            }
        }
        Ok(None)
    }

    fn out_of_range(&self, offset: i64, start: i64, end: i64) -> Error {
        Error::OffsetOutOfRange {
            partition: self.shared.partition.clone(),
            offset,
            start,
            end,
        }
    }
}

/// Position in `segment` of the first complete batch that ends after `offset`, if one is
/// published.
///
/// The segment grows while this looks: the walk and the check here each read its published
/// size once, and the position is trusted only when a whole batch that ends after `offset`
/// is there when checked. A position at the end of an older, smaller size would start a slice
/// with batches entirely before `offset`, and its next offset would then send the reader back
/// to records it already had.
fn batch_after(segment: &Segment, offset: i64) -> Option<u64> {
    let position = segment.position_of(offset);
    let (header, _) = header_at(segment.bytes(), position)?;
    (header.next_offset() > offset).then_some(position)
}

/// Whole batches read in place from a segment's map. Holding a slice keeps its segment mapped,
/// even if the log rolls past it or retention deletes it meanwhile.
#[derive(Clone, Debug)]
pub struct LogSlice {
    source: Option<Source>,
    start: usize,
    end: usize,
    next_offset: i64,
    limits: Limits,
}

/// Where a slice's bytes live: a segment's map, or a chunk of the in-memory tail.
#[derive(Clone, Debug)]
enum Source {
    Segment(Arc<Segment>),
    Tail(crate::sync::Arc<TailChunk>),
}

impl Source {
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Segment(segment) => segment.bytes(),
            Source::Tail(chunk) => &chunk.bytes[..],
        }
    }
}

impl LogSlice {
    fn empty(next_offset: i64) -> Self {
        Self {
            source: None,
            start: 0,
            end: 0,
            next_offset,
            limits: Limits::default(),
        }
    }

    fn collect(
        segment: Arc<Segment>,
        position: u64,
        end_offset: i64,
        max_bytes: usize,
        limits: Limits,
    ) -> Self {
        let next_offset = segment.base_offset();
        Self::collect_from(
            Source::Segment(segment),
            next_offset,
            position,
            end_offset,
            max_bytes,
            limits,
        )
    }

    /// Batches from the tail chunk that holds `offset`.
    fn from_tail(
        chunk: crate::sync::Arc<TailChunk>,
        offset: i64,
        end_offset: i64,
        max_bytes: usize,
        limits: Limits,
    ) -> Self {
        let mut position = 0;
        while let Some((header, len)) = header_at(&chunk.bytes, position) {
            if header.next_offset() > offset {
                break;
            }
            position += len;
        }
        let next_offset = chunk.base_offset;
        Self::collect_from(
            Source::Tail(chunk),
            next_offset,
            position,
            end_offset,
            max_bytes,
            limits,
        )
    }

    fn collect_from(
        source: Source,
        first_offset: i64,
        position: u64,
        end_offset: i64,
        max_bytes: usize,
        limits: Limits,
    ) -> Self {
        let bytes = source.bytes();
        let mut end = position;
        let mut next_offset = first_offset;
        while let Some((header, len)) = header_at(bytes, end) {
            let first = end == position;
            let too_big = (end + len - position) as usize > max_bytes;
            if header.base_offset.get() >= end_offset || (too_big && !first) {
                break;
            }
            next_offset = header.next_offset();
            end += len;
        }
        Self {
            start: usize::try_from(position).unwrap_or(usize::MAX),
            end: usize::try_from(end).unwrap_or(usize::MAX),
            source: Some(source),
            next_offset,
            limits,
        }
    }

    /// The batches' bytes, exactly as stored.
    pub fn bytes(&self) -> &[u8] {
        self.source
            .as_ref()
            .and_then(|source| source.bytes().get(self.start..self.end))
            .unwrap_or(&[])
    }

    /// Whether the slice holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The offset to read from next: after the last batch of this slice.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// The segment file the batches were read from.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self.source.as_ref()? {
            Source::Segment(segment) => Some(segment.path()),
            Source::Tail(chunk) => Some(chunk.segment.path()),
        }
    }

    /// Byte position of the slice's first batch in its segment file.
    pub fn position(&self) -> u64 {
        let base = match &self.source {
            Some(Source::Tail(chunk)) => chunk.position,
            _ => 0,
        };
        base + self.start as u64
    }

    /// Whether the bytes come from the in-memory tail rather than a segment's map.
    pub fn is_from_memory(&self) -> bool {
        matches!(self.source, Some(Source::Tail(_)))
    }

    /// The batches, each validated as it is reached.
    ///
    /// Batches read from a segment's map get every check, the CRC included: the file is where
    /// corruption happens. Batches from the in-memory tail had their CRC checked by the shard,
    /// or computed by the producer's encoder, on their way in, and have not left this process's
    /// memory since (the base offset, the one field written after, is outside the CRC): their
    /// framing is checked again, their CRC is not recomputed, which was half of a consumer's
    /// CPU at the tail.
    pub fn batches(&self) -> Batches<'_> {
        match self.source {
            Some(Source::Tail(_)) => Batches::checked_before(self.bytes(), self.limits),
            _ => Batches::new(self.bytes(), self.limits),
        }
    }
}
