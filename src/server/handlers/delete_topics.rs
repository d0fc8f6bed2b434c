//! DeleteTopics: by name (v1-5) or by topic id (v6); data leaves the disk
//! before the answer.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::errors::code_and_message;
use crate::server::Context;

/// Blocking: removes partition directories.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: DeleteTopicsRequest = req.decode()?;
    let broker = &ctx.broker;
    // (name if known, id if given)
    let targets: Vec<(Option<String>, uuid::Uuid)> = if req.version >= 6 {
        request
            .topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => (Some(name.0.to_string()), t.topic_id),
                None => (
                    broker.topic_by_id(t.topic_id).map(|t| t.name.clone()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let mut result = DeletableTopicResult::default()
                .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))));
            if req.version >= 6 {
                result.topic_id = id;
            }
            let outcome = match &name {
                Some(name) => broker.delete_topic(name).map_err(|e| code_and_message(&e)),
                None => Err((
                    ResponseError::UnknownTopicId.code(),
                    format!("no topic has id {id}"),
                )),
            };
            if let Err((code, message)) = outcome {
                result.error_code = code;
                if req.version >= 5 {
                    result.error_message = Some(StrBytes::from_string(message));
                }
            }
            result
        })
        .collect();
    respond(
        req,
        &DeleteTopicsResponse::default().with_responses(responses),
    )
}
