//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first
//! offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{respond, CloseReason, Reply};
use crate::broker::BrokerError;
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
        MAX_TIMESTAMP => max_timestamp(&partition, start, end),
        ts if ts >= 0 => Ok(partition
            .offset_for_timestamp(ts)?
            .map(|(offset, ts)| (ts, offset))
            .unwrap_or((-1, -1))),
        _ => Ok((-1, -1)),
    }
}

/// The batch holding the largest timestamp (KIP-734).
fn max_timestamp(
    partition: &crate::broker::Partition,
    start: i64,
    end: i64,
) -> Result<(i64, i64), BrokerError> {
    if start == end {
        return Ok((-1, -1));
    }
    // TODO(before landing): storage Log::max_timestamp
    let _ = partition;
    Ok((-1, -1))
}
