//! Produce: validate and append each partition's batches now (in request
//! order), then, for acks=-1, wait for the group-committed fsync. Batches
//! of idempotent producers are deduplicated by the partition (an exact
//! retry gets its original offset); transactional produces are refused.

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::{respond, CloseReason, Pending, Reply};
use crate::broker::{BrokerError, Partition, Produced, ProducerError};
use crate::protocol::{frame, legacy_produce, Request, RequestError};
use crate::server::errors::code_and_message;
use crate::server::Context;

/// One partition's outcome before durability.
struct Appended {
    response: PartitionProduceResponse,
    /// The partition and end offset to fsync up to, for acks=-1.
    wait: Option<(Arc<Partition>, i64)>,
}

pub fn handle(ctx: &Arc<Context>, req: Request) -> Result<Pending, CloseReason> {
    if req.version < 3 {
        return Ok(Box::pin(std::future::ready(legacy(&req))));
    }
    let request: ProduceRequest = req.decode()?;
    let acks = request.acks;
    let wait_for_flush = acks == -1 && ctx.broker.acks_all_waits_for_flush();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let mut first_error: Option<String> = None;
    let transactional = request.transactional_id.as_ref().map(|t| t.0.to_string());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let outcome = if !matches!(acks, -1..=1) {
                Err((
                    ResponseError::InvalidRequiredAcks.code(),
                    format!("acks must be -1, 0 or 1, found {acks}"),
                ))
            } else if let Some(txn) = &transactional {
                Err(code_and_message(&BrokerError::from(
                    ProducerError::Transactional(format!("produce with transactional id {txn:?}")),
                )))
            } else {
                append(ctx, &name, data.index, data.records.as_deref())
            };
            let mut response = PartitionProduceResponse::default().with_index(data.index);
            let mut wait = None;
            match outcome {
                Ok((partition, produced, log_start)) => {
                    response.base_offset = produced.base_offset;
                    if req.version >= 5 {
                        response.log_start_offset = log_start;
                    }
                    if wait_for_flush {
                        wait = Some((partition, produced.durable_at));
                    }
                }
                Err((code, message)) => {
                    debug!(topic = %name, partition = data.index, code, %message, "produce refused");
                    first_error.get_or_insert_with(|| format!("{name}-{}: {message}", data.index));
                    response.error_code = code;
                    if req.version >= 8 {
                        response.error_message = Some(StrBytes::from_string(message));
                    }
                }
            }
            partitions.push(Appended { response, wait });
        }
        topics.push((name, partitions));
    }

    if acks == 0 {
        // No response at all; on failure Kafka closes the connection so the
        // producer notices.
        return Ok(Box::pin(std::future::ready(match first_error {
            Some(e) => Err(CloseReason::FailedAcksZero(e)),
            None => Ok(None),
        })));
    }
    let version = req.version;
    let metrics = ctx.metrics.clone();
    Ok(Box::pin(async move {
        let metrics = &metrics;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let waits = partitions.into_iter().map(|appended| async move {
                let mut response = appended.response;
                if let Some((partition, end)) = appended.wait {
                    let waited = std::time::Instant::now();
                    let durable = partition.wait_durable(end).await;
                    metrics
                        .flush_wait_seconds
                        .observe(waited.elapsed().as_secs_f64());
                    if let Err(e) = durable {
                        let (code, message) = code_and_message(&e);
                        response.error_code = code;
                        if version >= 8 {
                            response.error_message = Some(StrBytes::from_string(message));
                        }
                    }
                }
                response
            });
            let partition_responses = futures::future::join_all(waits).await;
            responses.push(
                TopicProduceResponse::default()
                    .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        name,
                    )))
                    .with_partition_responses(partition_responses),
            );
        }
        respond(&req, &ProduceResponse::default().with_responses(responses))
    }))
}

type AppendOutcome = Result<(Arc<Partition>, Produced, i64), (i16, String)>;

fn append(ctx: &Context, topic: &str, index: i32, records: Option<&[u8]>) -> AppendOutcome {
    let fail = |e: BrokerError| code_and_message(&e);
    let partition = ctx.broker.partition(topic, index).map_err(fail)?;
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Err((
            ResponseError::InvalidRecord.code(),
            "no records in produce request".into(),
        ));
    };
    let info = partition.append(records).map_err(fail)?;
    if !info.duplicate {
        let labels = ctx.metrics.topic(topic);
        ctx.metrics
            .bytes_in
            .get_or_create(&labels)
            .inc_by(records.len() as u64);
        let appended = (info.durable_at - info.base_offset).max(0) as u64;
        ctx.metrics
            .records_in
            .get_or_create(&labels)
            .inc_by(appended);
    }
    let log_start = partition.offsets().map(|(start, _)| start).unwrap_or(-1);
    Ok((partition, info, log_start))
}

/// Produce v0-2: advertised, but answered with UNSUPPORTED_VERSION.
fn legacy(req: &Request) -> Result<Reply, CloseReason> {
    let request =
        legacy_produce::decode(req.body.clone()).map_err(|message| RequestError::Decode {
            key: req.api_key,
            version: req.version,
            message,
        })?;
    if request.acks == 0 {
        return Err(CloseReason::FailedAcksZero(format!(
            "produce v{} is not supported (record batches need v3+)",
            req.version
        )));
    }
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&req.header.correlation_id.to_be_bytes());
    legacy_produce::encode_response(
        &request,
        req.version,
        ResponseError::UnsupportedVersion.code(),
        &mut out,
    );
    Ok(Some(frame::finish_frame(out).into()))
}
