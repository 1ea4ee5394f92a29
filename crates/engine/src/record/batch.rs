//! Validating a batch and iterating its records.

use std::borrow::Cow;

use super::compression::{self, Compression};
use super::error::RecordError;
use super::fields::{Record, RecordBase, parse_record};
use super::header::{BatchHeader, CRC_START, HEADER_LEN, MAGIC_V2, TimestampType};

/// Bounds on what reading a batch may cost. Checked before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest batch accepted, header included (Kafka's `max.message.bytes`).
    pub max_batch_bytes: usize,
    /// Largest records section a compressed batch may expand to.
    pub max_decompressed_bytes: usize,
}

impl Limits {
    /// Kafka's default `max.message.bytes`: 1 MiB.
    pub const DEFAULT_MAX_BATCH_BYTES: usize = 1024 * 1024;
    /// 64 MiB: room for a well-compressed maximal batch, and a bound on what a hostile one
    /// can make the reader allocate.
    pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_bytes: Self::DEFAULT_MAX_BATCH_BYTES,
            max_decompressed_bytes: Self::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// A batch whose framing, magic and CRC have been checked, viewed in place.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    bytes: &'a [u8],
    header: &'a BatchHeader,
}

impl<'a> Batch<'a> {
    /// Validates the batch at the start of `bytes` (which may hold more after it).
    ///
    /// Checks, in order: the header is present, the length field is sane and within
    /// `limits.max_batch_bytes`, the bytes it claims are present, the magic is 2, and the
    /// CRC-32C over bytes 21..end matches. Records are checked lazily by [`Batch::records`].
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Self, RecordError> {
        let batch = Self::parse_framing(bytes, limits)?;
        let computed = crc32c::crc32c(&batch.bytes[CRC_START..]);
        let stored = batch.header.crc.get();
        if computed != stored {
            return Err(RecordError::CrcMismatch { stored, computed });
        }
        Ok(batch)
    }

    /// [`Batch::parse`] without the CRC: every framing check (header present, sane length
    /// within the limit, bytes present, magic 2), so walking the batch stays memory-safe and
    /// bounded, but the content is taken as it is.
    ///
    /// Only for bytes whose CRC was computed or checked in this process and that nothing has
    /// changed since (the CRC does not cover the base offset, the one field the log writes):
    /// a batch the engine's own builder just encoded. Bytes from a file or a caller need
    /// [`Batch::parse`].
    pub(crate) fn parse_framing(bytes: &'a [u8], limits: &Limits) -> Result<Self, RecordError> {
        let header = BatchHeader::ref_from_prefix(bytes)?;
        let size = header.total_len()?;
        if size > limits.max_batch_bytes {
            return Err(RecordError::BatchTooLarge {
                size,
                max: limits.max_batch_bytes,
            });
        }
        let bytes = bytes.get(..size).ok_or(RecordError::Truncated {
            needed: size,
            available: bytes.len(),
        })?;
        if header.magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic {
                magic: header.magic,
            });
        }
        Ok(Self { bytes, header })
    }

    pub fn header(&self) -> &'a BatchHeader {
        self.header
    }

    /// The whole batch, header included, exactly as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn base_offset(&self) -> i64 {
        self.header.base_offset.get()
    }

    pub fn last_offset(&self) -> i64 {
        self.header.last_offset()
    }

    pub fn next_offset(&self) -> i64 {
        self.header.next_offset()
    }

    pub fn record_count(&self) -> i32 {
        self.header.record_count.get()
    }

    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp.get()
    }

    pub fn compression(&self) -> Result<Compression, RecordError> {
        self.header.compression()
    }

    /// The records section, decompressed if needed (bounded by `limits`).
    ///
    /// For an uncompressed batch this borrows the batch's bytes.
    pub fn records(&self, limits: &Limits) -> Result<Records<'a>, RecordError> {
        let declared = self.header.record_count.get();
        if declared < 0 {
            return Err(RecordError::RecordCountMismatch { declared, found: 0 });
        }
        let raw = &self.bytes[HEADER_LEN..];
        let payload = match self.compression()? {
            Compression::None => Cow::Borrowed(raw),
            codec => Cow::Owned(compression::decompress(
                codec,
                raw,
                limits.max_decompressed_bytes,
            )?),
        };
        let log_append_time = match self.header.timestamp_type() {
            TimestampType::CreateTime => None,
            TimestampType::LogAppendTime => Some(self.max_timestamp()),
        };
        Ok(Records {
            payload,
            base: RecordBase {
                offset: self.base_offset(),
                timestamp: self.header.base_timestamp.get(),
                log_append_time,
            },
            declared,
            last_offset_delta: self.header.last_offset_delta.get(),
        })
    }
}

