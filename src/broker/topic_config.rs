//! Per-topic configuration overrides under their Kafka names, and the
//! effective values a topic's log runs with.

use std::collections::BTreeMap;
use std::time::Duration;

use strom_storage::LogConfig;

use crate::config::LogDefaults;

/// How a config is typed for DescribeConfigs (Kafka's ConfigType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    List = 7,
}

/// Where a described value comes from (Kafka's ConfigSource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// One described config entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub config_type: ConfigType,
    pub read_only: bool,
}

/// The topic configs strom understands, with their types.
const TOPIC_CONFIGS: &[(&str, ConfigType)] = &[
    ("cleanup.policy", ConfigType::List),
    ("compression.type", ConfigType::String),
    ("index.interval.bytes", ConfigType::Int),
    ("max.message.bytes", ConfigType::Int),
    ("message.timestamp.type", ConfigType::String),
    ("retention.bytes", ConfigType::Long),
    ("retention.ms", ConfigType::Long),
    ("segment.bytes", ConfigType::Int),
    ("segment.index.bytes", ConfigType::Int),
    ("segment.ms", ConfigType::Long),
];

/// A topic's explicit overrides, by Kafka config name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TopicConfigs(pub BTreeMap<String, String>);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn default_value(name: &str, defaults: &LogDefaults) -> String {
    match name {
        "cleanup.policy" => "delete".into(),
        "compression.type" => "producer".into(),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        "max.message.bytes" => defaults.message_max_bytes.to_string(),
        "message.timestamp.type" => "CreateTime".into(),
        "retention.bytes" => defaults
            .retention_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX))
            .to_string(),
        "retention.ms" => defaults.retention_time.map_or(-1, millis).to_string(),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.index.bytes" => defaults.index_max_bytes.to_string(),
        "segment.ms" => millis(defaults.segment_time).to_string(),
        _ => String::new(),
    }
}

fn parse_long(name: &str, value: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{name} must be an integer, found {value:?}"))?;
    if n < min || n > max {
        return Err(format!("{name} must be between {min} and {max}, found {n}"));
    }
    Ok(n)
}

impl TopicConfigs {
    /// Checks names and values; the error message names the config.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        defaults: &LogDefaults,
    ) -> Result<TopicConfigs, String> {
        let mut map = BTreeMap::new();
        for (name, value) in pairs {
            let Some(value) = value else {
                return Err(format!("config {name} has a null value"));
            };
            if !TOPIC_CONFIGS.iter().any(|(n, _)| *n == name) {
                return Err(format!("unknown or unsupported topic config {name}"));
            }
            map.insert(name.to_string(), value.trim().to_string());
        }
        let configs = TopicConfigs(map);
        configs.log_config(defaults)?;
        Ok(configs)
    }

    /// The storage settings these overrides give on top of `defaults`.
    pub fn log_config(&self, defaults: &LogDefaults) -> Result<LogConfig, String> {
        let mut log = defaults.log_config();
        for (name, value) in &self.0 {
            match name.as_str() {
                "cleanup.policy" if value != "delete" => {
                    return Err(format!(
                        "cleanup.policy {value:?} is not supported (only \"delete\"; log compaction is not built)"
                    ))
                }
                "compression.type" if value != "producer" => {
                    return Err(format!(
                        "compression.type {value:?} is not supported (only \"producer\": batches are stored as sent)"
                    ))
                }
                "message.timestamp.type" if value != "CreateTime" => {
                    return Err(format!(
                        "message.timestamp.type {value:?} is not supported (only \"CreateTime\")"
                    ))
                }
                "index.interval.bytes" => {
                    log.index_interval_bytes =
                        parse_long(name, value, 1, i32::MAX.into())? as u32
                }
                "max.message.bytes" => {
                    log.max_message_bytes = parse_long(name, value, 64, i32::MAX.into())? as u32
                }
                "retention.bytes" => {
                    let n = parse_long(name, value, -1, i64::MAX)?;
                    log.retention_bytes = (n >= 0).then_some(n as u64);
                }
                "retention.ms" => {
                    let n = parse_long(name, value, -1, i64::MAX)?;
                    log.retention_ms = (n >= 0).then(|| Duration::from_millis(n as u64));
                }
                "segment.bytes" => {
                    log.segment_bytes = parse_long(name, value, 1024, i32::MAX.into())? as u64
                }
                "segment.index.bytes" => {
                    log.index_max_bytes = parse_long(name, value, 1024, i32::MAX.into())? as u32
                }
                "segment.ms" => {
                    log.segment_ms = Duration::from_millis(parse_long(name, value, 1, i64::MAX)? as u64)
                }
                _ => {}
            }
        }
        Ok(log)
    }

    /// Every topic config with its effective value and source.
    pub fn describe(&self, defaults: &LogDefaults) -> Vec<ConfigEntry> {
        TOPIC_CONFIGS
            .iter()
            .map(|&(name, config_type)| {
                let (value, source) = match self.0.get(name) {
                    Some(v) => (v.clone(), ConfigSource::DynamicTopic),
                    None => (default_value(name, defaults), ConfigSource::Default),
                };
                ConfigEntry {
                    name,
                    value,
                    source,
                    config_type,
                    read_only: false,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_the_log_config() {
        let defaults = LogDefaults::default();
        let configs = TopicConfigs::from_pairs(
            [
                ("retention.ms", Some("60000")),
                ("segment.bytes", Some("1048576")),
                ("retention.bytes", Some("-1")),
            ],
            &defaults,
        )
        .unwrap();
        let log = configs.log_config(&defaults).unwrap();
        assert_eq!(log.retention_ms, Some(Duration::from_secs(60)));
        assert_eq!(log.segment_bytes, 1 << 20);
        assert_eq!(log.retention_bytes, None);
        let described = configs.describe(&defaults);
        let retention = described.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!(
            (retention.value.as_str(), retention.source),
            ("60000", ConfigSource::DynamicTopic)
        );
    }

    #[test]
    fn invalid_topic_configs_are_refused_with_their_name() {
        let defaults = LogDefaults::default();
        let cases = [
            ("no.such.config", Some("1"), "no.such.config"),
            ("retention.ms", Some("soon"), "retention.ms"),
            ("segment.bytes", Some("10"), "segment.bytes"),
            ("cleanup.policy", Some("compact"), "cleanup.policy"),
            ("max.message.bytes", None, "max.message.bytes"),
        ];
        for (name, value, expect) in cases {
            let err = TopicConfigs::from_pairs([(name, value)], &defaults).unwrap_err();
            assert!(err.contains(expect), "case {name}={value:?}: {err}");
        }
    }
}
