//! Broker configuration: `broker.toml`, its defaults, human units and validation.
//!
//! The shipped `broker.toml` at the repository root is the documentation: it
//! lists every key below with its default. The same text is embedded in the
//! binary, so `strom serve` with no file runs on exactly those defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use strom_storage::{FlushMode, LogConfig};

/// The shipped, commented configuration; also the built-in defaults.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../broker.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The whole broker configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub topics: TopicsConfig,
    pub log: LogDefaults,
    pub flush: FlushConfig,
    pub groups: GroupsConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the Kafka listener binds (`listeners`).
    pub listen: String,
    /// host:port handed to clients in Metadata; empty = the bound address.
    pub advertised_listener: String,
    /// Where partitions and broker metadata live (`log.dirs`).
    pub data_dir: PathBuf,
    /// Largest request frame accepted (`socket.request.max.bytes`).
    #[serde(deserialize_with = "de_bytes")]
    pub socket_request_max_bytes: u64,
    /// Connections beyond this are refused (`max.connections`).
    pub max_connections: usize,
    /// Request bytes all connections together may hold in memory (`queued.max.request.bytes`).
    #[serde(deserialize_with = "de_bytes")]
    pub max_buffered_request_bytes: u64,
    /// Requests read ahead of their responses on one connection.
    pub max_in_flight_per_connection: usize,
    /// tracing filter, e.g. "info" or "strom=debug"; RUST_LOG overrides it.
    pub log_filter: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9092".into(),
            advertised_listener: String::new(),
            data_dir: PathBuf::from("./data"),
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            max_buffered_request_bytes: 512 * 1024 * 1024,
            max_in_flight_per_connection: 64,
            log_filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Create unknown topics on Metadata requests that allow it
    /// (`auto.create.topics.enable`).
    pub auto_create: bool,
    /// Partitions of auto-created topics and of CreateTopics with -1
    /// (`num.partitions`).
    pub num_partitions: i32,
    /// Most partitions this broker holds, over all topics: creating topics
    /// or partitions past it gets POLICY_VIOLATION.
    pub max_partitions: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            auto_create: true,
            num_partitions: 1,
            max_partitions: 4096,
        }
    }
}

/// Defaults for every topic's log; topics override them with Kafka config
/// names (`segment.bytes`, `retention.ms`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogDefaults {
    #[serde(deserialize_with = "de_bytes")]
    pub segment_bytes: u64,
    #[serde(deserialize_with = "de_duration")]
    pub segment_time: Duration,
    #[serde(deserialize_with = "de_opt_duration")]
    pub retention_time: Option<Duration>,
    #[serde(deserialize_with = "de_opt_bytes")]
    pub retention_bytes: Option<u64>,
    #[serde(deserialize_with = "de_bytes")]
    pub index_interval_bytes: u64,
    #[serde(deserialize_with = "de_bytes")]
    pub index_max_bytes: u64,
    #[serde(deserialize_with = "de_bytes")]
    pub message_max_bytes: u64,
    #[serde(deserialize_with = "de_duration")]
    pub retention_check_interval: Duration,
}

impl Default for LogDefaults {
    fn default() -> Self {
        let log = LogConfig::default();
        Self {
            segment_bytes: log.segment_bytes,
            segment_time: log.segment_ms,
            retention_time: log.retention_ms,
            retention_bytes: log.retention_bytes,
            index_interval_bytes: log.index_interval_bytes.into(),
            index_max_bytes: log.index_max_bytes.into(),
            message_max_bytes: log.max_message_bytes.into(),
            retention_check_interval: Duration::from_secs(300),
        }
    }
}

impl LogDefaults {
    /// The storage settings these defaults give a topic with no overrides.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_time,
            retention_ms: self.retention_time,
            retention_bytes: self.retention_bytes,
            // validate() has checked that these fit.
            index_interval_bytes: u32::try_from(self.index_interval_bytes).unwrap_or(u32::MAX),
            index_max_bytes: u32::try_from(self.index_max_bytes).unwrap_or(u32::MAX),
            max_message_bytes: u32::try_from(self.message_max_bytes).unwrap_or(u32::MAX),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlushConfig {
    #[serde(deserialize_with = "de_flush_mode")]
    pub mode: FlushMode,
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            mode: FlushMode::AcksAll,
            interval: Duration::from_secs(1),
        }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// host:port for `GET /metrics`; empty turns the endpoint off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9644".into(),
        }
    }
}

