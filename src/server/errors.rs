//! The one place where broker and storage errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use strom_storage::StorageError;
use tracing::error;

use crate::broker::{BrokerError, ProducerError};

/// The Kafka error for a broker error. I/O failures are logged here with
/// their cause, since the client only sees KAFKA_STORAGE_ERROR.
pub fn kafka_error(e: &BrokerError) -> ResponseError {
    match e {
        BrokerError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        BrokerError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        BrokerError::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig,
        BrokerError::InvalidRequest(_) => ResponseError::InvalidRequest,
        BrokerError::PolicyViolation(_) => ResponseError::PolicyViolation,
        BrokerError::CorruptLog(_) => ResponseError::CorruptMessage,
        BrokerError::Storage(s) => match s {
            StorageError::CorruptBatch { .. } => ResponseError::CorruptMessage,
            StorageError::InvalidBatch(_) => ResponseError::CorruptMessage,
            StorageError::InvalidRecord(_) => ResponseError::InvalidRecord,
            StorageError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
            StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            StorageError::Io { .. } | StorageError::Offline { .. } => {
                error!(cause = %s, "storage error");
                ResponseError::KafkaStorageError
            }
            #[allow(unreachable_patterns)]
            _ => {
                error!(cause = %s, "storage error");
                ResponseError::KafkaStorageError
            }
        },
        BrokerError::Metadata(m) => {
            error!(cause = %m, "metadata error");
            ResponseError::KafkaStorageError
        }
        BrokerError::Producer(p) => match p {
            ProducerError::StaleEpoch { .. } => ResponseError::InvalidProducerEpoch,
            ProducerError::OutOfOrder { .. } => ResponseError::OutOfOrderSequenceNumber,
            // Non-retriable: the producer must not be told to try again.
            ProducerError::Transactional(_) => ResponseError::InvalidTxnState,
        },
        BrokerError::InvalidProducerEpoch(_) => ResponseError::InvalidProducerEpoch,
        BrokerError::Internal(m) => {
            error!(cause = %m, "internal error");
            ResponseError::UnknownServerError
        }
    }
}

/// (code, message) for responses that carry both.
pub fn code_and_message(e: &BrokerError) -> (i16, String) {
    (kafka_error(e).code(), e.to_string())
}
