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
                check_assignments(topic).and_then(|()| {
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
/// only one possible on one broker: each new partition on broker 0 alone.
fn check_assignments(topic: &CreatePartitionsTopic) -> Result<(), (i16, String)> {
    let Some(assignments) = &topic.assignments else {
        return Ok(());
    };
    let bad = |message: String| Err((ResponseError::InvalidReplicaAssignment.code(), message));
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
