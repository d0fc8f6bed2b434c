//! OffsetFetch: a group's committed offsets (all of them when no topics are
//! named).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: OffsetFetchRequest = req.decode()?;
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let committed = ctx
        .broker
        .groups
        .committed(&request.group_id, wanted.as_deref());
    let topics = committed
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, c)| {
                            let p =
                                OffsetFetchResponsePartition::default().with_partition_index(index);
                            match c {
                                Some(c) => {
                                    let p = p
                                        .with_committed_offset(c.offset)
                                        .with_metadata(Some(StrBytes::from_string(c.metadata)));
                                    if req.version >= 5 {
                                        p.with_committed_leader_epoch(c.leader_epoch)
                                    } else {
                                        p
                                    }
                                }
                                None => p
                                    .with_committed_offset(-1)
                                    .with_metadata(Some(StrBytes::from_static_str(""))),
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    respond(req, &OffsetFetchResponse::default().with_topics(topics))
}
