//! strom: a persistent, log-based message broker that speaks the Apache
//! Kafka wire protocol, in one binary.
//!
//! ```text
//!  Kafka clients ──TCP──► server::connection ──► protocol (frame, header)
//!                                │                      │
//!                                ▼                      ▼
//!                     server::handlers::<api>  ◄── decode body (kafka-protocol)
//!                                │
//!                                ▼
//!                     broker (topics, partitions, metadata store)
//!                                │
//!                                ▼
//!                     strom_storage::Log (mmap'd segments, group commit)
//! ```
//!
//! A produce request is framed and parsed by [`protocol`], dispatched by
//! [`server`] to its handler, which appends through [`broker`] to the
//! partition's [`strom_storage::Log`] in request order and answers once the
//! requested durability holds. Fetches read zero-copy views of the segment
//! maps and long-poll on the partition's end offset.

#![deny(unsafe_code)]

pub mod alloc;
pub mod broker;
pub mod config;
pub mod metrics;
pub mod protocol;
pub mod serve;
pub mod server;

/// Huge allocations become lazily committed mappings, so a hostile array
/// length in a request cannot abort the process (see [`alloc`]).
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;
