//! OffsetCommit: checked against the group's generation, written durably,
//! then answered.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{respond, CloseReason, Reply};
use crate::broker::groups::CommitRequest;
use crate::broker::now_ms;
use crate::protocol::Request;
use crate::server::Context;

/// A partition and whether it may be committed.
type PartitionVerdict = (i32, Result<(), ResponseError>);

/// Blocking: fdatasyncs the offsets store.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: OffsetCommitRequest = req.decode()?;
    let broker = &ctx.broker;
    let max_metadata = broker.groups.config().offset_metadata_max_bytes as usize;
    // Per partition: Err(code) decided before the commit, or Ok.
    let mut checked: Vec<(String, Vec<PartitionVerdict>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let exists = broker.topic(&name);
        let mut partitions = Vec::new();
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_deref().unwrap_or_default();
            let verdict = if exists
                .as_ref()
                .and_then(|t| t.partition(p.partition_index))
                .is_none()
            {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                offsets.push((
                    name.clone(),
                    p.partition_index,
                    p.committed_offset,
                    if req.version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata.to_string(),
                ));
                Ok(())
            };
            partitions.push((p.partition_index, verdict));
        }
        checked.push((name, partitions));
    }
    let commit = CommitRequest {
        group_id: request.group_id.0.to_string(),
        generation: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        offsets,
    };
    let group_error = if request.group_id.is_empty() {
        Some(ResponseError::InvalidGroupId)
    } else {
        broker
            .groups
            .commit(&commit, now_ms())
            .err()
            .map(|e| e.code())
    };
    let topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(kafka_protocol::messages::TopicName(name.into()))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, verdict)| {
                            let code = match verdict {
                                Err(e) => e.code(),
                                Ok(()) => group_error.map_or(0, |e| e.code()),
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    respond(req, &OffsetCommitResponse::default().with_topics(topics))
}
