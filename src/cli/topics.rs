//! `strom topics`: list, describe, create, delete and alter topics, and
//! delete records below an offset.

use anyhow::Context as _;
use serde_json::json;
use strom_client::{Admin, ConfigResource, NewTopic, TopicPartition, EARLIEST, LATEST};

use super::output::{self, Format, OutputArg};
use super::{explain, Connect};

/// `strom topics ...`
#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TopicsCommand {
    /// List topics and their partition counts
    List(OutputArg),
    /// Show a topic's partitions (offsets, size on disk) and effective configs
    Describe {
        /// Topic name
        name: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Create a topic
    Create {
        /// Topic name
        name: String,
        /// Number of partitions (the broker's num.partitions if omitted)
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// A topic config, e.g. --config retention.ms=60000 (repeatable)
        #[arg(long = "config", short = 'c', value_parser = super::parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// Delete a topic and its data
    Delete {
        /// Topic name
        name: String,
    },
    /// Change a topic's configs (--config retention.ms=60000) or raise its
    /// partition count (--partitions 6)
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    Alter {
        /// Topic name
        name: String,
        /// A topic config to set (repeatable)
        #[arg(long = "config", short = 'c', group = "change", value_parser = super::parse_key_value)]
        configs: Vec<(String, String)>,
        /// New partition count; it can only grow, and keys may map to other
        /// partitions afterwards
        #[arg(long, short = 'p', group = "change")]
        partitions: Option<i32>,
    },
    /// Delete the records below an offset: the log start moves up, and whole
    /// segments below it leave the disk
    DeleteRecords {
        /// Topic name
        name: String,
        /// Delete records with offsets below this one, or `end` for all of them
        #[arg(long, value_parser = parse_before)]
        before: i64,
        /// Only this partition (all partitions if omitted)
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// `--before`: an offset, or `end` (-1, the high watermark).
fn parse_before(s: &str) -> Result<i64, String> {
    match s {
        "end" => Ok(LATEST),
        _ => s
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| format!("expected an offset (0 or more) or `end`, found {s:?}")),
    }
}

/// Runs `strom topics ...`.
pub fn run(args: TopicsArgs, connect: &Connect) -> anyhow::Result<()> {
    super::runtime()?.block_on(async {
        let admin = connect.admin().await?;
        let bs = connect.bootstrap.as_str();
        match args.command {
            TopicsCommand::List(o) => list(&admin, o.output).await.map_err(|e| explain(e, bs)),
            TopicsCommand::Describe { name, output } => describe(&admin, &name, output.output)
                .await
                .map_err(|e| explain(e, bs)),
            TopicsCommand::Create {
                name,
                partitions,
                configs,
            } => {
                let mut topic = NewTopic::new(&name, partitions.unwrap_or(-1));
                topic.configs = configs;
                admin
                    .create_topics(&[topic])
                    .await
                    .map_err(|e| explain(e, bs))?;
                let n = admin
                    .describe_topics(&[&name])
                    .await
                    .map(|t| t.first().map(|t| t.partitions.len()).unwrap_or(0))
                    .unwrap_or(0);
                println!("created topic {name} with {n} partition(s)");
                Ok(())
            }
            TopicsCommand::Delete { name } => {
                admin
                    .delete_topics(&[&name])
                    .await
                    .map_err(|e| explain(e, bs))?;
                println!("deleted topic {name}");
                Ok(())
            }
            TopicsCommand::Alter {
                name,
                configs,
                partitions,
            } => {
                if !configs.is_empty() {
                    admin
                        .alter_topic_configs(&name, &configs)
                        .await
                        .map_err(|e| explain(e, bs))
                        .with_context(|| format!("cannot alter topic {name}"))?;
                    for (k, v) in &configs {
                        println!("{name}: {k} = {v}");
                    }
                }
                if let Some(n) = partitions {
                    admin
                        .create_partitions(&name, n)
                        .await
                        .map_err(|e| explain(e, bs))
                        .with_context(|| format!("cannot change the partition count of {name}"))?;
                    println!("{name}: partitions = {n}");
                }
                Ok(())
            }
            TopicsCommand::DeleteRecords {
                name,
                before,
                partition,
                output,
            } => delete_records(&admin, &name, before, partition, output.output)
                .await
                .map_err(|e| explain(e, bs))
                .with_context(|| format!("cannot delete records of {name}")),
        }
    })
}

async fn list(admin: &Admin, format: Format) -> strom_client::Result<()> {
    let names = admin.list_topics().await?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let topics = if refs.is_empty() {
        Vec::new()
    } else {
        admin.describe_topics(&refs).await?
    };
    match format {
        Format::Json => {
            let v: Vec<_> = topics
                .iter()
                .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "internal": t.internal}))
                .collect();
            output::print_json(&json!({ "topics": v })).map_err(|e| io_err(e.to_string()))?;
        }
        Format::Table => {
            let mut t = output::table(&["topic", "partitions"]);
            for topic in &topics {
                t.add_row(vec![topic.name.clone(), topic.partitions.len().to_string()]);
            }
            output::align_right(&mut t, &[1]);
            output::print_table(&t);
        }
    }
    Ok(())
}