/// Consumer-group coordinator settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupsConfig {
    /// How long a new group waits for more members before its first
    /// generation (`group.initial.rebalance.delay.ms`).
    #[serde(deserialize_with = "de_duration")]
    pub initial_rebalance_delay: Duration,
    /// Smallest session timeout a member may ask for (`group.min.session.timeout.ms`).
    #[serde(deserialize_with = "de_duration")]
    pub min_session_timeout: Duration,
    /// Largest session timeout a member may ask for (`group.max.session.timeout.ms`).
    #[serde(deserialize_with = "de_duration")]
    pub max_session_timeout: Duration,
    /// Committed offsets of an empty group are dropped this long after the
    /// group became empty or the offset was committed, whichever is later
    /// (`offsets.retention.minutes`).
    #[serde(deserialize_with = "de_duration")]
    pub offsets_retention: Duration,
    /// Longest metadata string accepted with a commit (`offset.metadata.max.bytes`).
    #[serde(deserialize_with = "de_bytes")]
    pub offset_metadata_max_bytes: u64,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(30 * 60),
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offset_metadata_max_bytes: 4096,
        }
    }
}

impl Config {
    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Loads `path`, or the embedded defaults when `path` is None.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml(DEFAULT_CONFIG_TOML, "built-in defaults"),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Config::from_toml(&text, &path.display().to_string())
            }
        }
    }

    /// Checks every value that parsing alone cannot, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, message: impl Into<String>) -> ConfigError {
            ConfigError::Invalid {
                key,
                message: message.into(),
            }
        }
        self.server.listen.parse::<SocketAddr>().map_err(|e| {
            bad(
                "server.listen",
                format!("expected HOST:PORT with an IP host: {e}"),
            )
        })?;
        if !self.server.advertised_listener.is_empty() {
            parse_host_port(&self.server.advertised_listener)
                .map_err(|m| bad("server.advertised_listener", m))?;
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(bad("server.data_dir", "must not be empty"));
        }
        if self.server.socket_request_max_bytes < 1024
            || self.server.socket_request_max_bytes > i32::MAX as u64
        {
            return Err(bad(
                "server.socket_request_max_bytes",
                "must be between 1 KiB and 2 GiB",
            ));
        }
        if self.server.max_buffered_request_bytes < self.server.socket_request_max_bytes
            || self.server.max_buffered_request_bytes > u64::from(u32::MAX)
        {
            return Err(bad(
                "server.max_buffered_request_bytes",
                "must be at least server.socket_request_max_bytes and at most 4 GiB",
            ));
        }
        if self.server.max_connections == 0 {
            return Err(bad("server.max_connections", "must be at least 1"));
        }
        if self.server.max_in_flight_per_connection == 0 {
            return Err(bad(
                "server.max_in_flight_per_connection",
                "must be at least 1",
            ));
        }
        if self.topics.num_partitions < 1 {
            return Err(bad("topics.num_partitions", "must be at least 1"));
        }
        if self.topics.max_partitions < self.topics.num_partitions {
            return Err(bad(
                "topics.max_partitions",
                "must be at least topics.num_partitions",
            ));
        }
        let log = &self.log;
        if log.segment_bytes < 1024 || log.segment_bytes > u32::MAX as u64 {
            return Err(bad("log.segment_bytes", "must be between 1 KiB and 4 GiB"));
        }
        if log.segment_time.is_zero() {
            return Err(bad("log.segment_time", "must be positive"));
        }
        if log.index_interval_bytes == 0 || log.index_interval_bytes > u32::MAX as u64 {
            return Err(bad(
                "log.index_interval_bytes",
                "must be between 1 B and 4 GiB",
            ));
        }
        if log.index_max_bytes < 1024 || log.index_max_bytes > u32::MAX as u64 {
            return Err(bad(
                "log.index_max_bytes",
                "must be between 1 KiB and 4 GiB",
            ));
        }
        if log.message_max_bytes < 64 || log.message_max_bytes > i32::MAX as u64 {
            return Err(bad(
                "log.message_max_bytes",
                "must be between 64 B and 2 GiB",
            ));
        }
        if log.retention_check_interval.is_zero() {
            return Err(bad("log.retention_check_interval", "must be positive"));
        }
        if !self.metrics.listen.is_empty() {
            self.metrics.listen.parse::<SocketAddr>().map_err(|e| {
                bad(
                    "metrics.listen",
                    format!("expected HOST:PORT with an IP host, or \"\" for off: {e}"),
                )
            })?;
        }
        if self.groups.min_session_timeout > self.groups.max_session_timeout {
            return Err(bad(
                "groups.min_session_timeout",
                "must not exceed groups.max_session_timeout",
            ));
        }
        if self.groups.offsets_retention.is_zero() {
            return Err(bad("groups.offsets_retention", "must be positive"));
        }
        if self.flush.interval.is_zero() {
            return Err(bad("flush.interval", "must be positive"));
        }
        Ok(())
    }
}

