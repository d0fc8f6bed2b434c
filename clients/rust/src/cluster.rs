//! Shared client state: bootstrap, broker connections and the metadata cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    FindCoordinatorRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use tracing::{debug, warn};

use crate::conn::Connection;
use crate::error::{Error, Result};

/// Settings every client (producer, consumer, admin) shares.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses tried in order until one answers.
    pub bootstrap: Vec<String>,
    /// Sent in every request header.
    pub client_id: String,
    /// How long to wait for a connection or an answer.
    pub request_timeout: Duration,
    /// Pause before retrying a retriable error.
    pub retry_backoff: Duration,
    /// How often producers and group leaders re-read the metadata of their
    /// topics, to notice partitions added since (Kafka's
    /// `metadata.max.age.ms`; at least 100 ms).
    pub metadata_max_age: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap: vec!["127.0.0.1:9092".to_string()],
            client_id: "strom-client".to_string(),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            metadata_max_age: Duration::from_secs(300),
        }
    }
}

impl ClientConfig {
    /// When metadata read now is next due for a refresh: `metadata_max_age`
    /// from now, but at least 100 ms (a zero must not spin the producer
    /// task), and about 30 years away for an age too large to add.
    pub(crate) fn metadata_due(&self) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let age = self.metadata_max_age.max(Duration::from_millis(100));
        now.checked_add(age)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
    }

    /// A config for a comma-separated bootstrap list (`"a:9092,b:9092"`).
    pub fn new(bootstrap: &str) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            ..Default::default()
        }
    }
}

/// One partition as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Node id of the leader, -1 if none.
    pub leader: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// A topic as metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Whether this is an internal topic.
    pub internal: bool,
    /// Partitions in index order.
    pub partitions: Vec<PartitionInfo>,
}

pub(crate) struct Cluster {
    pub(crate) config: ClientConfig,
    brokers: Mutex<HashMap<i32, String>>,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
    topics: Mutex<HashMap<String, Arc<TopicInfo>>>,
}

impl Cluster {
    pub(crate) fn new(config: ClientConfig) -> Result<Arc<Cluster>> {
        if config.bootstrap.is_empty() {
            return Err(Error::Config("bootstrap list is empty".into()));
        }
        Ok(Arc::new(Cluster {
            config,
            brokers: Default::default(),
            conns: Default::default(),
            topics: Default::default(),
        }))
    }

    /// A live connection to `addr`, made if needed.
    pub(crate) async fn conn_to(&self, addr: &str) -> Result<Arc<Connection>> {
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(addr) {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let c = Arc::new(
            Connection::connect(addr, &self.config.client_id, self.config.request_timeout).await?,
        );
        conns.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// A new connection of its own (not shared), for long-polls or a group coordinator.
    pub(crate) async fn dedicated_conn(&self, node: i32) -> Result<Connection> {
        let addr = self.broker_addr(node).await?;
        Connection::connect(&addr, &self.config.client_id, self.config.request_timeout).await
    }

    /// Any live broker: known brokers first, then the bootstrap list.
    pub(crate) async fn any_conn(&self) -> Result<Arc<Connection>> {
        let mut addrs: Vec<String> = self
            .brokers
            .lock()
            .expect("lock")
            .values()
            .cloned()
            .collect();
        addrs.sort();
        addrs.extend(self.config.bootstrap.iter().cloned());
        let mut last = None;
        for addr in &addrs {
            match self.conn_to(addr).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    debug!(addr = %addr, cause = %e, "broker unreachable");
                    last = Some(e);
                }
            }
        }
        match last {
            Some(e) if addrs.len() == 1 => Err(e),
            _ => Err(Error::NoBrokers(addrs)),
        }
    }

    pub(crate) async fn broker_addr(&self, node: i32) -> Result<String> {
        if let Some(a) = self.brokers.lock().expect("lock").get(&node) {
            return Ok(a.clone());
        }
        self.metadata(Some(&[]), false).await?;
        self.brokers
            .lock()
            .expect("lock")
            .get(&node)
            .cloned()
            .ok_or_else(|| Error::Protocol(format!("broker {node} not in metadata")))
    }

    pub(crate) async fn conn_for_node(&self, node: i32) -> Result<Arc<Connection>> {
        let addr = self.broker_addr(node).await?;
        self.conn_to(&addr).await
    }

