//! Kafka's RecordBatch v2 (magic 2), byte for byte: the format of rill's logs on disk and of
//! every batch a producer hands over.
//!
//! - [`BatchBuilder`] encodes records (any of the five codecs) into a batch.
//! - [`Batch::parse`] validates a batch in place (length, magic, CRC-32C) without copying;
//!   [`Batch::records`] then iterates its records, decompressing first when needed.
//! - [`Batches`] walks batches laid end to end, stopping at the first invalid byte.
//! - [`set_base_offset`] stamps the base offset, which the CRC does not cover: the log assigns
//!   offsets without re-encoding a batch.
//!
//! Every length read from the input is checked against the bytes present and against
//! [`Limits`] before it is used, so hostile input gets a [`RecordError`], never a panic or an
//! allocation of the size it claims.

mod batch;
mod builder;
mod compression;
mod error;
mod fields;
mod header;
pub(crate) mod varint;

pub use batch::{Batch, Batches, InvalidBatch, Limits, RecordIter, Records};
pub use builder::{
    BatchBuilder, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
pub use compression::Compression;
pub use error::RecordError;
pub use fields::{Header, Headers, Record};
pub use header::{BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, TimestampType, set_base_offset};
