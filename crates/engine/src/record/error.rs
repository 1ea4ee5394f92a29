//! Errors of the record format: what is wrong with a batch's bytes.

use super::compression::Compression;

/// Why a byte sequence is not a valid RecordBatch v2, or could not be built into one.
///
/// These errors carry no file or offset: the layers above (segment scan, log, CLI) attach where
/// the bytes came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes end before the batch or field does.
    #[error("truncated: {needed} bytes needed, {available} present")]
    Truncated {
        /// Bytes the batch or field needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The batch's length field cannot describe a batch.
    #[error("batch length field {length} is below the 49-byte minimum")]
    InvalidLength {
        /// The length field as read.
        length: i32,
    },
    /// The batch is larger than the configured `max_batch_bytes`.
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// The batch's size in bytes, header included.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The batch is not RecordBatch v2.
    #[error("unsupported magic {magic} (only RecordBatch v2, magic 2, is read)")]
    UnsupportedMagic {
        /// The magic byte as read.
        magic: i8,
    },
    /// The batch's checksum does not match its bytes: they are corrupt.
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch {
        /// The CRC-32C in the header.
        stored: u32,
        /// The CRC-32C of the bytes.
        computed: u32,
    },
    /// The attributes name a codec Kafka does not define.
    #[error("unknown compression codec id {id}")]
    UnknownCompression {
        /// The codec bits of the attributes.
        id: u8,
    },
    /// The codec refused the batch's payload.
    #[error("{codec} payload could not be decompressed: {source}")]
    Decompress {
        /// The batch's codec.
        codec: Compression,
        /// What the codec said.
        #[source]
        source: std::io::Error,
    },
    /// The codec failed to compress records being built.
    #[error("{codec} payload could not be compressed: {source}")]
    Compress {
        /// The codec.
        codec: Compression,
        /// What the codec said.
        #[source]
        source: std::io::Error,
    },
    /// Decompression stopped at `max_decompressed_bytes`, before the payload ended.
    #[error("decompressed records exceed the limit of {max} bytes")]
    DecompressedTooLarge {
        /// The limit in bytes.
        max: usize,
    },
    /// A varint runs past its maximum length or the end of the bytes.
    #[error("malformed varint")]
    MalformedVarint,
    /// A record inside the batch is malformed.
    #[error("record {index}: {reason}")]
    InvalidRecord {
        /// The record's position in the batch, from 0.
        index: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The header's record count disagrees with the records.
    #[error("header claims {declared} records, the payload holds {found}")]
    RecordCountMismatch {
        /// The count in the header.
        declared: i32,
        /// Records found.
        found: u32,
    },
    /// The header's last offset delta disagrees with the records.
    #[error("header claims last offset delta {declared}, the records end at delta {found}")]
    OffsetDeltaMismatch {
        /// The delta in the header.
        declared: i32,
        /// The last record's delta.
        found: i32,
    },
    /// Bytes remain after the last record the header announces.
    #[error("{trailing} bytes follow the last record")]
    TrailingBytes {
        /// How many.
        trailing: usize,
    },
    /// A batch was built or found with no record.
    #[error("a batch needs at least one record")]
    EmptyBatch,
}
