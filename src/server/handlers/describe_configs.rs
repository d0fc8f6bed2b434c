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

fn ms(d: std::time::Duration) -> String {
    d.as_millis().to_string()
}

/// How to read one broker setting, under its Kafka name, from a config.
type Getter = fn(&Config) -> String;

/// The broker-level settings DescribeConfigs shows, with their types.
const BROKER_CONFIGS: &[(&str, ConfigType, Getter)] = &[
    ("broker.id", ConfigType::Int, |_| "0".into()),
    ("listeners", ConfigType::String, |c| c.server.listen.clone()),
    ("advertised.listeners", ConfigType::String, |c| {
        c.server.advertised_listener.clone()
    }),
    ("log.dirs", ConfigType::String, |c| {
        c.server.data_dir.display().to_string()
    }),
    ("socket.request.max.bytes", ConfigType::Int, |c| {
        c.server.socket_request_max_bytes.to_string()
    }),
    ("max.connections", ConfigType::Int, |c| {
        c.server.max_connections.to_string()
    }),
    ("auto.create.topics.enable", ConfigType::Boolean, |c| {
        c.topics.auto_create.to_string()
    }),
    ("num.partitions", ConfigType::Int, |c| {
        c.topics.num_partitions.to_string()
    }),
    ("log.segment.bytes", ConfigType::Int, |c| {
        c.log.segment_bytes.to_string()
    }),
    ("log.roll.ms", ConfigType::Long, |c| ms(c.log.segment_time)),
    ("log.retention.ms", ConfigType::Long, |c| {
        c.log.retention_time.map_or("-1".into(), ms)
    }),
    ("log.retention.bytes", ConfigType::Long, |c| {
        c.log.retention_bytes.map_or("-1".into(), |b| b.to_string())
    }),
    ("log.index.interval.bytes", ConfigType::Int, |c| {
        c.log.index_interval_bytes.to_string()
    }),
    ("log.index.size.max.bytes", ConfigType::Int, |c| {
        c.log.index_max_bytes.to_string()
    }),
    ("message.max.bytes", ConfigType::Int, |c| {
        c.log.message_max_bytes.to_string()
    }),
    ("log.retention.check.interval.ms", ConfigType::Long, |c| {
        ms(c.log.retention_check_interval)
    }),
    ("log.flush.interval.ms", ConfigType::Long, |c| {
        ms(c.flush.interval)
    }),
    ("strom.flush.mode", ConfigType::String, |c| {
        format!("{:?}", c.flush.mode)
    }),
    ("group.initial.rebalance.delay.ms", ConfigType::Int, |c| {
        ms(c.groups.initial_rebalance_delay)
    }),
    ("group.min.session.timeout.ms", ConfigType::Int, |c| {
        ms(c.groups.min_session_timeout)
    }),
    ("group.max.session.timeout.ms", ConfigType::Int, |c| {
        ms(c.groups.max_session_timeout)
    }),
    ("offsets.retention.minutes", ConfigType::Int, |c| {
        (c.groups.offsets_retention.as_secs() / 60).to_string()
    }),
    ("offset.metadata.max.bytes", ConfigType::Int, |c| {
        c.groups.offset_metadata_max_bytes.to_string()
    }),
];

/// The broker-level settings; the source says whether each differs from
/// the built-in default.
fn broker_configs(config: &Config) -> Vec<ConfigEntry> {
    let defaults = Config::default();
    BROKER_CONFIGS
        .iter()
        .map(|&(name, config_type, get)| {
            let value = get(config);
            let source = if value == get(&defaults) {
                ConfigSource::Default
            } else {
                ConfigSource::StaticBroker
            };
            ConfigEntry {
                name,
                value,
                source,
                config_type,
                read_only: true,
            }
        })
        .collect()
}
