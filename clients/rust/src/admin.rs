//! The admin client: topics, configs, groups and offsets.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    GroupId, IncrementalAlterConfigsRequest, ListGroupsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::assignor;
use crate::cluster::{ClientConfig, Cluster, TopicInfo};
use crate::error::{Error, Result};
use crate::offsets::{self, Committer, OffsetAndTimestamp};
use crate::record::TopicPartition;

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count (-1 = the broker's default).
    pub partitions: i32,
    /// Replication factor (-1 = the broker's default).
    pub replication_factor: i16,
    /// Topic configs, e.g. `("retention.ms", "60000")`.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default replication.
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }
    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((key.into(), value.into()));
        self
    }
}

/// A resource whose configs can be described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by node id.
    Broker(i32),
}

/// One config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Key.
    pub name: String,
    /// Value (None for sensitive or unset).
    pub value: Option<String>,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Kafka's config source code (1 = topic, 4 = static broker, 5 = default, ...).
    pub source: i8,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// "consumer" for consumer groups.
    pub protocol_type: String,
    /// State, when the broker reports it (v4+).
    pub state: String,
}

/// A group member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Decoded consumer-protocol assignment (empty for other protocol types).
    pub assignment: Vec<TopicPartition>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// The chosen assignor.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

/// A partition's footprint on disk, as DescribeLogDirs reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogDirPartition {
    /// Bytes of its segment files.
    pub size_bytes: i64,
    /// How many segments it has, when the broker says (strom does, in tagged
    /// field [`SEGMENT_COUNT_TAG`]; Kafka does not).
    pub segments: Option<i32>,
}

/// The DescribeLogDirs partition tagged field in which strom reports the
/// segment count (an i32, big-endian). Other clients skip unknown tags.
pub const SEGMENT_COUNT_TAG: i32 = 10_000;

