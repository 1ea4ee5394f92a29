//! The 61-byte RecordBatch v2 header, read in place through `zerocopy` big-endian types.
//!
//! Layout (byte offsets), exactly as Apache Kafka writes it:
//!
//! ```text
//!  0 baseOffset i64 |  8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32        | 21 attributes i16  | 23 lastOffsetDelta i32      | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordCount i32  | 61 records...
//! ```
//!
//! `batchLength` counts the bytes after itself, so a batch occupies `12 + batchLength` bytes.
//! The CRC-32C covers bytes 21..end; the base offset, the length, the leader epoch and the magic
//! are outside it, which is what lets the log stamp the base offset without re-checksumming.

use zerocopy::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::compression::Compression;
use super::error::RecordError;

/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength`'s count starts (base offset + the length field itself).
pub const LOG_OVERHEAD: usize = 12;
/// The only magic value this crate reads and writes.
pub const MAGIC_V2: i8 = 2;
/// Start of the CRC-covered region.
pub const CRC_START: usize = 21;
/// Smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

const COMPRESSION_MASK: i16 = 0b0111;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;

/// The fixed part of a RecordBatch v2, field for field.
///
/// Every field is a big-endian wrapper with alignment 1, so a header can be viewed in place from
/// any byte slice with [`BatchHeader::ref_from_prefix`].
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Debug)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub record_count: I32,
}

const _: () = assert!(size_of::<BatchHeader>() == HEADER_LEN);

/// How the timestamps of a batch were assigned (attribute bit 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl BatchHeader {
    /// Views the header at the start of `bytes`, which may hold more than one batch.
    pub fn ref_from_prefix(bytes: &[u8]) -> Result<&BatchHeader, RecordError> {
        <BatchHeader as FromBytes>::ref_from_prefix(bytes)
            .map(|(header, _rest)| header)
            .map_err(|_| RecordError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            })
    }

    /// Total bytes this batch occupies on disk, as its length field claims.
    ///
    /// A negative or impossibly small length is reported as an error, never wrapped around.
    pub fn total_len(&self) -> Result<usize, RecordError> {
        let length = self.batch_length.get();
        if length < MIN_BATCH_LENGTH {
            return Err(RecordError::InvalidLength { length });
        }
        // `length` is positive and an i32, so this cannot overflow a usize.
        Ok(LOG_OVERHEAD + length as usize)
    }

    pub fn compression(&self) -> Result<Compression, RecordError> {
        let id = (self.attributes.get() & COMPRESSION_MASK) as u8;
        Compression::from_id(id)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes.get() & TIMESTAMP_TYPE_BIT == 0 {
            TimestampType::CreateTime
        } else {
            TimestampType::LogAppendTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes.get() & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes.get() & CONTROL_BIT != 0
    }

    /// Offset of the last record, as the header claims (`baseOffset + lastOffsetDelta`).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .get()
            .saturating_add(i64::from(self.last_offset_delta.get()))
    }

    /// The offset the next batch in the log starts at.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
}

/// Builds the attributes word for a batch.
pub(crate) fn attributes(compression: Compression, transactional: bool) -> i16 {
    let mut word = i16::from(compression.id());
    if transactional {
        word |= TRANSACTIONAL_BIT;
    }
    word
}

/// Stamps `base_offset` into the first eight bytes of an encoded batch.
///
/// The CRC does not cover these bytes, so the batch stays valid: this is how the log assigns
/// offsets without re-encoding.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), RecordError> {
    let available = batch.len();
    let (header, _) =
        <BatchHeader as FromBytes>::mut_from_prefix(batch).map_err(|_| RecordError::Truncated {
            needed: HEADER_LEN,
            available,
        })?;
    header.base_offset.set(base_offset);
    Ok(())
}
