//! DescribeLogDirs: each partition's size on disk (and, in a tagged field,
//! its segment count) — what `strom topics describe` shows.

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::Context;

/// The partition tagged field carrying the segment count (i32, big-endian);
/// strom-client reads it, other clients skip it. Sent on v2+ (flexible) only.
pub const SEGMENT_COUNT_TAG: i32 = 10_000;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: DescribeLogDirsRequest = req.decode()?;
    // Null: every topic. An empty partition list: every partition of that topic.
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        None => ctx
            .broker
            .topics()
            .iter()
            .map(|t| (t.name.clone(), Vec::new()))
            .collect(),
        Some(topics) => topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect(),
    };
    let mut topics = Vec::new();
    for (name, asked) in wanted {
        // Unknown topics and partitions are left out, as Kafka does.
        let Some(topic) = ctx.broker.topic(&name) else {
            continue;
        };
        let mut partitions = Vec::new();
        for partition in &topic.partitions {
            let index = partition.index;
            if !asked.is_empty() && !asked.contains(&index) {
                continue;
            }
            let Ok((size, segments)) =
                partition.maintain(|log| Ok((log.size_bytes(), log.segment_count())))
            else {
                continue; // offline: nothing trustworthy to report
            };
            let mut p = DescribeLogDirsPartition::default()
                .with_partition_index(index)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX));
            if req.version >= 2 {
                let count = i32::try_from(segments).unwrap_or(i32::MAX);
                p.unknown_tagged_fields.insert(
                    SEGMENT_COUNT_TAG,
                    Bytes::copy_from_slice(&count.to_be_bytes()),
                );
            }
            partitions.push(p);
        }
        topics.push(
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions),
        );
    }
    let dir = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(
            ctx.broker.data_dir().display().to_string(),
        ))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    respond(
        req,
        &DescribeLogDirsResponse::default().with_results(vec![dir]),
    )
}
