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
        // A batch that failed answers with the code of what failed it; a cause with no code
        // of its own is the storage's.
        Error::ProduceFailed { source, .. } => match code_of(source) {
            code if code == ResponseError::UnknownServerError.code() => {
                ResponseError::KafkaStorageError
            }
            code => return code,
        },
        Error::StorageFull { .. }
        | Error::Io { .. }
        | Error::Corrupt { .. }
        | Error::CorruptFile { .. } => ResponseError::KafkaStorageError,
        Error::Closed { .. } | Error::EngineClosed => ResponseError::NotLeaderOrFollower,
        // What Kafka's log answers a produce with: an older epoch is INVALID_PRODUCER_EPOCH
        // (PRODUCER_FENCED is the transaction coordinator's), a gap OUT_OF_ORDER_SEQUENCE.
        Error::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        Error::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        Error::InvalidProducerFields { .. } => ResponseError::InvalidRecord,
        // A retry whose first send is still being written: retriable, and the client sends
        // the same sequence again, which then gets the first send's offsets.
        Error::DuplicateInFlight { .. } => ResponseError::RequestTimedOut,
        // Kafka refuses a client's control batch as an invalid record; a transactional batch
        // outside any transaction is INVALID_TXN_STATE, which clients do not retry.
        Error::TransactionalBatch { control: true, .. } => ResponseError::InvalidRecord,
        Error::TransactionalBatch { control: false, .. } => ResponseError::InvalidTxnState,
        Error::ProducerIdsExhausted { .. } => ResponseError::UnknownServerError,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kafka_protocol::ResponseError;
    use rill_engine::{Error, TopicName, TopicPartition};

    use super::code_of;

    fn partition() -> TopicPartition {
        let topic = TopicName::new("t").unwrap_or_else(|error| panic!("{error}"));
        TopicPartition::new(topic, 0)
    }

    fn failed(source: Error) -> Error {
        Error::ProduceFailed {
            partition: partition(),
            source: Arc::new(source),
        }
    }

    #[test]
    fn a_failed_batch_answers_with_the_code_of_its_cause() {
        let timed_out = failed(Error::SendTimeout {
            partition: partition(),
        });
        assert_eq!(code_of(&timed_out), ResponseError::RequestTimedOut.code());
        assert_eq!(
            code_of(&failed(Error::EngineClosed)),
            ResponseError::NotLeaderOrFollower.code()
        );
        // A cause with no code of its own is a storage error, not an unknown one.
        let broken = failed(Error::Invariant {
            what: "test".into(),
        });
        assert_eq!(code_of(&broken), ResponseError::KafkaStorageError.code());
    }
}
