//! `strom groups`: list, describe (members, offsets, lag), delete, reset offsets.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;
use strom_client::{Admin, TopicPartition, EARLIEST, LATEST};

use super::output::{self, Format, OutputArg};
use super::{explain, Connect};

/// `strom groups ...`
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupsCommand {
    /// List consumer groups and their states
    List(OutputArg),
    /// Show a group's members, assignments, committed offsets and lag
    Describe {
        /// Group id
        group: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete an empty group and its committed offsets
    Delete {
        /// Group id
        group: String,
    },
    /// Move a group's committed offsets on a topic (the group must have no members)
    ResetOffsets(ResetArgs),
}

#[derive(Debug, clap::Args)]
struct ResetArgs {
    /// Group id
    group: String,
    /// Topic whose offsets to move
    #[arg(long)]
    topic: String,
    /// Only this partition (all partitions of the topic by default)
    #[arg(long)]
    partition: Option<i32>,
    #[command(flatten)]
    to: ResetTarget,
    /// Show what would change without committing it
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    output: OutputArg,
}

#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// To each partition's log start offset
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's log end offset (skip everything)
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped into each partition's range)
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// To the first record at or after this time (RFC 3339, UTC, e.g. 2024-05-01T12:00:00Z)
    #[arg(long, value_name = "TIME", value_parser = super::parse_datetime_ms)]
    to_datetime: Option<i64>,
}

/// Runs `strom groups ...`.
pub fn run(args: GroupsArgs, connect: &Connect) -> anyhow::Result<()> {
    super::runtime()?.block_on(async {
        let admin = connect.admin().await?;
        let bs = connect.bootstrap.as_str();
        match args.command {
            GroupsCommand::List(o) => list(&admin, o.output).await.map_err(|e| explain(e, bs)),
            GroupsCommand::Describe { group, output } => {
                describe(&admin, &group, output.output, bs).await
            }
            GroupsCommand::Delete { group } => {
                admin
                    .delete_groups(&[&group])
                    .await
                    .map_err(|e| explain(e, bs))?;
                println!("deleted group {group}");
                Ok(())
            }
            GroupsCommand::ResetOffsets(r) => reset(&admin, r, bs).await,
        }
    })
}

async fn list(admin: &Admin, format: Format) -> strom_client::Result<()> {
    let groups = admin.list_groups().await?;
    match format {
        Format::Json => {
            let v: Vec<_> = groups
                .iter()
                .map(|g| json!({"group": g.group_id, "protocol_type": g.protocol_type, "state": g.state}))
                .collect();
            output::print_json(&json!({ "groups": v }))
                .map_err(|e| strom_client::Error::Protocol(e.to_string()))?;
        }
        Format::Table => {
            let mut t = output::table(&["group", "state", "protocol type"]);
            for g in &groups {
                t.add_row(vec![
                    g.group_id.clone(),
                    g.state.clone(),
                    g.protocol_type.clone(),
                ]);
            }
            output::print_table(&t);
        }
    }
    Ok(())
}

