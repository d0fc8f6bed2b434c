//! Records as the producer takes them and the consumer hands them out.

use bytes::Bytes;

/// Batch compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing, as Kafka uses it).
    Snappy,
    /// LZ4 frame.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Every codec, for tests and tools.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    pub(crate) fn to_protocol(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression as C;
        match self {
            Compression::None => C::None,
            Compression::Gzip => C::Gzip,
            Compression::Snappy => C::Snappy,
            Compression::Lz4 => C::Lz4,
            Compression::Zstd => C::Zstd,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "snappy" => Compression::Snappy,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            other => {
                return Err(crate::Error::Config(format!(
                    "compression: expected none|gzip|snappy|lz4|zstd, found {other:?}"
                )))
            }
        })
    }
}

/// A record header (Kafka allows repeated keys; order is kept).
pub type Header = (String, Option<Bytes>);

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Topic to send to.
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (hashed by the default partitioner).
    pub key: Option<Bytes>,
    /// Value; `None` is a tombstone.
    pub value: Option<Bytes>,
    /// Headers.
    pub headers: Vec<Header>,
    /// Create time in ms since the epoch; `None` = now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A record for `topic` with no key, value or headers yet.
    pub fn new(topic: impl Into<String>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            ..Default::default()
        }
    }
    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    /// Sets the value.
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }
    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
    /// Pins the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    /// Sets the create time (ms since the epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// A record to send whose bytes are borrowed from the caller.
/// [`Producer::send_ref`](crate::Producer::send_ref) copies them straight
/// into the partition's batch, so sending one allocates nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordRef<'a> {
    /// Topic to send to.
    pub topic: &'a str,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (hashed by the default partitioner).
    pub key: Option<&'a [u8]>,
    /// Value; `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Headers, in order (repeated keys are kept).
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// Create time in ms since the epoch; `None` = now.
    pub timestamp: Option<i64>,
}

impl<'a> RecordRef<'a> {
    /// A record for `topic` with no key, value or headers yet.
    pub fn new(topic: &'a str) -> RecordRef<'a> {
        RecordRef {
            topic,
            ..Default::default()
        }
    }
    /// Sets the key.
    pub fn key(mut self, key: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.key = Some(key.as_ref());
        self
    }
    /// Sets the value.
    pub fn value(mut self, value: &'a (impl AsRef<[u8]> + ?Sized)) -> Self {
        self.value = Some(value.as_ref());
        self
    }
    /// Sets the headers.
    pub fn headers(mut self, headers: &'a [(&'a str, Option<&'a [u8]>)]) -> Self {
        self.headers = headers;
        self
    }
    /// Pins the partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    /// Sets the create time (ms since the epoch).
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Where a sent record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition; -1 when acks=0 (the broker does not say).
    pub offset: i64,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp (ms since the epoch).
    pub timestamp: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
