//! CreatePartitions: raises a topic's partition count (`kafka-topics
//! --alter --partitions`, `strom topics alter --partitions`).

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::errors::code_and_message;
use crate::server::Context;

/// Blocking: creates partition directories.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: CreatePartitionsRequest = req.decode()?;
    // Kafka refuses a topic named twice in one request, both times.
    let mut named: HashMap<&str, usize> = HashMap::new();
    for topic in &request.topics {
        *named.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let results = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.0.as_str();
            let outcome = if named[name] > 1 {
                Err((
                    ResponseError::InvalidRequest.code(),
                    format!("topic {name} appears more than once in the request"),
                ))
            } else {
                let current = ctx.broker.topic(name).map(|t| t.partitions.len() as i32);
                check_assignments(topic, current).and_then(|()| {
                    ctx.broker
                        .create_partitions(name, topic.count, request.validate_only)
                        .map_err(|e| code_and_message(&e))
                })
            };
            let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            if let Err((code, message)) = outcome {
                result.error_code = code;
                result.error_message = Some(StrBytes::from_string(message));
            }
            result
        })
        .collect();
    respond(
        req,
        &CreatePartitionsResponse::default().with_results(results),
    )
}

/// Manual assignments of the new partitions are accepted when they are the
/// only one possible on one broker: one per new partition (of a topic that
/// has `current` now, if it exists), each on broker 0 alone.
fn check_assignments(
    topic: &CreatePartitionsTopic,
    current: Option<i32>,
) -> Result<(), (i16, String)> {
    // Null (what clients send without a manual assignment) or empty: none.
    let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) else {
        return Ok(());
    };
    let bad = |message: String| Err((ResponseError::InvalidReplicaAssignment.code(), message));
    if let Some(current) = current.filter(|&c| topic.count > c) {
        let new = topic.count - current;
        if assignments.len() as i64 != i64::from(new) {
            return bad(format!(
                "{} assignment(s) for {new} new partition(s)",
                assignments.len()
            ));
        }
    }
    if assignments
        .iter()
        .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != 0)
    {
        return bad(
            "each new partition must be assigned to broker 0 alone (this is a single broker)"
                .into(),
        );
    }
    Ok(())
}