async fn describe(admin: &Admin, group: &str, format: Format, bs: &str) -> anyhow::Result<()> {
    let desc = admin
        .describe_groups(&[group])
        .await
        .map_err(|e| explain(e, bs))?
        .into_iter()
        .next();
    let committed = admin
        .list_group_offsets(group)
        .await
        .map_err(|e| explain(e, bs))?;
    let known = admin
        .list_groups()
        .await
        .map_err(|e| explain(e, bs))?
        .iter()
        .any(|g| g.group_id == group);
    let (state, protocol, members) = match desc {
        Some(d) if d.state != "Dead" => (d.state, d.protocol, d.members),
        _ if !known && committed.is_empty() => {
            anyhow::bail!("group {group} does not exist — check the name with `strom groups list`")
        }
        _ => ("Empty".to_string(), String::new(), Vec::new()),
    };
    // Every partition the group has an offset for or is assigned.
    let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
    for m in &members {
        for tp in &m.assignment {
            owner.insert(tp.clone(), m.member_id.clone());
        }
    }
    let partitions: BTreeSet<TopicPartition> =
        committed.keys().chain(owner.keys()).cloned().collect();
    let query: Vec<_> = partitions.iter().map(|tp| (tp.clone(), LATEST)).collect();
    let ends = if query.is_empty() {
        BTreeMap::new()
    } else {
        admin.list_offsets(&query).await.unwrap_or_default()
    };
    let rows: Vec<_> = partitions
        .iter()
        .map(|tp| {
            let c = committed.get(tp).copied().filter(|&o| o >= 0);
            let end = ends.get(tp).map(|o| o.offset);
            let lag = match (c, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            (tp, c, end, lag, owner.get(tp))
        })
        .collect();
    match format {
        Format::Json => {
            let members: Vec<_> = members
                .iter()
                .map(|m| {
                    json!({
                        "member_id": m.member_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "assignment": m.assignment.iter()
                            .map(|tp| json!({"topic": tp.topic, "partition": tp.partition}))
                            .collect::<Vec<_>>(),
                    })
                })
                .collect();
            let offsets: Vec<_> = rows
                .iter()
                .map(|(tp, c, end, lag, member)| {
                    json!({
                        "topic": tp.topic, "partition": tp.partition,
                        "committed_offset": c, "high_watermark": end, "lag": lag,
                        "member_id": member,
                    })
                })
                .collect();
            output::print_json(&json!({
                "group": group, "state": state, "protocol": protocol,
                "members": members, "offsets": offsets,
            }))?;
        }
        Format::Table => {
            println!(
                "Group: {group}   State: {state}   Members: {}{}",
                members.len(),
                if protocol.is_empty() {
                    String::new()
                } else {
                    format!("   Assignor: {protocol}")
                }
            );
            println!();
            let mut t = output::table(&[
                "topic",
                "partition",
                "committed",
                "high watermark",
                "lag",
                "member",
            ]);
            let dash = || "-".to_string();
            for (tp, c, end, lag, member) in &rows {
                t.add_row(vec![
                    tp.topic.clone(),
                    tp.partition.to_string(),
                    c.map(|v| v.to_string()).unwrap_or_else(dash),
                    end.map(|v| v.to_string()).unwrap_or_else(dash),
                    lag.map(|v| v.to_string()).unwrap_or_else(dash),
                    member.cloned().unwrap_or_else(dash),
                ]);
            }
            output::align_right(&mut t, &[1, 2, 3, 4]);
            output::print_table(&t);
            if !members.is_empty() {
                println!();
                let mut t = output::table(&["member", "client id", "host", "assignment"]);
                for m in &members {
                    let assigned: Vec<String> =
                        m.assignment.iter().map(|tp| tp.to_string()).collect();
                    t.add_row(vec![
                        m.member_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        assigned.join(", "),
                    ]);
                }
                output::print_table(&t);
            }
        }
    }
    Ok(())
}

async fn reset(admin: &Admin, r: ResetArgs, bs: &str) -> anyhow::Result<()> {
    let ex = |e| explain(e, bs);
    let info = admin
        .describe_topics(&[&r.topic])
        .await
        .map_err(ex)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("topic {} does not exist", r.topic))?;
    let parts: Vec<i32> = match r.partition {
        Some(p) if info.partitions.iter().any(|i| i.partition == p) => vec![p],
        Some(p) => anyhow::bail!(
            "topic {} has no partition {p} (it has {})",
            r.topic,
            info.partitions.len()
        ),
        None => info.partitions.iter().map(|p| p.partition).collect(),
    };
    if let Some(d) = admin
        .describe_groups(&[&r.group])
        .await
        .map_err(ex)?
        .first()
    {
        if !d.members.is_empty() {
            anyhow::bail!(
                "group {} has {} active member(s) — stop its consumers before resetting offsets",
                r.group,
                d.members.len()
            );
        }
    }
    let tps: Vec<TopicPartition> = parts
        .iter()
        .map(|&p| TopicPartition::new(&r.topic, p))
        .collect();
    let at = |ts: i64| tps.iter().map(|tp| (tp.clone(), ts)).collect::<Vec<_>>();
    let starts = admin.list_offsets(&at(EARLIEST)).await.map_err(ex)?;
    let ends = admin.list_offsets(&at(LATEST)).await.map_err(ex)?;
    let by_time = match r.to.to_datetime {
        Some(ts) => Some(admin.list_offsets(&at(ts)).await.map_err(ex)?),
        None => None,
    };
    let current = admin.list_group_offsets(&r.group).await.map_err(ex)?;
    let mut plan = BTreeMap::new();
    for tp in &tps {
        let start = starts.get(tp).map(|o| o.offset).unwrap_or(0);
        let end = ends.get(tp).map(|o| o.offset).unwrap_or(0);
        let target = if r.to.to_earliest {
            start
        } else if r.to.to_latest {
            end
        } else if let Some(n) = r.to.to_offset {
            n.clamp(start, end)
        } else {
            // No record at or after the time: the log end, as Kafka's tool does.
            by_time
                .as_ref()
                .and_then(|m| m.get(tp))
                .map(|o| o.offset)
                .filter(|&o| o >= 0)
                .unwrap_or(end)
        };
        plan.insert(tp.clone(), target);
    }
    if !r.dry_run {
        admin
            .reset_group_offsets(&r.group, &plan)
            .await
            .map_err(ex)?;
    }
    match r.output.output {
        Format::Json => {
            let v: Vec<_> = plan
                .iter()
                .map(|(tp, new)| {
                    json!({"topic": tp.topic, "partition": tp.partition,
                           "previous_offset": current.get(tp).copied().filter(|&o| o >= 0),
                           "new_offset": new})
                })
                .collect();
            output::print_json(&json!({"group": r.group, "dry_run": r.dry_run, "offsets": v}))?;
        }
        Format::Table => {
            let mut t = output::table(&["topic", "partition", "previous", "new"]);
            for (tp, new) in &plan {
                t.add_row(vec![
                    tp.topic.clone(),
                    tp.partition.to_string(),
                    current
                        .get(tp)
                        .filter(|&&o| o >= 0)
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "-".into()),
                    new.to_string(),
                ]);
            }
            output::align_right(&mut t, &[1, 2, 3]);
            output::print_table(&t);
            if r.dry_run {
                println!("(dry run: nothing committed; run again without --dry-run to apply)");
            }
        }
    }
    Ok(())
}
