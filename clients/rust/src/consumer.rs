//! The consumer: standalone (assign + seek) or in a group (subscribe), handing
//! out records one at a time or as a `Stream`.
//!
//! Fetching happens inside `recv` when the buffer is empty, on a connection of
//! the consumer's own per leader (a long-poll there delays no one else). In
//! group mode a background task heartbeats on the coordinator connection and
//! raises a flag when the group rebalances; the next `recv` commits (with
//! auto-commit), rejoins, and continues with the new assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FetchRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::assignor::{self, Assignor};
use crate::cluster::{ClientConfig, Cluster};
use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::offsets::{self, Committer, EARLIEST, LATEST};
use crate::record::{ConsumerRecord, TopicPartition};

/// Where to start when a partition has no committed offset (or it is out of range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only new records.
    #[default]
    Latest,
    /// Fail with an error.
    None,
}

/// A position to move a partition to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seek {
    /// The first offset still in the log.
    Beginning,
    /// The log end offset.
    End,
    /// This offset.
    Offset(i64),
    /// The first record with a timestamp at or after this (ms since the epoch);
    /// the log end when there is none.
    Timestamp(i64),
}

/// A change of the group's assignment, in the order it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebalanceEvent {
    /// These partitions were taken away (offsets committed first with auto-commit).
    Revoked(Vec<TopicPartition>),
    /// These partitions are now this member's.
    Assigned(Vec<TopicPartition>),
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// The group; needed for `subscribe` and for commits.
    pub group_id: Option<String>,
    /// Where to start without a committed offset.
    pub auto_offset_reset: OffsetReset,
    /// Commit the consumed positions every `auto_commit_interval`, before a
    /// rebalance and on close.
    pub enable_auto_commit: bool,
    /// See `enable_auto_commit`.
    pub auto_commit_interval: Duration,
    /// The coordinator drops a member it has not heard from for this long.
    pub session_timeout: Duration,
    /// How often the background task heartbeats.
    pub heartbeat_interval: Duration,
    /// How long the group waits for members to rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// Strategies offered to the group, preferred first.
    pub assignors: Vec<Assignor>,
    /// Longest time a fetch waits at the broker for data.
    pub fetch_max_wait: Duration,
    /// Most bytes per partition per fetch.
    pub max_partition_fetch_bytes: i32,
    /// Most bytes per fetch.
    pub fetch_max_bytes: i32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(60),
            assignors: vec![Assignor::Range, Assignor::RoundRobin],
            fetch_max_wait: Duration::from_millis(500),
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_max_bytes: 50 * 1024 * 1024,
        }
    }
}

impl ConsumerConfig {
    /// Defaults with a bootstrap list and an optional group.
    pub fn new(bootstrap: &str, group_id: Option<&str>) -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap),
            group_id: group_id.map(str::to_string),
            ..Default::default()
        }
    }
}

struct Group {
    id: String,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    heartbeat: Option<JoinHandle<()>>,
    rejoin: Arc<AtomicBool>,
    /// As the leader: the group's topics and the partition counts this
    /// member's assignment was computed from, and when to check them again.
    assigned_from: Option<(Vec<String>, BTreeMap<String, i32>)>,
    next_metadata_check: Instant,
}

/// A consumer. Not shared between tasks: it owns its positions.
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    assigned: BTreeSet<TopicPartition>,
    /// Next offset to hand out, per assigned partition whose position is known.
    positions: BTreeMap<TopicPartition, i64>,
    /// Next offset to fetch (past skipped control batches).
    fetch_positions: BTreeMap<TopicPartition, i64>,
    seeks: HashMap<TopicPartition, Seek>,
    buffer: VecDeque<ConsumerRecord>,
    group: Option<Group>,
    coordinator: Option<Arc<Connection>>,
    fetch_conns: HashMap<i32, Connection>,
    events_tx: mpsc::UnboundedSender<RebalanceEvent>,
    events_rx: Option<mpsc::UnboundedReceiver<RebalanceEvent>>,
    last_commit: Instant,
    closed: bool,
}

