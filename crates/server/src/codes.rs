//! Engine errors as Kafka error codes.

use kafka_protocol::ResponseError;
use rill_engine::{Error, RecordError};

/// The Kafka error code a client should get for `error`.
pub fn code_of(error: &Error) -> i16 {
    let kind = match error {
        Error::UnknownTopic { .. } | Error::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        Error::InvalidTopicName { .. } => ResponseError::InvalidTopicException,
        Error::TopicExists { .. } => ResponseError::TopicAlreadyExists,
        Error::InvalidConfig { .. } => ResponseError::InvalidConfig,
        Error::InvalidBatch { source, .. } => return record_code(source),
        Error::SparseBatch { .. } => ResponseError::InvalidRecord,
        Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        Error::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
        Error::SendTimeout { .. } => ResponseError::RequestTimedOut,
        Error::StorageFull { .. }
        | Error::Io { .. }
        | Error::ProduceFailed { .. }
        | Error::Corrupt { .. }
        | Error::CorruptFile { .. } => ResponseError::KafkaStorageError,
        Error::Closed { .. } | Error::EngineClosed => ResponseError::NotLeaderOrFollower,
        _ => ResponseError::UnknownServerError,
    };
    kind.code()
}

/// The code for a batch that failed validation, as Kafka's broker tells them apart.
pub fn record_code(error: &RecordError) -> i16 {
    let kind = match error {
        RecordError::BatchTooLarge { .. } | RecordError::DecompressedTooLarge { .. } => {
            ResponseError::MessageTooLarge
        }
        RecordError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
        RecordError::Truncated { .. }
        | RecordError::InvalidLength { .. }
        | RecordError::CrcMismatch { .. }
        | RecordError::UnknownCompression { .. }
        | RecordError::Decompress { .. }
        | RecordError::MalformedVarint => ResponseError::CorruptMessage,
        _ => ResponseError::InvalidRecord,
    };
    kind.code()
}
