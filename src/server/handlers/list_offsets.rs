//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first
//! offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{respond, CloseReason, Reply};
use kafka_protocol::records::RecordBatchDecoder;
use strom_client::decompress_records;
use tracing::debug;

use crate::broker::{BrokerError, Partition};
use crate::protocol::Request;
use crate::server::errors::kafka_error;
use crate::server::Context;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: ListOffsetsRequest = req.decode()?;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match lookup(ctx, &topic.name.0, p.partition_index, p.timestamp) {
                        Ok((timestamp, offset)) => {
                            response.timestamp = timestamp;
                            response.offset = offset;
                            if req.version >= 4 {
                                response.leader_epoch = 0;
                            }
                        }
                        Err(e) => response.error_code = kafka_error(&e).code(),
                    }
                    response
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    respond(req, &ListOffsetsResponse::default().with_topics(topics))
}

/// (timestamp, offset) for one partition; (-1, -1) when no record is at or
/// after the timestamp.
fn lookup(
    ctx: &Context,
    topic: &str,
    index: i32,
    timestamp: i64,
) -> Result<(i64, i64), BrokerError> {
    let partition = ctx.broker.partition(topic, index)?;
    let (start, end) = partition.offsets()?;
    match timestamp {
        LATEST => Ok((-1, end)),
        EARLIEST => Ok((-1, start)),
        MAX_TIMESTAMP => max_timestamp(&partition),
        ts if ts >= 0 => match partition.offset_for_timestamp(ts)? {
            Some((batch_offset, batch_max)) => {
                Ok(first_record_at_or_after(&partition, batch_offset, ts)
                    .unwrap_or((batch_max, batch_offset)))
            }
            None => Ok((-1, -1)),
        },
        _ => Ok((-1, -1)),
    }
}

/// Within the batch at `batch_offset` (the first whose max timestamp reaches
/// `ts`), the first record whose own timestamp does, as Kafka answers:
/// (timestamp, offset). Compressed batches are decompressed to look.
fn first_record_at_or_after(
    partition: &Partition,
    batch_offset: i64,
    ts: i64,
) -> Option<(i64, i64)> {
    let mut batch = partition.read(batch_offset, 1).ok()?.records;
    // Capped: a batch that inflates past 64 MiB is not decoded (the answer
    // falls back to the batch's own offset and max timestamp).
    let records =
        RecordBatchDecoder::decode_with_custom_compression(&mut batch, Some(decompress_records))
            .inspect_err(
                |e| debug!(batch_offset, cause = %e, "cannot decode batch for a timestamp lookup"),
            )
            .ok()?;
    records
        .records
        .iter()
        .find(|r| r.timestamp >= ts)
        .map(|r| (r.timestamp, r.offset))
}

/// The record holding the largest timestamp (KIP-734): (timestamp, offset).
fn max_timestamp(partition: &Partition) -> Result<(i64, i64), BrokerError> {
    match partition.maintain(|log| log.max_timestamp())? {
        Some((batch_offset, max)) => {
            Ok(first_record_at_or_after(partition, batch_offset, max)
                .unwrap_or((max, batch_offset)))
        }
        None => Ok((-1, -1)),
    }
}
