//! Partition assignors the group leader runs (range, roundrobin), and the
//! consumer protocol's subscription / assignment encoding.
//!
//! ```text
//! member metadata / assignment bytes:
//! 0  version i16 (0..=3)
//! 2  ConsumerProtocolSubscription | ConsumerProtocolAssignment at that version
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, Result};
use crate::record::TopicPartition;

/// A partition assignment strategy for group mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, consecutive ranges of partitions to members sorted by id (Kafka's `range`).
    Range,
    /// All partitions dealt out in turn to the members subscribed to them (`roundrobin`).
    RoundRobin,
}

impl Assignor {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }

    /// Assigns partitions: `members` maps member id -> subscribed topics,
    /// `partitions` maps topic -> partition count. Every member gets an entry.
    pub fn assign(
        self,
        members: &BTreeMap<String, Vec<String>>,
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        let mut out: BTreeMap<String, Vec<TopicPartition>> =
            members.keys().map(|m| (m.clone(), Vec::new())).collect();
        match self {
            Assignor::Range => {
                for (topic, &count) in partitions {
                    let subs: Vec<&String> = members
                        .iter()
                        .filter(|(_, ts)| ts.contains(topic))
                        .map(|(m, _)| m)
                        .collect();
                    if subs.is_empty() {
                        continue;
                    }
                    let per = count / subs.len() as i32;
                    let extra = count % subs.len() as i32;
                    let mut next = 0;
                    for (i, m) in subs.iter().enumerate() {
                        let n = per + i32::from((i as i32) < extra);
                        let list = out.get_mut(*m).expect("member");
                        list.extend(
                            (next..next + n).map(|p| TopicPartition::new(topic.clone(), p)),
                        );
                        next += n;
                    }
                }
            }
            Assignor::RoundRobin => {
                let ids: Vec<&String> = members.keys().collect();
                let mut turn = 0usize;
                for (topic, &count) in partitions {
                    for p in 0..count {
                        // The next member in the circle that subscribes to this topic.
                        for step in 0..ids.len() {
                            let m = ids[(turn + step) % ids.len()];
                            if members[m].contains(topic) {
                                out.get_mut(m)
                                    .expect("member")
                                    .push(TopicPartition::new(topic.clone(), p));
                                turn = (turn + step + 1) % ids.len();
                                break;
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// Encodes a v0 subscription to `topics`.
pub(crate) fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let sub = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    sub.encode(&mut buf, 0)
        .map_err(|e| Error::Protocol(format!("encode subscription: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes any version (0..=3, newer read as 3) of a member's subscription; its topics.
pub(crate) fn decode_subscription(mut data: Bytes) -> Result<Vec<String>> {
    if data.remaining() < 2 {
        return Err(Error::Protocol(
            "member subscription shorter than 2 bytes".into(),
        ));
    }
    let version = data.get_i16().clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut data, version)
        .map_err(|e| Error::Protocol(format!("decode subscription v{version}: {e}")))?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

/// Encodes a v0 assignment.
pub(crate) fn encode_assignment(tps: &[TopicPartition]) -> Result<Bytes> {
    let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().insert(tp.partition);
    }
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(ps.into_iter().collect())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    a.encode(&mut buf, 0)
        .map_err(|e| Error::Protocol(format!("encode assignment: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes an assignment of any version; empty bytes are an empty assignment.
pub(crate) fn decode_assignment(mut data: Bytes) -> Result<Vec<TopicPartition>> {
    if data.remaining() < 2 {
        return Ok(Vec::new());
    }
    let version = data.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut data, version)
        .map_err(|e| Error::Protocol(format!("decode assignment v{version}: {e}")))?;
    let mut out: Vec<TopicPartition> = a
        .assigned_partitions
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|&p| TopicPartition::new(t.topic.0.to_string(), p))
        })
        .collect();
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn names(tps: &[TopicPartition]) -> Vec<String> {
        tps.iter().map(|tp| tp.to_string()).collect()
    }

    #[test]
    fn range_gives_each_member_consecutive_partitions_per_topic() {
        let m = members(&[("a", &["t", "u"]), ("b", &["t", "u"])]);
        let parts = BTreeMap::from([("t".to_string(), 3), ("u".to_string(), 2)]);
        let out = Assignor::Range.assign(&m, &parts);
        assert_eq!(names(&out["a"]), ["t-0", "t-1", "u-0"]);
        assert_eq!(names(&out["b"]), ["t-2", "u-1"]);
    }

    #[test]
    fn roundrobin_deals_partitions_in_turn_to_subscribers() {
        let m = members(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["t"])]);
        let parts = BTreeMap::from([("t".to_string(), 4), ("u".to_string(), 2)]);
        let out = Assignor::RoundRobin.assign(&m, &parts);
        assert_eq!(names(&out["a"]), ["t-0", "t-3"]);
        assert_eq!(names(&out["b"]), ["t-1", "u-0", "u-1"]);
        assert_eq!(names(&out["c"]), ["t-2"]);
    }

    #[test]
    fn every_partition_is_assigned_exactly_once() {
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            for n_members in 1..5 {
                let m: BTreeMap<String, Vec<String>> = (0..n_members)
                    .map(|i| (format!("m{i}"), vec!["t".to_string()]))
                    .collect();
                let parts = BTreeMap::from([("t".to_string(), 7)]);
                let out = assignor.assign(&m, &parts);
                let mut all: Vec<i32> = out.values().flatten().map(|tp| tp.partition).collect();
                all.sort();
                assert_eq!(
                    all,
                    (0..7).collect::<Vec<_>>(),
                    "{assignor:?} with {n_members} members"
                );
            }
        }
    }

    #[test]
    fn subscription_and_assignment_round_trip() {
        let topics = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            decode_subscription(encode_subscription(&topics).unwrap()).unwrap(),
            topics
        );
        let tps = vec![
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 2),
            TopicPartition::new("b", 1),
        ];
        assert_eq!(
            decode_assignment(encode_assignment(&tps).unwrap()).unwrap(),
            tps
        );
        assert!(decode_assignment(Bytes::new()).unwrap().is_empty());
    }
}