/// The admin client.
pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    /// Connects to the cluster.
    pub async fn new(config: ClientConfig) -> Result<Admin> {
        let cluster = Cluster::new(config)?;
        cluster.any_conn().await?;
        Ok(Admin { cluster })
    }

    fn timeout_ms(&self) -> i32 {
        self.cluster
            .config
            .request_timeout
            .as_millis()
            .min(i32::MAX as u128) as i32
    }

    /// Creates topics; the first per-topic error is returned.
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(StrBytes::from_string(k.clone()))
                                            .with_value(Some(StrBytes::from_string(v.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = self.cluster.call_any(&req).await?;
        for t in resp.topics {
            if t.error_code != 0 {
                return Err(Error::kafka(
                    t.error_code,
                    format!("create topic {}", t.name.0.as_str()),
                    t.error_message.map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Deletes topics by name; the first per-topic error is returned.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        let conn = self.cluster.any_conn().await?;
        let v = conn.version_for::<DeleteTopicsRequest>()?;
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(self.timeout_ms());
        if v >= 6 {
            req = req.with_topics(
                names
                    .iter()
                    .map(|n| DeleteTopicState::default().with_name(Some(topic_name(n))))
                    .collect(),
            );
        } else {
            req = req.with_topic_names(names.iter().map(|n| topic_name(n)).collect());
        }
        let resp = conn.call(&req).await?;
        for t in resp.responses {
            let name = t.name.map(|n| n.0.to_string()).unwrap_or_default();
            self.cluster.invalidate(&name);
            if t.error_code != 0 {
                return Err(Error::kafka(
                    t.error_code,
                    format!("delete topic {name}"),
                    t.error_message.map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Raises `topic`'s partition count to `count` (CreatePartitions). The
    /// count can only grow: asking for fewer (or as many) partitions fails
    /// with INVALID_PARTITIONS.
    pub async fn create_partitions(&self, topic: &str, count: i32) -> Result<()> {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)]);
        let resp = self.cluster.call_any(&req).await?;
        self.cluster.invalidate(topic);
        for r in resp.results {
            if r.error_code != 0 {
                return Err(Error::kafka(
                    r.error_code,
                    format!("create partitions of topic {topic}"),
                    r.error_message.map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Deletes every record below the given offset of each partition
    /// (DeleteRecords; [`LATEST`](crate::LATEST), -1, means all of them)
    /// and returns each partition's new log start offset. The first
    /// per-partition error is returned.
    pub async fn delete_records(
        &self,
        before: &BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut topics: BTreeMap<&str, Vec<DeleteRecordsPartition>> = BTreeMap::new();
        for (tp, &offset) in before {
            topics.entry(tp.topic.as_str()).or_default().push(
                DeleteRecordsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_offset(offset),
            );
        }
        let req = DeleteRecordsRequest::default()
            .with_timeout_ms(self.timeout_ms())
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, partitions)| {
                        DeleteRecordsTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let resp = self.cluster.call_any(&req).await?;
        let mut out = BTreeMap::new();
        for t in resp.topics {
            for p in t.partitions {
                let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                Error::check(p.error_code, || format!("delete records of {tp}"))?;
                out.insert(tp, p.low_watermark);
            }
        }
        Ok(out)
    }

    /// Names of every topic.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        let resp = self.cluster.metadata(None, false).await?;
        let mut names: Vec<String> = resp
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Partitions and leaders of `names`; an unknown topic is an error.
    pub async fn describe_topics(&self, names: &[&str]) -> Result<Vec<TopicInfo>> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let resp = self.cluster.metadata(Some(&names), false).await?;
        let mut out = Vec::new();
        for t in &resp.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            Error::check(t.error_code, || format!("describe topic {name}"))?;
            out.push(crate::cluster::topic_info(t));
        }
        Ok(out)
    }

    /// Configs of a topic or a broker.
    pub async fn describe_configs(&self, resource: &ConfigResource) -> Result<Vec<ConfigEntry>> {
        let (rtype, rname) = match resource {
            ConfigResource::Topic(t) => (2, t.clone()),
            ConfigResource::Broker(b) => (4, b.to_string()),
        };
        let req = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(rtype)
                .with_resource_name(StrBytes::from_string(rname.clone()))
                .with_configuration_keys(None),
        ]);
        let resp = self.cluster.call_any(&req).await?;
        let mut out = Vec::new();
        for r in resp.results {
            if r.error_code != 0 {
                return Err(Error::kafka(
                    r.error_code,
                    format!("describe configs of {resource:?}"),
                    r.error_message.map(|m| m.to_string()),
                ));
            }
            for c in r.configs {
                out.push(ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    read_only: c.read_only,
                    source: c.config_source,
                });
            }
        }
        Ok(out)
    }

    /// Sets topic configs (IncrementalAlterConfigs, operation SET); other
    /// configs keep their values.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        configs: &[(String, String)],
    ) -> Result<()> {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            AlterableConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_config_operation(0)
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                ),
        ]);
        let resp = self.cluster.call_any(&req).await?;
        for r in resp.responses {
            if r.error_code != 0 {
                return Err(Error::kafka(
                    r.error_code,
                    format!("alter configs of topic {topic}"),
                    r.error_message.map(|m| m.to_string()),
                ));
            }
        }
        Ok(())
    }

    /// Size on disk (and, from strom, segment count) of every partition of
    /// `topics` (DescribeLogDirs, summed over log dirs).
    pub async fn describe_log_dirs(
        &self,
        topics: &[&str],
    ) -> Result<BTreeMap<TopicPartition, LogDirPartition>> {
        let req = DescribeLogDirsRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    let partitions = Vec::new();
                    DescribableLogDirTopic::default()
                        .with_topic(topic_name(t))
                        .with_partitions(partitions)
                })
                .collect(),
        ));
        let resp = self.cluster.call_any(&req).await?;
        Error::check(resp.error_code, || "DescribeLogDirs".to_string())?;
        let mut out: BTreeMap<TopicPartition, LogDirPartition> = BTreeMap::new();
        for dir in resp.results {
            Error::check(dir.error_code, || {
                format!("describe log dir {}", dir.log_dir)
            })?;
            for t in dir.topics {
                for p in t.partitions {
                    let e = out
                        .entry(TopicPartition::new(t.name.0.to_string(), p.partition_index))
                        .or_default();
                    e.size_bytes += p.partition_size;
                    if let Some(b) = p.unknown_tagged_fields.get(&SEGMENT_COUNT_TAG) {
                        if let Ok(raw) = <[u8; 4]>::try_from(&b[..]) {
                            *e.segments.get_or_insert(0) += i32::from_be_bytes(raw);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every group the broker knows.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let resp = self.cluster.call_any(&ListGroupsRequest::default()).await?;
        Error::check(resp.error_code, || "ListGroups".to_string())?;
        let mut out: Vec<GroupListing> = resp
            .groups
            .into_iter()
            .map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(out)
    }

    /// State, members and assignments of `groups`.
    pub async fn describe_groups(&self, groups: &[&str]) -> Result<Vec<GroupDescription>> {
        let mut out = Vec::new();
        for group in groups {
            let conn = self.group_conn(group).await?;
            let req = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
            let resp = conn.call(&req).await?;
            for g in resp.groups {
                Error::check(g.error_code, || format!("describe group {group}"))?;
                let consumer = g.protocol_type.as_str() == "consumer";
                let members = g
                    .members
                    .into_iter()
                    .map(|m| {
                        Ok(MemberDescription {
                            member_id: m.member_id.to_string(),
                            client_id: m.client_id.to_string(),
                            client_host: m.client_host.to_string(),
                            assignment: if consumer {
                                assignor::decode_assignment(m.member_assignment)?
                            } else {
                                Vec::new()
                            },
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push(GroupDescription {
                    group_id: g.group_id.0.to_string(),
                    state: g.group_state.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    protocol: g.protocol_data.to_string(),
                    members,
                });
            }
        }
        Ok(out)
    }

    /// Deletes (empty) groups and their committed offsets.
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<()> {
        for group in groups {
            let conn = self.group_conn(group).await?;
            let req = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
            let resp = conn.call(&req).await?;
            for r in resp.results {
                Error::check(r.error_code, || format!("delete group {group}"))?;
            }
        }
        Ok(())
    }

    /// Committed offsets of `group` (every partition it has one for).
    pub async fn list_group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let conn = self.group_conn(group).await?;
        offsets::fetch_committed(&conn, group, None).await
    }

    /// Sets committed offsets of `group`, which must have no active members
    /// (an OffsetCommit with generation -1, as Kafka's tools do).
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let conn = self.group_conn(group).await?;
        let who = Committer {
            group,
            generation: -1,
            member_id: "",
        };
        offsets::commit(&conn, &who, offsets).await
    }

    /// The first offset at or after each timestamp (ms), or
    /// [`EARLIEST`](crate::EARLIEST) / [`LATEST`](crate::LATEST).
    pub async fn list_offsets(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, OffsetAndTimestamp>> {
        offsets::list_offsets(&self.cluster, query).await
    }

    async fn group_conn(&self, group: &str) -> Result<Arc<crate::conn::Connection>> {
        let node = self.cluster.coordinator(group).await?;
        self.cluster.conn_for_node(node).await
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}
