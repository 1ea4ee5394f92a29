//! Errors of the record format: what is wrong with a batch's bytes.

use super::compression::Compression;

/// Why a byte sequence is not a valid RecordBatch v2, or could not be built into one.
///
/// These errors carry no file or offset: the layers above (segment scan, log, CLI) attach where
/// the bytes came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("truncated: {needed} bytes needed, {available} present")]
    Truncated { needed: usize, available: usize },
    #[error("batch length field {length} is below the 49-byte minimum")]
    InvalidLength { length: i32 },
    #[error("batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge { size: usize, max: usize },
    #[error("unsupported magic {magic} (only RecordBatch v2, magic 2, is read)")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC-32C mismatch: header says {stored:#010x}, bytes give {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("unknown compression codec id {id}")]
    UnknownCompression { id: u8 },
    #[error("{codec} payload could not be decompressed: {source}")]
    Decompress {
        codec: Compression,
        #[source]
        source: std::io::Error,
    },
    #[error("{codec} payload could not be compressed: {source}")]
    Compress {
        codec: Compression,
        #[source]
        source: std::io::Error,
    },
    #[error("decompressed records exceed the limit of {max} bytes")]
    DecompressedTooLarge { max: usize },
    #[error("malformed varint")]
    MalformedVarint,
    #[error("record {index}: {reason}")]
    InvalidRecord { index: u32, reason: &'static str },
    #[error("header claims {declared} records, the payload holds {found}")]
    RecordCountMismatch { declared: i32, found: u32 },
    #[error("header claims last offset delta {declared}, the records end at delta {found}")]
    OffsetDeltaMismatch { declared: i32, found: i32 },
    #[error("{trailing} bytes follow the last record")]
    TrailingBytes { trailing: usize },
    #[error("a batch needs at least one record")]
    EmptyBatch,
}
