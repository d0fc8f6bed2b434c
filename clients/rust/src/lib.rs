//! strom-client: an async Rust client for strom and any broker that speaks the
//! Kafka protocol — a [`Producer`], a [`Consumer`] (standalone or in a group)
//! and an [`Admin`] client.
//!
//! ```text
//!  Producer ─┐                       ┌─ conn (writer task ─► TCP ─► reader task)
//!  Consumer ─┼─► Cluster (bootstrap, ┼─ conn   per broker, pipelined, versions
//!  Admin ────┘   metadata cache)     └─ conn   negotiated with ApiVersions
//! ```
//!
//! Requests are encoded and responses decoded with the `kafka-protocol` crate;
//! record batches (v2, with gzip / snappy / lz4 / zstd) are read with its
//! `RecordBatchDecoder` and written by the producer's own in-place builder.
//!
//! ```no_run
//! use strom_client::{Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetReset,
//!                    Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn demo() -> strom_client::Result<()> {
//! let admin = Admin::new(ClientConfig::new("127.0.0.1:9092")).await?;
//! admin.create_topics(&[NewTopic::new("demo", 3)]).await?;
//!
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivery = producer
//!     .send(ProducerRecord::new("demo").key("k1").value("hello").header("source", "docs"))
//!     .await?;
//! let meta = delivery.await?; // acknowledged: meta.partition, meta.offset
//! producer.close().await?;
//!
//! let mut config = ConsumerConfig::new("127.0.0.1:9092", Some("readers"));
//! config.auto_offset_reset = OffsetReset::Earliest;
//! let mut consumer = Consumer::new(config).await?;
//! consumer.subscribe(&["demo"])?;
//! let record = consumer.recv().await?;
//! println!("{}-{} @{}: {:?}", record.topic, record.partition, record.offset, record.value);
//! consumer.close().await?; // commits, then leaves the group
//! # let _ = meta;
//! # Ok(())
//! # }
//! ```
//!
//! The producer encodes record batches itself (`batch.rs`), keeping every
//! header in order. The consumer decodes with kafka-protocol, which stores a
//! record's headers in a map, so a header key repeated within one record keeps
//! only its last value when read back.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod accumulator;
mod admin;
mod assignor;
mod batch;
mod cluster;
mod compression;
mod conn;
mod consumer;
mod error;
mod offsets;
mod partitioner;
mod producer;
mod record;

pub use admin::{
    Admin, ConfigEntry, ConfigResource, GroupDescription, GroupListing, LogDirPartition,
    MemberDescription, NewTopic, SEGMENT_COUNT_TAG,
};
pub use assignor::Assignor;
pub use cluster::{ClientConfig, PartitionInfo, TopicInfo};
/// Decompresses the records of one record batch with the client's pure-Rust
/// codecs, failing instead of producing more than 64 MiB (a batch crafted to
/// inflate without bound). Fits
/// `kafka_protocol::records::RecordBatchDecoder::decode_with_custom_compression`.
pub use compression::decompress as decompress_records;
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, RebalanceEvent, Seek};
pub use error::{Error, Result};
pub use offsets::{OffsetAndTimestamp, EARLIEST, LATEST};
pub use partitioner::{murmur2, partition_for_key};
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig};
pub use record::{
    Compression, ConsumerRecord, Header, ProducerRecord, RecordMetadata, RecordRef, TopicPartition,
};