    /// Sends `req` to any broker (for cluster-wide requests: admin, metadata).
    pub(crate) async fn call_any<R: Request>(&self, req: &R) -> Result<R::Response> {
        let conn = self.any_conn().await?;
        conn.call(req).await
    }

    /// Fetches metadata for `topics` (None = all topics) and updates the cache.
    pub(crate) async fn metadata(
        &self,
        topics: Option<&[String]>,
        auto_create: bool,
    ) -> Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(auto_create);
        let resp = self.call_any(&req).await?;
        {
            let mut brokers = self.brokers.lock().expect("lock");
            for b in &resp.brokers {
                brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
            }
        }
        let mut cache = self.topics.lock().expect("lock");
        for t in &resp.topics {
            let Some(name) = &t.name else { continue };
            if t.error_code != 0 {
                cache.remove(name.0.as_str());
                continue;
            }
            cache.insert(name.0.to_string(), Arc::new(topic_info(t)));
        }
        Ok(resp)
    }

    /// The cached metadata of `topic`, fetched (and auto-created if allowed) when missing.
    pub(crate) async fn topic(&self, topic: &str, auto_create: bool) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.cached(topic) {
            return Ok(t);
        }
        self.refresh_topic(topic, auto_create).await
    }

    pub(crate) fn cached(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.topics.lock().expect("lock").get(topic).cloned()
    }

    /// Refreshes `topic`, retrying while the broker says it is still being created.
    pub(crate) async fn refresh_topic(
        &self,
        topic: &str,
        auto_create: bool,
    ) -> Result<Arc<TopicInfo>> {
        let mut attempt = 0;
        loop {
            let resp = self
                .metadata(Some(&[topic.to_string()]), auto_create)
                .await?;
            let code = resp
                .topics
                .iter()
                .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
                .map_or(3, |t| t.error_code);
            if code == 0 {
                if let Some(t) = self.cached(topic) {
                    if t.partitions.iter().all(|p| p.leader >= 0) && !t.partitions.is_empty() {
                        return Ok(t);
                    }
                }
            }
            // LEADER_NOT_AVAILABLE while a topic is being created; UNKNOWN_TOPIC just after.
            attempt += 1;
            if attempt >= 10 || !(code == 0 || code == 5 || (auto_create && code == 3)) {
                return Err(Error::kafka(
                    code,
                    format!("metadata for topic {topic}"),
                    None,
                ));
            }
            warn!(topic, code, attempt, "topic metadata not ready; retrying");
            tokio::time::sleep(self.config.retry_backoff).await;
        }
    }

    /// The partition count of each of `topics` the broker knows, fresh
    /// from a Metadata request (topics it does not know are left out).
    pub(crate) async fn partition_counts(
        &self,
        topics: &[String],
    ) -> Result<BTreeMap<String, i32>> {
        let md = self.metadata(Some(topics), false).await?;
        Ok(md
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len() as i32)))
            .collect())
    }

    /// Forgets cached metadata of `topic` so the next use refreshes it.
    pub(crate) fn invalidate(&self, topic: &str) {
        self.topics.lock().expect("lock").remove(topic);
    }

    /// The group coordinator's node id for `group`.
    pub(crate) async fn coordinator(&self, group: &str) -> Result<i32> {
        let req = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_key_type(0);
        let resp = self.call_any(&req).await?;
        Error::check(resp.error_code, || {
            format!("FindCoordinator for group {group}")
        })?;
        self.brokers.lock().expect("lock").insert(
            resp.node_id.0,
            format!("{}:{}", resp.host.as_str(), resp.port),
        );
        Ok(resp.node_id.0)
    }
}

pub(crate) fn topic_info(
    t: &kafka_protocol::messages::metadata_response::MetadataResponseTopic,
) -> TopicInfo {
    let mut partitions: Vec<PartitionInfo> = t
        .partitions
        .iter()
        .map(|p| PartitionInfo {
            partition: p.partition_index,
            leader: p.leader_id.0,
            replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
            isr: p.isr_nodes.iter().map(|b| b.0).collect(),
        })
        .collect();
    partitions.sort_by_key(|p| p.partition);
    TopicInfo {
        name: t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default(),
        internal: t.is_internal,
        partitions,
    }
}