/// Splits "host:port" (host may be a name), checking the port.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, found {s:?}"))?;
    if host.is_empty() {
        return Err(format!("expected HOST:PORT, found {s:?} (no host)"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("expected a port number after ':', found {port:?}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

/// A size: an integer number of bytes or a string like "1 GiB", "512 KiB".
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Int(i64),
    Text(String),
}

/// Parses a human size ("1 GiB", "100MB", "4096") into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("expected a size like \"1 GiB\", found {text:?}: {e}"))
}

/// Parses a human duration ("7d", "1h 30m", "500ms", "1s").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("expected a duration like \"7d\" or \"500ms\", found {text:?}: {e}"))
}

fn is_unlimited(text: &str) -> bool {
    matches!(text.trim(), "-1" | "unlimited" | "forever" | "none")
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Int(n) => u64::try_from(n).map_err(|_| {
            serde::de::Error::custom(format!("expected a size of at least 0, found {n}"))
        }),
        SizeValue::Text(t) => parse_size(&t).map_err(serde::de::Error::custom),
    }
}

fn de_opt_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Int(-1) => Ok(None),
        SizeValue::Int(n) => u64::try_from(n).map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected a size or -1 (unlimited), found {n}"))
        }),
        SizeValue::Text(t) if is_unlimited(&t) => Ok(None),
        SizeValue::Text(t) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Int(n) => u64::try_from(n).map(Duration::from_millis).map_err(|_| {
            serde::de::Error::custom(format!("expected milliseconds >= 0, found {n}"))
        }),
        SizeValue::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match SizeValue::deserialize(d)? {
        SizeValue::Int(-1) => Ok(None),
        SizeValue::Int(n) => u64::try_from(n)
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "expected milliseconds or -1 (forever), found {n}"
                ))
            }),
        SizeValue::Text(t) if is_unlimited(&t) => Ok(None),
        SizeValue::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Parses a flush mode name.
pub fn parse_flush_mode(text: &str) -> Result<FlushMode, String> {
    match text {
        "acks_all" => Ok(FlushMode::AcksAll),
        "interval" => Ok(FlushMode::Interval),
        "never" => Ok(FlushMode::Never),
        other => Err(format!(
            "expected one of \"acks_all\", \"interval\", \"never\", found {other:?}"
        )),
    }
}

fn de_flush_mode<'de, D: Deserializer<'de>>(d: D) -> Result<FlushMode, D::Error> {
    let text = String::deserialize(d)?;
    parse_flush_mode(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_broker_toml_equals_the_code_defaults() {
        let shipped = Config::from_toml(DEFAULT_CONFIG_TOML, "broker.toml").unwrap();
        let coded = Config::default();
        assert_eq!(format!("{shipped:?}"), format!("{coded:?}"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[server]\nlisten = \"nowhere\"", "server.listen"),
            ("[log]\nsegment_bytes = \"lots\"", "segment_bytes"),
            ("[flush]\nmode = \"sometimes\"", "mode"),
            ("[topics]\nnum_partitions = 0", "topics.num_partitions"),
            ("[topics]\nmax_partitions = 0", "topics.max_partitions"),
            ("[server]\nunknown_key = 1", "unknown_key"),
            ("[log]\nretention_time = \"soon\"", "retention_time"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text, "test").unwrap_err().to_string();
            assert!(
                err.contains(key),
                "case {text:?}: error {err:?} does not name {key}"
            );
        }
    }

    #[test]
    fn human_units_and_unlimited_values_parse() {
        let c = Config::from_toml(
            "[log]\nsegment_bytes = \"16 MiB\"\nretention_time = \"forever\"\nretention_bytes = -1\nsegment_time = 60000\n",
            "test",
        )
        .unwrap();
        assert_eq!(c.log.segment_bytes, 16 * 1024 * 1024);
        assert_eq!(c.log.retention_time, None);
        assert_eq!(c.log.retention_bytes, None);
        assert_eq!(c.log.segment_time, Duration::from_secs(60));
    }
}