impl Consumer {
    /// Connects to the cluster.
    pub async fn new(config: ConsumerConfig) -> Result<Consumer> {
        let cluster = Cluster::new(config.client.clone())?;
        cluster.any_conn().await?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Consumer {
            cluster,
            config,
            assigned: BTreeSet::new(),
            positions: BTreeMap::new(),
            fetch_positions: BTreeMap::new(),
            seeks: HashMap::new(),
            buffer: VecDeque::new(),
            group: None,
            coordinator: None,
            fetch_conns: HashMap::new(),
            events_tx,
            events_rx: Some(events_rx),
            last_commit: Instant::now(),
            closed: false,
        })
    }

    /// Reads exactly these partitions (standalone mode; no group membership).
    /// Each starts at its committed offset (with a `group_id`), else per
    /// `auto_offset_reset`, unless `seek` says otherwise.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) -> Result<()> {
        if self.group.is_some() {
            return Err(Error::Config(
                "assign: the consumer is subscribed; use one or the other".into(),
            ));
        }
        self.set_assignment(partitions.into_iter().collect());
        Ok(())
    }

    /// Joins the group (`group_id`) and reads the partitions it assigns from `topics`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<()> {
        let id = self
            .config
            .group_id
            .clone()
            .ok_or_else(|| Error::Config("subscribe needs a group_id".into()))?;
        if !self.assigned.is_empty() && self.group.is_none() {
            return Err(Error::Config(
                "subscribe: the consumer has assigned partitions".into(),
            ));
        }
        self.group = Some(Group {
            id,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            member_id: String::new(),
            generation: -1,
            heartbeat: None,
            rejoin: Arc::new(AtomicBool::new(true)),
            assigned_from: None,
            next_metadata_check: Instant::now(),
        });
        Ok(())
    }

    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assigned.iter().cloned().collect()
    }

    /// Next offset `recv` will hand out for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.positions.get(tp).copied()
    }

    /// Moves `tp` (which must be assigned) to `to`; takes effect at the next `recv`.
    pub fn seek(&mut self, tp: &TopicPartition, to: Seek) -> Result<()> {
        if !self.assigned.contains(tp) {
            return Err(Error::Config(format!("seek: {tp} is not assigned")));
        }
        self.positions.remove(tp);
        self.fetch_positions.remove(tp);
        self.buffer
            .retain(|r| r.topic != tp.topic || r.partition != tp.partition);
        self.seeks.insert(tp.clone(), to);
        Ok(())
    }

    /// The rebalance events of group mode (can be taken once).
    pub fn rebalance_events(&mut self) -> Option<mpsc::UnboundedReceiver<RebalanceEvent>> {
        self.events_rx.take()
    }

    /// The next record, waiting as long as it takes.
    pub async fn recv(&mut self) -> Result<ConsumerRecord> {
        loop {
            if self.closed {
                return Err(Error::Closed);
            }
            if let Some(r) = self.buffer.pop_front() {
                self.positions.insert(
                    TopicPartition::new(r.topic.clone(), r.partition),
                    r.offset + 1,
                );
                return Ok(r);
            }
            self.poll_once().await?;
        }
    }

    /// The next record, or `None` if none arrives within `timeout`.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Option<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.buffer.pop_front() {
                self.positions.insert(
                    TopicPartition::new(r.topic.clone(), r.partition),
                    r.offset + 1,
                );
                return Ok(Some(r));
            }
            if Instant::now() >= deadline {
                // Commits and heartbeat-driven rejoins still happen while idle.
                return Ok(None);
            }
            self.poll_once().await?;
        }
    }

    /// The records as an async stream; it never ends by itself (drop it, then `close`).
    pub fn stream(&mut self) -> futures::stream::BoxStream<'_, Result<ConsumerRecord>> {
        use futures::StreamExt;
        futures::stream::unfold(self, |c| async move {
            let r = c.recv().await;
            Some((r, c))
        })
        .boxed()
    }

    /// One round: group upkeep, positions, one fetch into the buffer.
    async fn poll_once(&mut self) -> Result<()> {
        self.check_partition_counts().await;
        self.ensure_group().await?;
        self.maybe_auto_commit().await;
        self.resolve_positions().await?;
        if self.buffer.is_empty() {
            // Nothing handed out is pending: skip past control batches fetched earlier.
            for (tp, &off) in &self.fetch_positions {
                self.positions.insert(tp.clone(), off);
            }
        }
        if self.fetch_positions.is_empty() {
            tokio::time::sleep(self.config.fetch_max_wait.min(Duration::from_millis(100))).await;
            return Ok(());
        }
        self.fetch().await
    }

    fn set_assignment(&mut self, new: BTreeSet<TopicPartition>) {
        self.positions.retain(|tp, _| new.contains(tp));
        self.fetch_positions.retain(|tp, _| new.contains(tp));
        self.seeks.retain(|tp, _| new.contains(tp));
        self.buffer.clear();
        // What was fetched but not handed out is fetched again.
        let positions = self.positions.clone();
        self.fetch_positions = positions;
        self.assigned = new;
    }

    /// Positions for assigned partitions that have none: seek, committed offset, reset policy.
    async fn resolve_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|tp| !self.fetch_positions.contains_key(*tp))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut query = Vec::new();
        let mut without_seek = Vec::new();
        for tp in &missing {
            match self.seeks.remove(tp) {
                Some(Seek::Offset(o)) => {
                    self.set_position(tp, o);
                }
                Some(Seek::Beginning) => query.push((tp.clone(), EARLIEST)),
                Some(Seek::End) => query.push((tp.clone(), LATEST)),
                Some(Seek::Timestamp(ts)) => query.push((tp.clone(), ts)),
                None => without_seek.push(tp.clone()),
            }
        }
        if !without_seek.is_empty() {
            let committed = match self.config.group_id.clone() {
                Some(g) => {
                    let conn = self.coordinator_conn(g.clone()).await?;
                    offsets::fetch_committed(&conn, &g, Some(&without_seek)).await?
                }
                None => BTreeMap::new(),
            };
            for tp in without_seek {
                match committed.get(&tp) {
                    Some(&o) => self.set_position(&tp, o),
                    None => match self.config.auto_offset_reset {
                        OffsetReset::Earliest => query.push((tp, EARLIEST)),
                        OffsetReset::Latest => query.push((tp, LATEST)),
                        OffsetReset::None => {
                            return Err(Error::Config(format!(
                                "{tp} has no committed offset and auto_offset_reset is None"
                            )))
                        }
                    },
                }
            }
        }
        if !query.is_empty() {
            let found = offsets::list_offsets(&self.cluster, &query).await?;
            let mut need_end = Vec::new();
            for (tp, _) in &query {
                match found.get(tp) {
                    Some(o) if o.offset >= 0 => self.set_position(tp, o.offset),
                    // No record at or after the timestamp: the end.
                    _ => need_end.push((tp.clone(), LATEST)),
                }
            }
            if !need_end.is_empty() {
                let ends = offsets::list_offsets(&self.cluster, &need_end).await?;
                for (tp, o) in ends {
                    self.set_position(&tp, o.offset);
                }
            }
        }
        Ok(())
    }

    fn set_position(&mut self, tp: &TopicPartition, offset: i64) {
        debug!(partition = %tp, offset, "position");
        self.positions.insert(tp.clone(), offset);
        self.fetch_positions.insert(tp.clone(), offset);
    }

    async fn fetch(&mut self) -> Result<()> {
        let mut by_leader: BTreeMap<i32, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (tp, &off) in &self.fetch_positions {
            let leader = match self.cluster.topic(&tp.topic, false).await {
                Ok(t) => t
                    .partitions
                    .get(tp.partition as usize)
                    .map_or(-1, |p| p.leader),
                Err(e) => {
                    debug!(partition = %tp, cause = %e, "no metadata");
                    -1
                }
            };
            if leader >= 0 {
                by_leader.entry(leader).or_default().push((tp.clone(), off));
            }
        }
        if by_leader.is_empty() {
            tokio::time::sleep(self.config.client.retry_backoff).await;
            return Ok(());
        }
        // Several leaders: a short wait each, so one idle leader does not stall the rest.
        let max_wait = if by_leader.len() > 1 {
            Duration::from_millis(10)
        } else {
            self.config.fetch_max_wait
        };
        for (leader, parts) in by_leader {
            if let Err(e) = self.fetch_from(leader, &parts, max_wait).await {
                if !e.is_retriable() {
                    return Err(e);
                }
                warn!(leader, cause = %e, "fetch failed; will retry");
                self.fetch_conns.remove(&leader);
                for (tp, _) in &parts {
                    self.cluster.invalidate(&tp.topic);
                }
                tokio::time::sleep(self.config.client.retry_backoff).await;
            }
        }
        Ok(())
    }

    async fn fetch_from(
        &mut self,
        leader: i32,
        parts: &[(TopicPartition, i64)],
        max_wait: Duration,
    ) -> Result<()> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, off) in parts {
            let p = FetchPartition::default()
                .with_partition(tp.partition)
                .with_fetch_offset(*off)
                .with_partition_max_bytes(self.config.max_partition_fetch_bytes);
            match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
                Some(t) => t.partitions.push(p),
                None => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        let req = FetchRequest::default()
            .with_max_wait_ms(max_wait.as_millis() as i32)
            .with_min_bytes(1)
            .with_max_bytes(self.config.fetch_max_bytes)
            .with_topics(topics);
        if self.fetch_conns.get(&leader).is_none_or(|c| c.is_closed()) {
            let conn = self.cluster.dedicated_conn(leader).await?;
            self.fetch_conns.insert(leader, conn);
        }
        let conn = &self.fetch_conns[&leader];
        let resp = conn
            .call_timeout(&req, self.config.client.request_timeout + max_wait)
            .await?;
        Error::check(resp.error_code, || format!("fetch from broker {leader}"))?;
        for t in resp.responses {
            let topic = t.topic.0.to_string();
            for p in t.partitions {
                let tp = TopicPartition::new(topic.clone(), p.partition_index);
                let Some(&pos) = self.fetch_positions.get(&tp) else {
                    continue;
                };
                match p.error_code {
                    0 => {}
                    1 => {
                        // OFFSET_OUT_OF_RANGE: start over per the reset policy.
                        warn!(partition = %tp, offset = pos, "offset out of range; resetting");
                        self.positions.remove(&tp);
                        self.fetch_positions.remove(&tp);
                        if self.config.auto_offset_reset == OffsetReset::None {
                            return Err(Error::kafka(1, format!("fetch {tp} at {pos}"), None));
                        }
                        continue;
                    }
                    code => {
                        let e = Error::kafka(code, format!("fetch {tp} at {pos}"), None);
                        if e.needs_metadata_refresh() || e.is_retriable() {
                            debug!(partition = %tp, cause = %e, "fetch error; refreshing metadata");
                            self.cluster.invalidate(&tp.topic);
                            continue;
                        }
                        return Err(e);
                    }
                }
                let Some(records) = p.records else { continue };
                let next = decode_records(&tp, records, pos, &mut self.buffer)?;
                self.fetch_positions.insert(tp, next);
            }
        }
        Ok(())
    }

    async fn coordinator_conn(&mut self, group: String) -> Result<Arc<Connection>> {
        if let Some(c) = &self.coordinator {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        let node = self.cluster.coordinator(&group).await?;
        let conn = Arc::new(self.cluster.dedicated_conn(node).await?);
        self.coordinator = Some(conn.clone());
        Ok(conn)
    }

    /// As the group's leader, every `metadata_max_age`: re-reads the
    /// partition counts the assignment was computed from and rejoins if one
    /// changed, so partitions added since (CreatePartitions) are assigned,
    /// as Kafka's leaders do. A failed check is retried at the next one.
    async fn check_partition_counts(&mut self) {
        let Some(g) = self.group.as_mut() else {
            return;
        };
        if g.assigned_from.is_none()
            || Instant::now() < g.next_metadata_check
            || g.rejoin.load(Ordering::SeqCst)
        {
            return;
        }
        g.next_metadata_check = self.config.client.metadata_due();
        let Some((topics, counts)) = &g.assigned_from else {
            return;
        };
        match self.cluster.partition_counts(topics).await {
            Ok(fresh) if fresh != *counts => {
                info!(group = %g.id, before = ?counts, now = ?fresh, "partition counts changed; rejoining");
                g.rejoin.store(true, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(e) => debug!(cause = %e, "partition count check failed"),
        }
    }

    /// Joins (or rejoins) the group when needed.
    async fn ensure_group(&mut self) -> Result<()> {
        let needs = self
            .group
            .as_ref()
            .is_some_and(|g| g.rejoin.load(Ordering::SeqCst));
        if !needs {
            return Ok(());
        }
        let mut attempt = 0u32;
        loop {
            match self.join().await {
                Ok(()) => return Ok(()),
                Err(e)
                    if (e.is_retriable() || matches!(e.code(), Some(22 | 25 | 27)))
                        && attempt < 20 =>
                {
                    attempt += 1;
                    warn!(cause = %e, attempt, "joining the group failed; retrying");
                    if e.needs_metadata_refresh() {
                        self.coordinator = None;
                    }
                    if let Some(g) = &mut self.group {
                        if e.code() == Some(25) {
                            g.member_id.clear();
                        }
                    }
                    tokio::time::sleep(self.config.client.retry_backoff).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn join(&mut self) -> Result<()> {
        let group_id = self.group.as_ref().expect("group").id.clone();
        // Stop heartbeating the old generation, and hand back what we consumed.
        if let Some(h) = self.group.as_mut().and_then(|g| g.heartbeat.take()) {
            h.abort();
        }
        if self.config.enable_auto_commit && !self.assigned.is_empty() {
            if let Err(e) = self.commit_sync().await {
                warn!(cause = %e, "commit before rejoining failed");
            }
        }
        let conn = self.coordinator_conn(group_id.clone()).await?;
        let g = self.group.as_mut().expect("group");
        let metadata = assignor::encode_subscription(&g.topics)?;
        let protocols = self
            .config
            .assignors
            .iter()
            .map(|a| {
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(a.name()))
                    .with_metadata(metadata.clone())
            })
            .collect::<Vec<_>>();
        let wait =
            self.config.rebalance_timeout + self.config.session_timeout + Duration::from_secs(5);
        let joined = loop {
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
                .with_session_timeout_ms(self.config.session_timeout.as_millis() as i32)
                .with_rebalance_timeout_ms(self.config.rebalance_timeout.as_millis() as i32)
                .with_member_id(StrBytes::from_string(g.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(protocols.clone());
            let resp = conn.call_timeout(&req, wait).await?;
            match resp.error_code {
                0 => break resp,
                // MEMBER_ID_REQUIRED (KIP-394): join again with the id the broker gave.
                79 => g.member_id = resp.member_id.to_string(),
                code => return Err(Error::kafka(code, format!("JoinGroup {group_id}"), None)),
            }
        };
        g.member_id = joined.member_id.to_string();
        g.generation = joined.generation_id;
        let protocol = joined
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        info!(group = %group_id, generation = g.generation, member = %g.member_id, leader = %joined.leader.as_str(), protocol = %protocol, "joined group");
        let mut assignments = Vec::new();
        g.assigned_from = None;
        if joined.leader.as_str() == g.member_id {
            let assignor = Assignor::from_name(&protocol).ok_or_else(|| {
                Error::Protocol(format!("group chose unknown assignor {protocol:?}"))
            })?;
            let mut members = BTreeMap::new();
            for m in &joined.members {
                members.insert(
                    m.member_id.to_string(),
                    assignor::decode_subscription(m.metadata.clone())?,
                );
            }
            let topics: BTreeSet<String> = members.values().flatten().cloned().collect();
            let topics: Vec<String> = topics.into_iter().collect();
            let counts = self.cluster.partition_counts(&topics).await?;
            g.next_metadata_check = self.config.client.metadata_due();
            for (member, tps) in assignor.assign(&members, &counts) {
                assignments.push(
                    SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(assignor::encode_assignment(&tps)?),
                );
            }
            g.assigned_from = Some((topics, counts));
        }
        let g = self.group.as_mut().expect("group");
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
            .with_generation_id(g.generation)
            .with_member_id(StrBytes::from_string(g.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(joined.protocol_name.clone())
            .with_assignments(assignments);
        let synced = conn.call_timeout(&req, wait).await?;
        Error::check(synced.error_code, || format!("SyncGroup {group_id}"))?;
        let new: BTreeSet<TopicPartition> = assignor::decode_assignment(synced.assignment)?
            .into_iter()
            .collect();
        g.rejoin.store(false, Ordering::SeqCst);
        // Heartbeats for this generation.
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group_id.clone())))
            .with_generation_id(g.generation)
            .with_member_id(StrBytes::from_string(g.member_id.clone()));
        let (rejoin, interval, hconn) = (
            g.rejoin.clone(),
            self.config.heartbeat_interval,
            conn.clone(),
        );
        g.heartbeat = Some(tokio::spawn(heartbeat(hconn, hb, interval, rejoin)));

        let revoked: Vec<TopicPartition> = self.assigned.difference(&new).cloned().collect();
        let added: Vec<TopicPartition> = new.difference(&self.assigned).cloned().collect();
        info!(group = %group_id, assigned = new.len(), revoked = revoked.len(), added = added.len(), "assignment");
        if !revoked.is_empty() {
            let _ = self.events_tx.send(RebalanceEvent::Revoked(revoked));
        }
        self.set_assignment(new);
        if !added.is_empty() {
            let _ = self.events_tx.send(RebalanceEvent::Assigned(added));
        }
        Ok(())
    }

    async fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.group.is_none()
            || self.last_commit.elapsed() < self.config.auto_commit_interval
        {
            return;
        }
        if let Err(e) = self.commit_sync().await {
            warn!(cause = %e, "auto-commit failed");
        }
    }

    fn committer_parts(&self) -> Result<(String, i32, String)> {
        let group = self
            .config
            .group_id
            .clone()
            .ok_or_else(|| Error::Config("commit needs a group_id".into()))?;
        Ok(match &self.group {
            Some(g) => (group, g.generation, g.member_id.clone()),
            None => (group, -1, String::new()),
        })
    }

    /// Commits the positions of every assigned partition (the offsets after the
    /// records handed out) and waits for the answer.
    pub async fn commit_sync(&mut self) -> Result<()> {
        let offsets = self.positions.clone();
        self.commit_offsets(offsets).await
    }

    /// Commits these offsets (the next offset to read, per partition).
    pub async fn commit_offsets(&mut self, offsets: BTreeMap<TopicPartition, i64>) -> Result<()> {
        let (group, generation, member_id) = self.committer_parts()?;
        let conn = self.coordinator_conn(group.clone()).await?;
        self.last_commit = Instant::now();
        let who = Committer {
            group: &group,
            generation,
            member_id: &member_id,
        };
        let r = offsets::commit(&conn, &who, &offsets).await;
        if let (Err(e), Some(g)) = (&r, &self.group) {
            // ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS: rejoin.
            if matches!(e.code(), Some(22 | 25 | 27)) {
                g.rejoin.store(true, Ordering::SeqCst);
            }
        }
        r
    }

    /// Commits the current positions in the background; the handle yields the outcome.
    pub async fn commit_async(&mut self) -> Result<JoinHandle<Result<()>>> {
        let (group, generation, member_id) = self.committer_parts()?;
        let conn = self.coordinator_conn(group.clone()).await?;
        let offsets = self.positions.clone();
        self.last_commit = Instant::now();
        Ok(tokio::spawn(async move {
            let who = Committer {
                group: &group,
                generation,
                member_id: &member_id,
            };
            offsets::commit(&conn, &who, &offsets).await
        }))
    }

    /// Committed offsets of this consumer's group for `partitions`.
    pub async fn committed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let (group, _, _) = self.committer_parts()?;
        let conn = self.coordinator_conn(group.clone()).await?;
        offsets::fetch_committed(&conn, &group, Some(partitions)).await
    }

    /// Commits (with auto-commit), leaves the group and stops heartbeating.
    pub async fn close(mut self) -> Result<()> {
        self.shutdown().await
    }

    async fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let Some(mut g) = self.group.take() else {
            return Ok(());
        };
        if let Some(h) = g.heartbeat.take() {
            h.abort();
        }
        let mut result = Ok(());
        if self.config.enable_auto_commit && g.generation >= 0 && !self.positions.is_empty() {
            if let Some(conn) = &self.coordinator {
                let who = Committer {
                    group: &g.id,
                    generation: g.generation,
                    member_id: &g.member_id,
                };
                result = offsets::commit(conn, &who, &self.positions).await;
            }
        }
        if !g.member_id.is_empty() {
            if let Some(conn) = &self.coordinator {
                let v = conn.version_for::<LeaveGroupRequest>()?;
                let mut req = LeaveGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(g.id.clone())));
                let member = StrBytes::from_string(g.member_id.clone());
                if v >= 3 {
                    req = req.with_members(vec![MemberIdentity::default().with_member_id(member)]);
                } else {
                    req = req.with_member_id(member);
                }
                let resp = conn.call(&req).await?;
                Error::check(resp.error_code, || format!("LeaveGroup {}", g.id))?;
                info!(group = %g.id, member = %g.member_id, "left group");
            }
        }
        result
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(h) = self.group.as_mut().and_then(|g| g.heartbeat.take()) {
            h.abort();
        }
    }
}

async fn heartbeat(
    conn: Arc<Connection>,
    req: HeartbeatRequest,
    every: Duration,
    rejoin: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(every).await;
        match conn.call(&req).await {
            Ok(r) if r.error_code == 0 => {}
            Ok(r) => {
                // REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, ...
                debug!(code = r.error_code, "heartbeat: rejoin");
                rejoin.store(true, Ordering::SeqCst);
                return;
            }
            Err(e) => {
                warn!(cause = %e, "heartbeat failed");
                if conn.is_closed() {
                    rejoin.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    }
}

/// Decodes the whole batches in a fetched `records` blob into `out`, skipping
/// records before `pos` and control batches; returns the next offset to fetch.
///
/// ```text
/// 0 baseOffset i64 | 8 batchLength i32 | ... | 21 attributes i16 | 23 lastOffsetDelta i32
/// ```
fn decode_records(
    tp: &TopicPartition,
    mut records: Bytes,
    pos: i64,
    out: &mut VecDeque<ConsumerRecord>,
) -> Result<i64> {
    let mut next = pos;
    while records.len() >= 61 {
        let base = (&records[0..8]).get_i64();
        let len = (&records[8..12]).get_i32();
        if len < 49 {
            return Err(Error::Protocol(format!(
                "{tp}: batch at {base} has length {len}"
            )));
        }
        let total = 12 + len as usize;
        if records.len() < total {
            break; // a batch cut by max_bytes: fetched again next time
        }
        let mut batch = records.split_to(total);
        let magic = batch[16];
        let attributes = (&batch[21..23]).get_i16();
        let last_delta = (&batch[23..27]).get_i32();
        let end = base + last_delta as i64 + 1;
        if magic != 2 {
            return Err(Error::Protocol(format!(
                "{tp}: batch at {base} has magic {magic}"
            )));
        }
        if attributes & 0x20 == 0 && end > pos {
            let set = RecordBatchDecoder::decode_with_custom_compression(
                &mut batch,
                Some(crate::compression::decompress),
            )
            .map_err(|e| Error::Protocol(format!("{tp}: batch at {base}: {e}")))?;
            for r in set.records {
                if r.offset < pos {
                    continue;
                }
                out.push_back(ConsumerRecord {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset: r.offset,
                    timestamp: r.timestamp,
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                });
            }
        }
        next = next.max(end);
    }
    Ok(next)
}