/// A batch's records section, ready to iterate.
#[derive(Debug)]
pub struct Records<'a> {
    payload: Cow<'a, [u8]>,
    base: RecordBase,
    declared: i32,
    last_offset_delta: i32,
}

impl<'a> Records<'a> {
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter {
            rest: &self.payload,
            base: self.base,
            declared: self.declared,
            last_offset_delta: self.last_offset_delta,
            previous_delta: None,
            index: 0,
            done: false,
        }
    }

    /// Number of records the header declares.
    pub fn declared_len(&self) -> usize {
        self.declared as usize
    }
}

/// Iterates a batch's records, checking each; yields at most one error, then stops.
///
/// Beyond each record's own framing it checks that offset deltas increase and stay within the
/// header's last offset delta, that the count matches the header, and that no bytes trail.
#[derive(Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    base: RecordBase,
    declared: i32,
    last_offset_delta: i32,
    previous_delta: Option<i32>,
    index: u32,
    done: bool,
}

impl<'a> RecordIter<'a> {
    fn next_record(&mut self) -> Result<Option<Record<'a>>, RecordError> {
        let declared = self.declared as u32;
        if self.index == declared {
            if !self.rest.is_empty() {
                return Err(RecordError::TrailingBytes {
                    trailing: self.rest.len(),
                });
            }
            return Ok(None);
        }
        if self.rest.is_empty() {
            return Err(RecordError::RecordCountMismatch {
                declared: self.declared,
                found: self.index,
            });
        }
        let (record, delta) = parse_record(&mut self.rest, self.index, &self.base)?;
        let increasing = self.previous_delta.is_none_or(|previous| delta > previous);
        if delta < 0 || !increasing || delta > self.last_offset_delta {
            return Err(RecordError::OffsetDeltaMismatch {
                declared: self.last_offset_delta,
                found: delta,
            });
        }
        self.previous_delta = Some(delta);
        self.index += 1;
        Ok(Some(record))
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// A batch that failed validation, and where it starts in the scanned bytes.
#[derive(Debug, thiserror::Error)]
#[error("invalid batch at byte {position}: {source}")]
pub struct InvalidBatch {
    pub position: u64,
    #[source]
    pub source: RecordError,
}

/// Walks batches laid end to end (a segment file, a dump), validating each.
///
/// Yields `(position, batch)` pairs and, at the first invalid byte, one error that names the
/// position; then stops. A clean end of input ends the iteration without error.
#[derive(Debug)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    position: usize,
    limits: Limits,
    /// Whether each batch's CRC is checked (always, but for bytes already checked in memory).
    check_crc: bool,
    done: bool,
}

impl<'a> Batches<'a> {
    pub fn new(bytes: &'a [u8], limits: Limits) -> Self {
        Self {
            bytes,
            position: 0,
            limits,
            check_crc: true,
            done: false,
        }
    }

    /// As [`Batches::new`], framing checked but not CRCs (see [`Batch::parse_framing`]): for
    /// batches whose CRC this process computed or checked and that have stayed in its memory
    /// since, never for bytes read from a file.
    pub(crate) fn checked_before(bytes: &'a [u8], limits: Limits) -> Self {
        Self {
            check_crc: false,
            ..Self::new(bytes, limits)
        }
    }

    /// Bytes consumed by the valid batches yielded so far.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(u64, Batch<'a>), InvalidBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position >= self.bytes.len() {
            return None;
        }
        let position = self.position;
        let rest = &self.bytes[position..];
        let parsed = if self.check_crc {
            Batch::parse(rest, &self.limits)
        } else {
            Batch::parse_framing(rest, &self.limits)
        };
        match parsed {
            Ok(batch) => {
                self.position += batch.size_bytes();
                Some(Ok((position as u64, batch)))
            }
            Err(source) => {
                self.done = true;
                Some(Err(InvalidBatch {
                    position: position as u64,
                    source,
                }))
            }
        }
    }
}
