//! IncrementalAlterConfigs: set or delete topic config overrides
//! (`strom topics alter`). Broker configs are static (broker.toml).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::broker::TopicConfigs;
use crate::protocol::Request;
use crate::server::errors::code_and_message;
use crate::server::Context;

const RESOURCE_TOPIC: i8 = 2;
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: IncrementalAlterConfigsRequest = req.decode()?;
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let outcome = alter(ctx, resource, request.validate_only);
            let (code, message) = match outcome {
                Ok(()) => (0, None),
                Err((code, message)) => (code, Some(StrBytes::from_string(message))),
            };
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    respond(
        req,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}

fn alter(
    ctx: &Context,
    resource: &kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if resource.resource_type != RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest.code(),
            "only topic configs can be altered; broker configs live in broker.toml".into(),
        ));
    }
    let mut changes = Vec::new();
    for c in &resource.configs {
        let value = match c.config_operation {
            OP_SET => Some(c.value.as_deref().unwrap_or_default().to_string()),
            OP_DELETE => None,
            op => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("config operation {op} (APPEND/SUBTRACT) is not supported: no list-valued topic configs"),
                ))
            }
        };
        changes.push((c.name.to_string(), value));
    }
    let name = resource.resource_name.as_str();
    if validate_only {
        let topic = ctx.broker.topic(name).ok_or((
            ResponseError::UnknownTopicOrPartition.code(),
            format!("unknown topic {name}"),
        ))?;
        let mut merged = topic.configs.0.clone();
        for (k, v) in &changes {
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        return TopicConfigs::from_pairs(
            merged.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
            &ctx.broker.config.log,
        )
        .map(drop)
        .map_err(|m| (ResponseError::InvalidConfig.code(), m));
    }
    ctx.broker
        .alter_topic_configs(name, &changes)
        .map_err(|e| code_and_message(&e))
}
