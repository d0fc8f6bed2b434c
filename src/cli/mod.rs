//! The admin CLI: `strom topics | groups | produce | consume | log`, built on
//! strom-client for the online commands and on the storage crate for the
//! offline ones (`log dump`, `log verify`).

pub mod consume;
pub mod groups;
pub mod log;
pub mod output;
pub mod produce;
pub mod topics;

use std::time::Duration;

use anyhow::Context as _;
use strom_client::{Admin, ClientConfig};

/// Where the online commands find the broker.
#[derive(Debug, Clone, clap::Args)]
pub struct Connect {
    /// Broker address (host:port, or a comma-separated list)
    #[arg(
        long,
        global = true,
        env = "STROM_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
}

impl Connect {
    /// Client settings for this bootstrap list, named as the CLI.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.bootstrap);
        config.client_id = "strom-cli".to_string();
        config.request_timeout = Duration::from_secs(15);
        config
    }

    /// An admin client, or an error saying the broker cannot be reached and why.
    pub async fn admin(&self) -> anyhow::Result<Admin> {
        Admin::new(self.client_config())
            .await
            .map_err(|e| explain(e, &self.bootstrap))
    }
}

/// A multi-thread-free runtime for one CLI command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Turns a client error into a message that says what to do about it.
pub fn explain(e: strom_client::Error, bootstrap: &str) -> anyhow::Error {
    use strom_client::Error as E;
    match &e {
        E::Io { addr, source } => {
            let what = match source.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => source.to_string(),
            };
            anyhow::anyhow!(
                "cannot reach {addr}: {what} — is `strom serve` running? \
                 (set --bootstrap or STROM_BOOTSTRAP to point elsewhere)"
            )
        }
        E::NoBrokers(addrs) => anyhow::anyhow!(
            "cannot reach any of {}: is `strom serve` running? \
             (set --bootstrap or STROM_BOOTSTRAP to point elsewhere)",
            addrs.join(", ")
        ),
        E::Timeout(what, after) => anyhow::anyhow!(
            "{what} got no answer from {bootstrap} within {after:?} — is the broker overloaded or wedged?"
        ),
        E::Disconnected(addr) => {
            anyhow::anyhow!("{addr} closed the connection — did the broker stop? ({e})")
        }
        E::Kafka { code, .. } => {
            let hint = match code {
                1 => " — the offset is outside the partition's log start..high watermark; see `strom topics describe`",
                3 => " — check the name with `strom topics list`",
                36 => " — pick another name or `strom topics delete` it first",
                37 => " — a partition count must be at least 1, and can only grow",
                40 => " — see `strom topics describe` for the valid keys",
                69 => " — check the name with `strom groups list`",
                68 => " — stop the group's consumers first",
                25 => " — stop the group's consumers first",
                _ => "",
            };
            anyhow::anyhow!("{e}{hint}")
        }
        _ => anyhow::Error::new(e),
    }
}

/// Splits `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, found {s:?}")),
    }
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00Z`) into ms since the epoch.
pub fn parse_datetime_ms(s: &str) -> Result<i64, String> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("expected an RFC 3339 time like 2024-05-01T12:00:00Z, found {s:?}: {e}")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?
        .as_millis();
    i64::try_from(ms).map_err(|_| format!("{s:?} is too far in the future"))
}

/// Formats ms since the epoch as RFC 3339 (UTC, ms precision); "-" for none.
pub fn format_ms(ms: i64) -> String {
    if ms < 0 {
        return "-".to_string();
    }
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