/// Each partition is asked on its own, so one whose end is below `before`
/// (OFFSET_OUT_OF_RANGE) does not hide what the others did: every
/// partition gets a row, and any failure makes the command fail.
async fn delete_records(
    admin: &Admin,
    name: &str,
    before: i64,
    partition: Option<i32>,
    format: Format,
) -> strom_client::Result<()> {
    let partitions: Vec<i32> = match partition {
        Some(p) => vec![p],
        None => admin
            .describe_topics(&[name])
            .await?
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition))
            .collect(),
    };
    let mut rows = Vec::with_capacity(partitions.len());
    for p in partitions {
        let tp = TopicPartition::new(name, p);
        let result = admin
            .delete_records(&std::collections::BTreeMap::from([(tp.clone(), before)]))
            .await
            .map(|starts| starts.get(&tp).copied().unwrap_or(-1));
        rows.push((p, result));
    }
    match format {
        Format::Json => {
            let v: Vec<_> = rows
                .iter()
                .map(|(p, r)| match r {
                    Ok(start) => json!({"partition": p, "log_start_offset": start}),
                    Err(e) => json!({"partition": p, "error": e.to_string()}),
                })
                .collect();
            output::print_json(&json!({ "topic": name, "partitions": v }))
                .map_err(|e| io_err(e.to_string()))?;
        }
        Format::Table => {
            let mut t = output::table(&["partition", "log start", "error"]);
            for (p, r) in &rows {
                let (start, error) = match r {
                    Ok(start) => (start.to_string(), String::new()),
                    Err(e) => ("-".to_string(), e.to_string()),
                };
                t.add_row(vec![p.to_string(), start, error]);
            }
            output::align_right(&mut t, &[0, 1]);
            output::print_table(&t);
        }
    }
    match rows.into_iter().find_map(|(_, r)| r.err()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn io_err(msg: String) -> strom_client::Error {
    strom_client::Error::Protocol(msg)
}

/// Kafka's name for a DescribeConfigs config source.
pub fn config_source(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic-broker",
        3 => "dynamic-default-broker",
        4 => "static-broker",
        5 => "default",
        6 => "dynamic-broker-logger",
        _ => "unknown",
    }
}

async fn describe(admin: &Admin, name: &str, format: Format) -> strom_client::Result<()> {
    let info = admin
        .describe_topics(&[name])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| strom_client::Error::kafka(3, format!("describe topic {name}"), None))?;
    let mut query = Vec::new();
    for p in &info.partitions {
        query.push((TopicPartition::new(name, p.partition), EARLIEST));
    }
    let starts = admin.list_offsets(&query).await?;
    for q in &mut query {
        q.1 = LATEST;
    }
    let ends = admin.list_offsets(&query).await?;
    let disk = admin.describe_log_dirs(&[name]).await.unwrap_or_default();
    let configs = admin
        .describe_configs(&ConfigResource::Topic(name.to_string()))
        .await?;

    let rows: Vec<_> = info
        .partitions
        .iter()
        .map(|p| {
            let tp = TopicPartition::new(name, p.partition);
            let start = starts.get(&tp).map(|o| o.offset).unwrap_or(-1);
            let end = ends.get(&tp).map(|o| o.offset).unwrap_or(-1);
            let d = disk.get(&tp);
            (
                p,
                start,
                end,
                d.map(|d| d.size_bytes),
                d.and_then(|d| d.segments),
            )
        })
        .collect();
    match format {
        Format::Json => {
            let partitions: Vec<_> = rows
                .iter()
                .map(|(p, start, end, size, segments)| {
                    json!({
                        "partition": p.partition,
                        "leader": p.leader,
                        "log_start_offset": start,
                        "high_watermark": end,
                        "size_bytes": size,
                        "segments": segments,
                    })
                })
                .collect();
            let configs: Vec<_> = configs
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "value": c.value,
                        "source": config_source(c.source),
                        "read_only": c.read_only,
                    })
                })
                .collect();
            output::print_json(&json!({
                "name": info.name,
                "internal": info.internal,
                "partitions": partitions,
                "configs": configs,
            }))
            .map_err(|e| io_err(e.to_string()))?;
        }
        Format::Table => {
            println!(
                "Topic: {}   Partitions: {}",
                info.name,
                info.partitions.len()
            );
            println!();
            let mut t = output::table(&[
                "partition",
                "leader",
                "log start",
                "high watermark",
                "records",
                "size",
                "segments",
            ]);
            for (p, start, end, size, segments) in &rows {
                t.add_row(vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    start.to_string(),
                    end.to_string(),
                    (end - start).max(0).to_string(),
                    size.map(|s| bytesize::ByteSize::b(s.max(0) as u64).to_string())
                        .unwrap_or_else(|| "-".into()),
                    segments
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            output::align_right(&mut t, &[0, 1, 2, 3, 4, 5, 6]);
            output::print_table(&t);
            println!();
            let mut t = output::table(&["config", "value", "source"]);
            for c in &configs {
                t.add_row(vec![
                    c.name.clone(),
                    c.value.clone().unwrap_or_else(|| "-".into()),
                    config_source(c.source).to_string(),
                ]);
            }
            output::print_table(&t);
        }
    }
    Ok(())
}
