//! `strom produce TOPIC`: one record per stdin line, and how many were acknowledged.

use std::collections::VecDeque;
use std::io::{BufRead, IsTerminal};

use anyhow::Context as _;
use strom_client::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};

use super::{explain, Connect};

/// Deliveries awaited at most this far behind the newest send, so memory stays flat.
const MAX_UNACKED: usize = 10_000;

/// `strom produce TOPIC`
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Topic to write to (created by the broker if auto-creation is on)
    topic: String,
    /// Split each line at the first occurrence of this into key and value
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// Acknowledgements to wait for: 0, 1 or all
    #[arg(long, default_value = "all")]
    acks: Acks,
    /// Batch compression: none, gzip, snappy, lz4 or zstd
    #[arg(long, default_value = "none")]
    compression: Compression,
    /// Write every record to this partition (the key decides by default)
    #[arg(long)]
    partition: Option<i32>,
}

/// Runs `strom produce`.
pub fn run(args: ProduceArgs, connect: &Connect) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    // A bar by bytes when stdin is a file; a counter when it is a pipe.
    let total = std::fs::metadata("/dev/stdin")
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let bar = super::output::progress(total, &format!("producing to {}", args.topic));
    if total.is_none() {
        bar.set_length(0);
    }
    let interactive = stdin.is_terminal();
    let bs = connect.bootstrap.as_str();
    super::runtime()?.block_on(async {
        connect.admin().await?;
        let mut config = ProducerConfig::new(bs);
        config.client = connect.client_config();
        config.acks = args.acks;
        config.compression = args.compression;
        config.idempotence = args.acks == Acks::All;
        if interactive {
            // Typed lines go out as they are entered.
            config.linger = std::time::Duration::ZERO;
        }
        let producer = Producer::new(config).await.map_err(|e| explain(e, bs))?;
        let mut pending = VecDeque::new();
        let (mut sent, mut acked) = (0u64, 0u64);
        let mut first_error: Option<anyhow::Error> = None;
        let mut lines = stdin.lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = lines
                .read_until(b'\n', &mut line)
                .context("cannot read stdin")?;
            if n == 0 {
                break;
            }
            if total.is_some() {
                bar.inc(n as u64);
            } else {
                bar.inc(1);
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let mut record = ProducerRecord::new(&args.topic);
            match args.key_separator.as_deref().map(str::as_bytes) {
                Some(sep) if !sep.is_empty() => match find(text, sep) {
                    Some(i) => {
                        record = record
                            .key(text[..i].to_vec())
                            .value(text[i + sep.len()..].to_vec());
                    }
                    None => record = record.value(text.to_vec()),
                },
                _ => record = record.value(text.to_vec()),
            }
            if let Some(p) = args.partition {
                record = record.partition(p);
            }
            pending.push_back(producer.send(record).await.map_err(|e| explain(e, bs))?);
            sent += 1;
            while pending.len() > MAX_UNACKED || (interactive && !pending.is_empty()) {
                let Some(d) = pending.pop_front() else { break };
                match d.await {
                    Ok(_) => acked += 1,
                    Err(e) => {
                        first_error.get_or_insert(explain(e, bs));
                    }
                }
            }
        }
        for d in pending {
            match d.await {
                Ok(_) => acked += 1,
                Err(e) => {
                    first_error.get_or_insert(explain(e, bs));
                }
            }
        }
        bar.finish_and_clear();
        producer.close().await.map_err(|e| explain(e, bs))?;
        let what = match args.acks {
            Acks::None => "sent (acks=0: the broker does not confirm)",
            _ => "acknowledged",
        };
        eprintln!("{acked} of {sent} record(s) {what} on topic {}", args.topic);
        match first_error {
            Some(e) => Err(e.context(format!("{} record(s) failed", sent - acked))),
            None => Ok(()),
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
