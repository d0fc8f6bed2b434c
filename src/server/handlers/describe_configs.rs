//! DescribeConfigs: a topic's effective configs, or the broker's.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::broker::{ConfigEntry, ConfigSource, ConfigType};
use crate::config::Config;
use crate::protocol::Request;
use crate::server::Context;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: DescribeConfigsRequest = req.decode()?;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match ctx.broker.topic(&resource.resource_name) {
                    Some(topic) => Ok(topic.configs.describe(&ctx.broker.config.log)),
                    None => Err((ResponseError::UnknownTopicOrPartition, "unknown topic")),
                },
                RESOURCE_BROKER if matches!(&*resource.resource_name, "0" | "") => {
                    Ok(broker_configs(&ctx.broker.config))
                }
                RESOURCE_BROKER => Err((ResponseError::InvalidRequest, "this is broker 0")),
                _ => Err((
                    ResponseError::InvalidRequest,
                    "only topic and broker configs can be described",
                )),
            };
            match entries {
                Ok(entries) => {
                    // Null or empty: every config (as Kafka does).
                    let keys = resource
                        .configuration_keys
                        .as_ref()
                        .filter(|k| !k.is_empty());
                    result.configs = entries
                        .into_iter()
                        .filter(|e| keys.is_none_or(|keys| keys.iter().any(|k| &**k == e.name)))
                        .map(|e| encode_entry(e, req.version))
                        .collect();
                }
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(StrBytes::from_static_str(message));
                }
            }
            result
        })
        .collect();
    respond(
        req,
        &DescribeConfigsResponse::default().with_results(results),
    )
}

fn encode_entry(e: ConfigEntry, version: i16) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(e.name))
        .with_value(Some(StrBytes::from_string(e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source as i8);
    if version >= 3 {
        out.config_type = e.config_type as i8;
    }
    out
}

/// The broker-level settings under their Kafka names.
fn broker_configs(config: &Config) -> Vec<ConfigEntry> {
    let defaults = Config::default();
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let opt_ms = |d: Option<std::time::Duration>| d.map_or("-1".to_string(), ms);
    let opt_bytes = |b: Option<u64>| b.map_or("-1".to_string(), |b| b.to_string());
    let entry = |name, value: String, default: String, config_type| ConfigEntry {
        name,
        source: if value == default {
            ConfigSource::Default
        } else {
            ConfigSource::StaticBroker
        },
        value,
        config_type,
        read_only: true,
    };
    let (c, d) = (config, &defaults);
    vec![
        entry("broker.id", "0".into(), "0".into(), ConfigType::Int),
        entry(
            "listeners",
            c.server.listen.clone(),
            d.server.listen.clone(),
            ConfigType::String,
        ),
        entry(
            "advertised.listeners",
            c.server.advertised_listener.clone(),
            d.server.advertised_listener.clone(),
            ConfigType::String,
        ),
        entry(
            "log.dirs",
            c.server.data_dir.display().to_string(),
            d.server.data_dir.display().to_string(),
            ConfigType::String,
        ),
        entry(
            "socket.request.max.bytes",
            c.server.socket_request_max_bytes.to_string(),
            d.server.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "max.connections",
            c.server.max_connections.to_string(),
            d.server.max_connections.to_string(),
            ConfigType::Int,
        ),
        entry(
            "auto.create.topics.enable",
            c.topics.auto_create.to_string(),
            d.topics.auto_create.to_string(),
            ConfigType::Boolean,
        ),
        entry(
            "num.partitions",
            c.topics.num_partitions.to_string(),
            d.topics.num_partitions.to_string(),
            ConfigType::Int,
        ),
        entry(
            "log.segment.bytes",
            c.log.segment_bytes.to_string(),
            d.log.segment_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "log.roll.ms",
            ms(c.log.segment_time),
            ms(d.log.segment_time),
            ConfigType::Long,
        ),
        entry(
            "log.retention.ms",
            opt_ms(c.log.retention_time),
            opt_ms(d.log.retention_time),
            ConfigType::Long,
        ),
        entry(
            "log.retention.bytes",
            opt_bytes(c.log.retention_bytes),
            opt_bytes(d.log.retention_bytes),
            ConfigType::Long,
        ),
        entry(
            "log.index.interval.bytes",
            c.log.index_interval_bytes.to_string(),
            d.log.index_interval_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "log.index.size.max.bytes",
            c.log.index_max_bytes.to_string(),
            d.log.index_max_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "message.max.bytes",
            c.log.message_max_bytes.to_string(),
            d.log.message_max_bytes.to_string(),
            ConfigType::Int,
        ),
        entry(
            "log.retention.check.interval.ms",
            ms(c.log.retention_check_interval),
            ms(d.log.retention_check_interval),
            ConfigType::Long,
        ),
        entry(
            "log.flush.interval.ms",
            ms(c.flush.interval),
            ms(d.flush.interval),
            ConfigType::Long,
        ),
        entry(
            "strom.flush.mode",
            format!("{:?}", c.flush.mode),
            format!("{:?}", d.flush.mode),
            ConfigType::String,
        ),
    ]
}
