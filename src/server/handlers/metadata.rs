//! Metadata: this broker, and the topics asked for (auto-creating them when
//! the client and the broker allow it).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::broker::{validate_topic_name, Topic};
use crate::protocol::Request;
use crate::server::errors::kafka_error;
use crate::server::Context;

/// Blocking: may create topics.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: MetadataRequest = req.decode()?;
    let broker = &ctx.broker;
    // v0 has no null: an empty list means every topic. v1+: null = all.
    let wanted: Option<Vec<MetadataRequestTopicRef>> = match request.topics {
        None => None,
        Some(list) if list.is_empty() && req.version == 0 => None,
        Some(list) => Some(
            list.into_iter()
                .map(|t| MetadataRequestTopicRef {
                    name: t.name.map(|n| n.0.to_string()),
                    id: t.topic_id,
                })
                .collect(),
        ),
    };
    let allow_create =
        broker.config.topics.auto_create && (req.version < 4 || request.allow_auto_topic_creation);

    let topics = match wanted {
        None => broker
            .topics()
            .iter()
            .map(|t| describe_topic(t, req.version))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|wanted| {
                let found = match (&wanted.name, wanted.id) {
                    (Some(name), _) => match validate_topic_name(name) {
                        Err(e) => Err(kafka_error(&e)),
                        Ok(()) if allow_create => broker
                            .get_or_create_topic(name)
                            .map_err(|e| kafka_error(&e)),
                        Ok(()) => broker
                            .topic(name)
                            .ok_or(ResponseError::UnknownTopicOrPartition),
                    },
                    (None, id) => broker.topic_by_id(id).ok_or(ResponseError::UnknownTopicId),
                };
                match found {
                    Ok(topic) => describe_topic(&topic, req.version),
                    Err(code) => MetadataResponseTopic::default()
                        .with_error_code(code.code())
                        .with_name(wanted.name.map(|n| TopicName(StrBytes::from_string(n))))
                        .with_topic_id(wanted.id),
                }
            })
            .collect(),
    };

    let (host, port) = &ctx.advertised;
    let response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_string(host.clone()))
            .with_port(i32::from(*port))])
        .with_cluster_id((req.version >= 2).then(|| StrBytes::from_string(ctx.cluster_id.clone())))
        .with_controller_id(BrokerId(0))
        .with_topics(topics);
    respond(req, &response)
}

struct MetadataRequestTopicRef {
    name: Option<String>,
    id: uuid::Uuid,
}

fn describe_topic(topic: &Topic, version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let partition = MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(0))
                .with_replica_nodes(vec![BrokerId(0)])
                .with_isr_nodes(vec![BrokerId(0)]);
            if version >= 7 {
                partition.with_leader_epoch(0)
            } else {
                partition
            }
        })
        .collect();
    let response = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_partitions(partitions);
    if version >= 10 {
        response.with_topic_id(topic.id)
    } else {
        response
    }
}
