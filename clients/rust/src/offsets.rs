//! Offset requests shared by the consumer and the admin client: ListOffsets,
//! OffsetFetch and OffsetCommit.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    GroupId, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// ListOffsets timestamp meaning "the log start offset".
pub const EARLIEST: i64 = -2;
/// ListOffsets timestamp meaning "the log end offset".
pub const LATEST: i64 = -1;

/// An offset a ListOffsets answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    /// The offset (-1 if no record has a timestamp at or after the one asked for).
    pub offset: i64,
    /// The record's timestamp (-1 for EARLIEST / LATEST).
    pub timestamp: i64,
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// ListOffsets for each partition at its `timestamp` (or EARLIEST / LATEST),
/// sent to each partition's leader.
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    query: &[(TopicPartition, i64)],
) -> Result<BTreeMap<TopicPartition, OffsetAndTimestamp>> {
    let mut by_leader: HashMap<i32, Vec<&(TopicPartition, i64)>> = HashMap::new();
    for q in query {
        let t = cluster.topic(&q.0.topic, false).await?;
        let leader = t
            .partitions
            .get(q.0.partition as usize)
            .map(|p| p.leader)
            .ok_or_else(|| Error::kafka(3, format!("list offsets of {}", q.0), None))?;
        by_leader.entry(leader).or_default().push(q);
    }
    let mut out = BTreeMap::new();
    for (leader, qs) in by_leader {
        let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (tp, ts) in qs {
            topics.entry(&tp.topic).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_timestamp(*ts),
            );
        }
        let req = ListOffsetsRequest::default().with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
        let conn = cluster.conn_for_node(leader).await?;
        let resp = conn.call(&req).await?;
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                if p.error_code != 0 {
                    cluster.invalidate(&tp.topic);
                    return Err(Error::kafka(
                        p.error_code,
                        format!("list offsets of {tp}"),
                        None,
                    ));
                }
                out.insert(
                    tp,
                    OffsetAndTimestamp {
                        offset: p.offset,
                        timestamp: p.timestamp,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Committed offsets of `group` (all partitions it has offsets for when `tps` is None).
/// Partitions without a committed offset are left out.
pub(crate) async fn fetch_committed(
    conn: &Connection,
    group: &str,
    tps: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let topics = tps.map(|tps| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in tps {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(name(t))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(topics);
    let resp = conn.call(&req).await?;
    Error::check(resp.error_code, || format!("OffsetFetch for group {group}"))?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
            Error::check(p.error_code, || {
                format!("OffsetFetch {tp} for group {group}")
            })?;
            if p.committed_offset >= 0 {
                out.insert(tp, p.committed_offset);
            }
        }
    }
    Ok(out)
}

/// Who commits: a group member (generation, member id) or an outsider (-1, "").
pub(crate) struct Committer<'a> {
    pub group: &'a str,
    pub generation: i32,
    pub member_id: &'a str,
}

/// OffsetCommit of `offsets`; the first partition error is returned.
pub(crate) async fn commit(
    conn: &Connection,
    who: &Committer<'_>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, &off) in offsets {
        by_topic.entry(&tp.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(off)
                .with_committed_metadata(Some(StrBytes::from_static_str(""))),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(who.group.to_string())))
        .with_generation_id_or_member_epoch(who.generation)
        .with_member_id(StrBytes::from_string(who.member_id.to_string()))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = conn.call(&req).await?;
    for t in resp.topics {
        for p in t.partitions {
            Error::check(p.error_code, || {
                format!(
                    "OffsetCommit {}-{} for group {}",
                    t.name.0.as_str(),
                    p.partition_index,
                    who.group
                )
            })?;
        }
    }
    Ok(())
}
