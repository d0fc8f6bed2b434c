//! CreateTopics: partitions, per-topic configs, validate_only.

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::broker::{BrokerError, NewTopic, TopicConfigs};
use crate::protocol::Request;
use crate::server::errors::code_and_message;
use crate::server::Context;

/// Blocking: creates partition directories.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: CreateTopicsRequest = req.decode()?;
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut new = NewTopic {
            name: topic.name.0.to_string(),
            partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            configs: topic
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        };
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if let Err(e) = manual_assignment(topic, &mut new) {
            Err(e)
        } else if request.validate_only {
            broker.validate_new_topic(&new).map(|(p, c)| (None, p, c))
        } else {
            broker
                .create_topic(&new)
                .map(|t| (Some(t.id), t.partitions.len() as i32, t.configs.clone()))
        };
        match outcome {
            Ok((id, partitions, configs)) => {
                if req.version >= 5 {
                    result.num_partitions = partitions;
                    result.replication_factor = 1;
                    result.configs = Some(describe(&configs, ctx));
                }
                if req.version >= 7 {
                    result.topic_id = id.unwrap_or_default();
                }
            }
            Err(e) => {
                let (code, message) = code_and_message(&e);
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
                if req.version >= 5 {
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
        }
        results.push(result);
    }
    respond(req, &CreateTopicsResponse::default().with_topics(results))
}

/// Manual replica assignment is accepted when it is the only one possible
/// on one broker: partitions 0..n, each on broker 0 alone.
fn manual_assignment(
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    new: &mut NewTopic,
) -> Result<(), BrokerError> {
    if topic.assignments.is_empty() {
        return Ok(());
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(BrokerError::InvalidRequest(
            "num_partitions and replication_factor must be -1 with a manual assignment".into(),
        ));
    }
    let n = topic.assignments.len() as i32;
    let mut seen = vec![false; n as usize];
    for a in &topic.assignments {
        let on_broker_0 = a.broker_ids.len() == 1 && a.broker_ids[0].0 == 0;
        if !on_broker_0 {
            return Err(BrokerError::InvalidReplicationFactor(format!(
                "partition {} must be assigned to broker 0 alone (this is a single broker)",
                a.partition_index
            )));
        }
        match usize::try_from(a.partition_index)
            .ok()
            .and_then(|i| seen.get_mut(i))
        {
            Some(slot) if !*slot => *slot = true,
            _ => {
                return Err(BrokerError::InvalidPartitions(format!(
                    "manual assignment must name partitions 0..{n} once each; found {}",
                    a.partition_index
                )))
            }
        }
    }
    new.partitions = n;
    Ok(())
}

fn describe(configs: &TopicConfigs, ctx: &Context) -> Vec<CreatableTopicConfigs> {
    configs
        .describe(&ctx.broker.config.log)
        .into_iter()
        .map(|e| {
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(e.name))
                .with_value(Some(StrBytes::from_string(e.value)))
                .with_config_source(e.source as i8)
        })
        .collect()
}
