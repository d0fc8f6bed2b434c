//! The client's error type: Kafka error codes, I/O, protocol and usage errors.

use kafka_protocol::ResponseError;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error("kafka error {code} ({name}) {context}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        /// The Kafka error code (e.g. 3 = UNKNOWN_TOPIC_OR_PARTITION).
        code: i16,
        /// Kafka's name for the code, or "UNKNOWN".
        name: String,
        /// What the client was doing (e.g. "produce to t-0").
        context: String,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// A socket error talking to a broker.
    #[error("i/o error talking to {addr}: {source}")]
    Io {
        /// The broker address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The connection to a broker was closed while a request was outstanding.
    #[error("connection to {0} closed")]
    Disconnected(String),
    /// A request got no answer within the request timeout.
    #[error("{0} timed out after {1:?}")]
    Timeout(String, std::time::Duration),
    /// The broker does not support a version of an API this client can speak.
    #[error("broker {addr} does not support api key {api_key} at versions {ours}")]
    UnsupportedVersion {
        /// The broker address.
        addr: String,
        /// The Kafka API key.
        api_key: i16,
        /// The versions this client speaks.
        ours: String,
    },
    /// A response (or a record batch) could not be decoded or made no sense.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// None of the bootstrap addresses could be reached.
    #[error("no broker reachable (tried {0:?})")]
    NoBrokers(Vec<String>),
    /// A bad setting or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The producer, consumer or admin client has been closed.
    #[error("client closed")]
    Closed,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error for a non-zero Kafka error code.
    pub fn kafka(code: i16, context: impl Into<String>, message: Option<String>) -> Error {
        let name = ResponseError::try_from_code(code)
            .map(|e| format!("{e:?}"))
            .unwrap_or_else(|| "UNKNOWN".to_string());
        Error::Kafka {
            code,
            name,
            context: context.into(),
            message,
        }
    }

    /// `Ok(())` for code 0, else [`Error::Kafka`].
    pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(Error::kafka(code, context(), None))
        }
    }

    /// The Kafka error code, if this is a broker error.
    pub fn code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again (after a metadata refresh and a backoff) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => is_retriable_code(*code),
            Error::Io { .. }
            | Error::Disconnected(_)
            | Error::Timeout(..)
            | Error::NoBrokers(_) => true,
            _ => false,
        }
    }

    /// Whether the client should refresh metadata before retrying.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER,
            // NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, KAFKA_STORAGE_ERROR
            Error::Kafka { code, .. } => matches!(code, 3 | 5 | 6 | 14 | 15 | 16 | 56),
            Error::Io { .. } | Error::Disconnected(_) | Error::Timeout(..) => true,
            _ => false,
        }
    }
}

/// Kafka's retriable error codes (from `ResponseError::is_retriable`).
pub fn is_retriable_code(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}
