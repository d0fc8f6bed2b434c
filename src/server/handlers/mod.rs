//! One handler per API: decode, call the broker, encode. Dispatch is the one
//! `match` on the API key below; adding an API is one file and one arm.
//!
//! A handler runs its order-sensitive part (appends) when called, in request
//! order, and returns a [`Pending`] future for the rest (durability waits,
//! long polls), which the connection awaits in order.

mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod sync_group;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::Context;
use crate::metrics::{ApiLabels, Metrics};
use crate::protocol::frame::OutFrame;
use crate::protocol::splice::encode_response_spliced;
use crate::protocol::{encode_response, Parsed, Request, RequestError};

/// Why a connection must be closed instead of answered.
#[derive(Debug, thiserror::Error)]
pub enum CloseReason {
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("cannot encode {key:?} v{version} response: {message}")]
    Encode {
        key: ApiKey,
        version: i16,
        message: String,
    },
    #[error("acks=0 produce failed: {0}")]
    FailedAcksZero(String),
}

/// The response (a whole frame), or None when the API sends none.
pub type Reply = Option<OutFrame>;
pub type Pending = BoxFuture<'static, Result<Reply, CloseReason>>;

/// Starts handling a parsed request, counting and timing it.
pub fn dispatch(
    ctx: &Arc<Context>,
    parsed: Parsed,
    peer: SocketAddr,
) -> Result<Pending, CloseReason> {
    let api = match &parsed {
        Parsed::Request(req) => req.api_key,
        Parsed::ApiVersionsFallback { .. } => ApiKey::ApiVersions,
    };
    let started = Instant::now();
    let labels = ctx.metrics.api(&format!("{api:?}"));
    let count = |metrics: &Metrics, labels: &ApiLabels, failed: bool| {
        metrics.requests.get_or_create(labels).inc();
        if failed {
            metrics.request_errors.get_or_create(labels).inc();
        }
    };
    let pending = match route(ctx, parsed, peer) {
        Ok(p) => p,
        Err(e) => {
            count(&ctx.metrics, &labels, true);
            return Err(e);
        }
    };
    let metrics = ctx.metrics.clone();
    Ok(Box::pin(async move {
        let reply = pending.await;
        count(&metrics, &labels, reply.is_err());
        metrics
            .request_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        reply
    }))
}

/// The one match on the API key.
fn route(ctx: &Arc<Context>, parsed: Parsed, peer: SocketAddr) -> Result<Pending, CloseReason> {
    let req = match parsed {
        Parsed::ApiVersionsFallback { correlation_id } => {
            return Ok(ready(api_versions::fallback(correlation_id)));
        }
        Parsed::Request(req) => req,
    };
    match req.api_key {
        ApiKey::Produce => produce::handle(ctx, req),
        ApiKey::Fetch => Ok(fetch::handle(ctx.clone(), req)),
        ApiKey::ListOffsets => Ok(ready(list_offsets::handle(ctx, &req))),
        ApiKey::Metadata => Ok(blocking(ctx, req, metadata::handle)),
        ApiKey::ApiVersions => Ok(ready(api_versions::handle(&req))),
        ApiKey::CreateTopics => Ok(blocking(ctx, req, create_topics::handle)),
        ApiKey::DeleteTopics => Ok(blocking(ctx, req, delete_topics::handle)),
        ApiKey::DescribeConfigs => Ok(ready(describe_configs::handle(ctx, &req))),
        ApiKey::DescribeLogDirs => Ok(ready(describe_log_dirs::handle(ctx, &req))),
        ApiKey::IncrementalAlterConfigs => {
            Ok(blocking(ctx, req, incremental_alter_configs::handle))
        }
        ApiKey::FindCoordinator => Ok(ready(find_coordinator::handle(ctx, &req))),
        ApiKey::JoinGroup => Ok(join_group::handle(ctx.clone(), req, peer)),
        ApiKey::SyncGroup => Ok(sync_group::handle(ctx.clone(), req)),
        ApiKey::Heartbeat => Ok(ready(heartbeat::handle(ctx, &req))),
        ApiKey::LeaveGroup => Ok(ready(leave_group::handle(ctx, &req))),
        ApiKey::OffsetCommit => Ok(blocking(ctx, req, offset_commit::handle)),
        ApiKey::OffsetFetch => Ok(ready(offset_fetch::handle(ctx, &req))),
        ApiKey::ListGroups => Ok(ready(list_groups::handle(ctx, &req))),
        ApiKey::DescribeGroups => Ok(ready(describe_groups::handle(ctx, &req))),
        ApiKey::DeleteGroups => Ok(blocking(ctx, req, delete_groups::handle)),
        ApiKey::InitProducerId => Ok(blocking(ctx, req, init_producer_id::handle)),
        ApiKey::CreatePartitions => Ok(blocking(ctx, req, create_partitions::handle)),
        ApiKey::DeleteRecords => Ok(blocking(ctx, req, delete_records::handle)),
        // parse_request only lets through keys listed in SUPPORTED_APIS.
        other => Err(CloseReason::BadRequest(RequestError::UnknownApiKey {
            key: other as i16,
        })),
    }
}

/// A reply that is already computed.
fn ready(reply: Result<Reply, CloseReason>) -> Pending {
    Box::pin(std::future::ready(reply))
}

/// Runs a handler that touches the disk (topics, the offsets store) on the
/// blocking pool so it does not stall other connections.
fn blocking(
    ctx: &Arc<Context>,
    req: Request,
    handler: fn(&Context, &Request) -> Result<Reply, CloseReason>,
) -> Pending {
    let ctx = ctx.clone();
    Box::pin(async move {
        let key = req.api_key;
        let version = req.version;
        tokio::task::spawn_blocking(move || handler(&ctx, &req))
            .await
            .map_err(|e| CloseReason::Encode {
                key,
                version,
                message: format!("handler task failed: {e}"),
            })?
    })
}

/// Encodes `body` as the response to `req`.
fn respond<T: Encodable + HeaderVersion>(req: &Request, body: &T) -> Result<Reply, CloseReason> {
    encode_response(req.header.correlation_id, req.version, body)
        .map(|frame| Some(frame.into()))
        .map_err(|e| encode_failed(req, e))
}

/// [`respond`], writing the record `Bytes` in `records` from where they are
/// instead of copying them into the frame.
fn respond_spliced<T: Encodable + HeaderVersion>(
    req: &Request,
    body: &T,
    records: &[Bytes],
) -> Result<Reply, CloseReason> {
    encode_response_spliced(req.header.correlation_id, req.version, body, records)
        .map(Some)
        .map_err(|e| encode_failed(req, e))
}

fn encode_failed(req: &Request, e: anyhow::Error) -> CloseReason {
    CloseReason::Encode {
        key: req.api_key,
        version: req.version,
        message: e.to_string(),
    }
}
