//! `strom consume TOPIC`: print records, standalone or in a group; Ctrl-C
//! stops cleanly and commits what was printed.

use std::io::Write;
use std::time::Duration;

use strom_client::{Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, Seek, TopicPartition};

use super::{explain, Connect};

/// `strom consume TOPIC`
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Topic to read
    topic: String,
    /// Consumer group: joins it (or, with --partition/--offset, commits to it)
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Start at the log start (where the group has no committed offset)
    #[arg(long, conflicts_with_all = ["offset", "from_datetime"])]
    from_beginning: bool,
    /// Start at this offset (in every partition read)
    #[arg(long, value_name = "N", conflicts_with = "from_datetime")]
    offset: Option<i64>,
    /// Start at the first record at or after this time (RFC 3339, UTC)
    #[arg(long, value_name = "TIME", value_parser = super::parse_datetime_ms)]
    from_datetime: Option<i64>,
    /// Read only this partition
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Exit after this many records
    #[arg(long, short = 'n', value_name = "N")]
    max_messages: Option<u64>,
    /// Exit when no record arrives for this long (e.g. 2s); runs until Ctrl-C by default
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// How to print a record: %t topic, %p partition, %o offset, %k key, %v value,
    /// %T timestamp (ms), %h headers, %% a percent sign, \n \t escapes
    #[arg(long, short = 'f', default_value = "%v")]
    format: String,
}

/// Runs `strom consume`.
pub fn run(args: ConsumeArgs, connect: &Connect) -> anyhow::Result<()> {
    let bs = connect.bootstrap.as_str();
    let format = parse_format(&args.format);
    super::runtime()?.block_on(async {
        let admin = connect.admin().await?;
        let info = admin
            .describe_topics(&[&args.topic])
            .await
            .map_err(|e| explain(e, bs))?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("topic {} does not exist", args.topic))?;
        let mut config = ConsumerConfig::new(bs, args.group.as_deref());
        config.client = connect.client_config();
        config.client.request_timeout = Duration::from_secs(30);
        config.auto_offset_reset = if args.from_beginning {
            OffsetReset::Earliest
        } else {
            OffsetReset::Latest
        };
        config.fetch_max_wait = Duration::from_millis(200);
        let mut consumer = Consumer::new(config).await.map_err(|e| explain(e, bs))?;
        let seek = match (args.offset, args.from_datetime) {
            (Some(n), _) => Some(Seek::Offset(n)),
            (_, Some(ts)) => Some(Seek::Timestamp(ts)),
            _ if args.from_beginning && args.group.is_none() => Some(Seek::Beginning),
            _ => None,
        };
        if args.group.is_some() && args.partition.is_none() && seek.is_none() {
            consumer
                .subscribe(&[&args.topic])
                .map_err(|e| explain(e, bs))?;
        } else {
            let parts: Vec<TopicPartition> = match args.partition {
                Some(p) if info.partitions.iter().any(|i| i.partition == p) => {
                    vec![TopicPartition::new(&args.topic, p)]
                }
                Some(p) => anyhow::bail!(
                    "topic {} has no partition {p} (it has {})",
                    args.topic,
                    info.partitions.len()
                ),
                None => info
                    .partitions
                    .iter()
                    .map(|p| TopicPartition::new(&args.topic, p.partition))
                    .collect(),
            };
            consumer.assign(parts.clone()).map_err(|e| explain(e, bs))?;
            if let Some(to) = seek {
                for tp in &parts {
                    consumer.seek(tp, to).map_err(|e| explain(e, bs))?;
                }
            }
        }

        let mut out = std::io::stdout().lock();
        let mut count = 0u64;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let result: anyhow::Result<()> = loop {
            if args.max_messages.is_some_and(|max| count >= max) {
                break Ok(());
            }
            let next = async {
                match args.idle_timeout {
                    Some(t) => consumer.poll(t).await,
                    None => consumer.recv().await.map(Some),
                }
            };
            tokio::select! {
                _ = &mut ctrl_c => break Ok(()),
                r = next => match r {
                    Ok(Some(record)) => {
                        count += 1;
                        let mut line = Vec::new();
                        render(&format, &record, &mut line);
                        line.push(b'\n');
                        if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
                            // A closed pipe (`| head`) is a normal way to stop.
                            if e.kind() == std::io::ErrorKind::BrokenPipe {
                                break Ok(());
                            }
                            break Err(e.into());
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(explain(e, bs)),
                },
            }
        };
        drop(out);
        // Commits the printed positions (with a group), then leaves.
        let closed = consumer.close().await.map_err(|e| explain(e, bs));
        eprintln!("consumed {count} record(s) from {}", args.topic);
        result.and(closed)
    })
}

enum Piece {
    Text(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

fn parse_format(f: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut chars = f.chars().peekable();
    let push = |pieces: &mut Vec<Piece>, text: &mut Vec<u8>, p: Piece| {
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(text)));
        }
        pieces.push(p);
    };
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(n)) if "tpokvTh%".contains(n) => {
                chars.next();
                let p = match n {
                    't' => Piece::Topic,
                    'p' => Piece::Partition,
                    'o' => Piece::Offset,
                    'k' => Piece::Key,
                    'v' => Piece::Value,
                    'T' => Piece::Timestamp,
                    'h' => Piece::Headers,
                    _ => {
                        text.push(b'%');
                        continue;
                    }
                };
                push(&mut pieces, &mut text, p);
            }
            ('\\', Some(n)) if "nt\\".contains(n) => {
                chars.next();
                text.push(match n {
                    'n' => b'\n',
                    't' => b'\t',
                    _ => b'\\',
                });
            }
            _ => {
                let mut buf = [0u8; 4];
                text.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

fn render(format: &[Piece], r: &ConsumerRecord, out: &mut Vec<u8>) {
    for p in format {
        match p {
            Piece::Text(t) => out.extend_from_slice(t),
            Piece::Topic => out.extend_from_slice(r.topic.as_bytes()),
            Piece::Partition => out.extend_from_slice(r.partition.to_string().as_bytes()),
            Piece::Offset => out.extend_from_slice(r.offset.to_string().as_bytes()),
            Piece::Key => out.extend_from_slice(r.key.as_deref().unwrap_or_default()),
            Piece::Value => out.extend_from_slice(r.value.as_deref().unwrap_or_default()),
            Piece::Timestamp => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
            Piece::Headers => {
                let h: Vec<String> = r
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_deref()
                                .map(String::from_utf8_lossy)
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                out.extend_from_slice(h.join(",").as_bytes());
            }
        }
    }
}
