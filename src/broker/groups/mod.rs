//! The group coordinator: Kafka's classic consumer-group protocol (join,
//! sync, heartbeat, leave) and the committed offsets of every group.
//!
//! ```text
//!            join (first member)             all members joined, or the
//!  Empty ───────────────────────► Preparing ── rebalance deadline passed ──► Completing
//!    ▲                            Rebalance                                  Rebalance
//!    │ last member leaves /           ▲   ▲                                      │ leader's
//!    │ expires                        │   └──── member joins, leaves, expires ───┤ SyncGroup
//!    │                                │                                          ▼
//!    └────────────────────────────────┴─────────── member joins, leaves ───── Stable
//! ```
//!
//! Group state lives in memory behind one lock; JoinGroup and SyncGroup
//! answers that must wait for other members are delivered through oneshot
//! channels. Committed offsets are written to the [`store::OffsetStore`]
//! (fdatasync) before they are applied and answered.

pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tracing::{debug, info};

use crate::config::GroupsConfig;
pub use store::Committed;
use store::{OffsetRecord, OffsetStore};

use super::metadata::MetadataError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The state's name as Kafka reports it (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: v4+ joins without a member id get MEMBER_ID_REQUIRED first.
    pub require_known_member_id: bool,
}

/// A JoinGroup answer.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata).
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: &str) -> JoinOutcome {
        JoinOutcome {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup, decoded.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup answer.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    fn error(error: ResponseError) -> SyncOutcome {
        SyncOutcome {
            error: Some(error),
            ..SyncOutcome::default()
        }
    }
}

/// Either an answer now, or one that arrives when the group moves on.
pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    /// A member made from its JoinGroup, not yet waiting for anything.
    fn joining(req: JoinRequest, id: String, assignment: Bytes, now: Instant) -> Member {
        Member {
            id,
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment,
            last_heartbeat: now,
            join_waiter: None,
            sync_waiter: None,
        }
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Kafka keeps a member alive while it waits in a join or a sync.
    fn is_alive(&self, now: Instant) -> bool {
        self.join_waiter.is_some()
            || self.sync_waiter.is_some()
            || now.duration_since(self.last_heartbeat) < self.session_timeout
    }
}

struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of the static member holding it.
    static_members: HashMap<String, String>,
    /// KIP-394 member ids handed out and not yet used, with when.
    pending: HashMap<String, Instant>,
    /// When PreparingRebalance must complete with whoever has joined.
    join_deadline: Option<Instant>,
    /// A new group waits this long for more members before its first
    /// generation (group.initial.rebalance.delay.ms).
    initial_delay_until: Option<Instant>,
    /// When CompletingRebalance gives up on members that never synced.
    sync_deadline: Option<Instant>,
    /// Wall-clock ms when the group last became empty (offset expiry).
    empty_since_ms: i64,
    offsets: BTreeMap<(String, i32), Committed>,
}

impl Group {
    fn new(id: &str, now_ms: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            join_deadline: None,
            initial_delay_until: None,
            sync_deadline: None,
            empty_since_ms: now_ms,
            offsets: BTreeMap::new(),
        }
    }

    /// Whether `instance_id` belongs to a different member id (fenced).
    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|holder| holder != member_id)
    }

    /// Protocols every member supports, in the first member's order of
    /// preference, with the one most members prefer first.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| self.members.values().all(|m| m.supports(n)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some(pick) = m
                .protocols
                .iter()
                .map(|(n, _)| n.as_str())
                .find(|n| candidates.contains(n))
            {
                *votes.entry(pick).or_default() += 1;
            }
        }
        candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(*c).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .map(|c| c.to_string())
    }

    /// Whether a joining member's protocols fit the group.
    fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        let Some(first) = self.members.values().next() else {
            return true;
        };
        // Compare with the members, not the group's protocol type: that is
        // only set when a generation completes.
        first.protocol_type == protocol_type
            && protocols
                .iter()
                .any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    fn prepare_rebalance(&mut self, now: Instant, config: &GroupsConfig, reason: &str) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        // Members waiting for a SyncGroup answer must rejoin.
        for m in self.members.values_mut() {
            if let Some(tx) = m.sync_waiter.take() {
                // The member may have gone away; nothing to do then.
                drop(tx.send(SyncOutcome::error(ResponseError::RebalanceInProgress)));
            }
        }
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        if self.state == GroupState::Empty {
            let delay = config.initial_rebalance_delay.min(longest);
            self.initial_delay_until = Some(now + delay);
        }
        self.join_deadline = Some(now + longest);
        self.sync_deadline = None;
        info!(group = %self.id, generation = self.generation, reason, "preparing rebalance");
        self.state = GroupState::PreparingRebalance;
    }

    /// Completes the join phase when everyone has rejoined (or time is up).
    fn try_complete_join(&mut self, now: Instant, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let delayed = self.initial_delay_until.is_some_and(|t| now < t);
        let timed_out = self.join_deadline.is_some_and(|t| now >= t);
        if !(timed_out || (all_joined && !delayed)) {
            return;
        }
        // Those who did not rejoin in time are out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            debug!(group = %self.id, member = %id, "member did not rejoin in time");
            self.remove_member(&id);
        }
        self.generation += 1;
        self.initial_delay_until = None;
        self.join_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            self.empty_since_ms = now_ms;
            info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol = self.select_protocol();
        self.protocol_type = self
            .members
            .values()
            .next()
            .map(|m| m.protocol_type.clone());
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let longest = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.sync_deadline = Some(now + longest);
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.metadata_for(&protocol),
                )
            })
            .collect();
        info!(group = %self.id, generation = self.generation, members = all.len(), %protocol, %leader, "rebalance: join complete");
        for m in self.members.values_mut() {
            if let Some(tx) = m.join_waiter.take() {
                let outcome = JoinOutcome {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                };
                // A member that hung up in the meantime will time out.
                drop(tx.send(outcome));
            }
        }
    }

    /// The answer a member gets when it rejoins a group that need not
    /// rebalance for it.
    fn current_outcome(&self, member_id: &str) -> JoinOutcome {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: Some(protocol.clone()),
            leader: leader.clone(),
            member_id: member_id.to_string(),
            members: if member_id == leader {
                self.members
                    .values()
                    .map(|m| {
                        (
                            m.id.clone(),
                            m.instance_id.clone(),
                            m.metadata_for(&protocol),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    fn remove_member(&mut self, id: &str) -> Option<Member> {
        let mut member = self.members.remove(id)?;
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).is_some_and(|m| m == id) {
                self.static_members.remove(instance);
            }
        }
        if let Some(tx) = member.join_waiter.take() {
            drop(tx.send(JoinOutcome::error(ResponseError::UnknownMemberId, id)));
        }
        if let Some(tx) = member.sync_waiter.take() {
            drop(tx.send(SyncOutcome::error(ResponseError::UnknownMemberId)));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        Some(member)
    }

    /// After members left or expired: rebalance the rest (or become empty).
    fn members_changed(&mut self, now: Instant, now_ms: i64, config: &GroupsConfig, reason: &str) {
        match self.state {
            GroupState::Empty => {}
            GroupState::PreparingRebalance => self.try_complete_join(now, now_ms),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.prepare_rebalance(now, config, reason);
                self.try_complete_join(now, now_ms);
            }
        }
    }
}

/// Everything the coordinator knows, behind one lock.
#[derive(Default)]
struct Groups {
    groups: BTreeMap<String, Group>,
}

impl Groups {
    fn get_or_create(&mut self, id: &str, now_ms: i64) -> &mut Group {
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(id, now_ms))
    }
}

/// One topic's partitions with their committed offset, if any.
pub type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// An OffsetCommit, decoded.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// (topic, partition, offset, leader epoch, metadata)
    pub offsets: Vec<(String, i32, i64, i32, String)>,
}

/// The group coordinator.
pub struct GroupCoordinator {
    config: GroupsConfig,
    /// Lock order: `store` before `groups`.
    store: Mutex<OffsetStore>,
    groups: Mutex<Groups>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Group state has no invariants a panic in another request could break
    // halfway that are worse than refusing service; keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl GroupCoordinator {
    /// Loads committed offsets from `<meta_dir>/offsets.log`.
    pub fn open(
        meta_dir: &std::path::Path,
        config: GroupsConfig,
        now_ms: i64,
    ) -> Result<GroupCoordinator, MetadataError> {
        let (store, offsets) = OffsetStore::open(meta_dir)?;
        let mut groups = Groups::default();
        for (id, partitions) in offsets {
            groups.get_or_create(&id, now_ms).offsets = partitions;
        }
        Ok(GroupCoordinator {
            config,
            store: Mutex::new(store),
            groups: Mutex::new(groups),
        })
    }

    pub fn config(&self) -> &GroupsConfig {
        &self.config
    }

    /// JoinGroup.
    pub fn join(&self, req: JoinRequest, now: Instant, now_ms: i64) -> Reply<JoinOutcome> {
        let config = &self.config;
        if req.group_id.is_empty() {
            return Reply::Now(JoinOutcome::error(
                ResponseError::InvalidGroupId,
                &req.member_id,
            ));
        }
        if req.session_timeout < config.min_session_timeout
            || req.session_timeout > config.max_session_timeout
        {
            return Reply::Now(JoinOutcome::error(
                ResponseError::InvalidSessionTimeout,
                &req.member_id,
            ));
        }
        let mut all = lock(&self.groups);
        let group = all.get_or_create(&req.group_id, now_ms);
        if !group.accepts(&req.protocol_type, &req.protocols) {
            return Reply::Now(JoinOutcome::error(
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            ));
        }

        let member_id = if req.member_id.is_empty() {
            let new_id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
            match &req.instance_id {
                Some(instance) => {
                    if let Some(old_id) = group.static_members.get(instance).cloned() {
                        return Self::static_rejoin(
                            group, req, old_id, new_id, now, now_ms, config,
                        );
                    }
                    new_id
                }
                None if req.require_known_member_id => {
                    group.pending.insert(new_id.clone(), now);
                    return Reply::Now(JoinOutcome::error(
                        ResponseError::MemberIdRequired,
                        &new_id,
                    ));
                }
                None => new_id,
            }
        } else {
            let id = req.member_id.clone();
            if group.is_fenced(req.instance_id.as_deref(), &id) {
                return Reply::Now(JoinOutcome::error(ResponseError::FencedInstanceId, &id));
            }
            if group.pending.remove(&id).is_none() && !group.members.contains_key(&id) {
                return Reply::Now(JoinOutcome::error(ResponseError::UnknownMemberId, &id));
            }
            id
        };

        let (tx, rx) = oneshot::channel();
        let reason = match group.members.get_mut(&member_id) {
            Some(member) => {
                let unchanged = member.protocols == req.protocols;
                member.protocols = req.protocols;
                member.session_timeout = req.session_timeout;
                member.rebalance_timeout = req.rebalance_timeout;
                member.last_heartbeat = now;
                let is_leader = group.leader.as_deref() == Some(member_id.as_str());
                match group.state {
                    GroupState::CompletingRebalance if unchanged => {
                        return Reply::Now(group.current_outcome(&member_id));
                    }
                    GroupState::Stable if unchanged && !is_leader => {
                        return Reply::Now(group.current_outcome(&member_id));
                    }
                    _ => {}
                }
                if let Some(old) = member.join_waiter.replace(tx) {
                    drop(old.send(JoinOutcome::error(
                        ResponseError::UnknownMemberId,
                        &member_id,
                    )));
                }
                if !unchanged {
                    "a member's protocols or metadata changed"
                } else if is_leader {
                    "the leader rejoined"
                } else {
                    "a member rejoined"
                }
            }
            None => {
                if let Some(instance) = &req.instance_id {
                    group
                        .static_members
                        .insert(instance.clone(), member_id.clone());
                }
                let mut member = Member::joining(req, member_id.clone(), Bytes::new(), now);
                member.join_waiter = Some(tx);
                group.members.insert(member_id.clone(), member);
                "a new member joined"
            }
        };
        debug!(group = %group.id, member = %member_id, reason, "join");
        group.prepare_rebalance(now, config, reason);
        group.try_complete_join(now, now_ms);
        Reply::Later(rx)
    }

    /// A static member rejoining with a new member id (KIP-345): the old id
    /// is fenced; a follower of a stable group keeps its assignment without a
    /// rebalance.
    fn static_rejoin(
        group: &mut Group,
        req: JoinRequest,
        old_id: String,
        new_id: String,
        now: Instant,
        now_ms: i64,
        config: &GroupsConfig,
    ) -> Reply<JoinOutcome> {
        let Some(mut old) = group.members.remove(&old_id) else {
            group
                .static_members
                .remove(req.instance_id.as_deref().unwrap_or_default());
            return Reply::Now(JoinOutcome::error(ResponseError::UnknownMemberId, &new_id));
        };
        if let Some(tx) = old.join_waiter.take() {
            drop(tx.send(JoinOutcome::error(ResponseError::FencedInstanceId, &old_id)));
        }
        if let Some(tx) = old.sync_waiter.take() {
            drop(tx.send(SyncOutcome::error(ResponseError::FencedInstanceId)));
        }
        let was_leader = group.leader.as_deref() == Some(old_id.as_str());
        let unchanged = old.protocols == req.protocols;
        let (tx, rx) = oneshot::channel();
        let rebalance = !(group.state == GroupState::Stable && unchanged && !was_leader);
        let instance_id = req.instance_id.clone();
        let mut member = Member::joining(req, new_id.clone(), old.assignment, now);
        member.join_waiter = rebalance.then_some(tx);
        group.members.insert(new_id.clone(), member);
        if let Some(instance) = instance_id {
            group.static_members.insert(instance, new_id.clone());
        }
        if was_leader {
            group.leader = Some(new_id.clone());
        }
        if !rebalance {
            info!(group = %group.id, member = %new_id, "static member rejoined without a rebalance");
            return Reply::Now(group.current_outcome(&new_id));
        }
        group.prepare_rebalance(now, config, "static member rejoined");
        group.try_complete_join(now, now_ms);
        Reply::Later(rx)
    }

    /// SyncGroup.
    pub fn sync(&self, req: SyncRequest, now: Instant) -> Reply<SyncOutcome> {
        let mut all = lock(&self.groups);
        let Some(group) = all.groups.get_mut(&req.group_id) else {
            return Reply::Now(SyncOutcome::error(ResponseError::UnknownMemberId));
        };
        if group.is_fenced(req.instance_id.as_deref(), &req.member_id) {
            return Reply::Now(SyncOutcome::error(ResponseError::FencedInstanceId));
        }
        if !group.members.contains_key(&req.member_id) {
            return Reply::Now(SyncOutcome::error(ResponseError::UnknownMemberId));
        }
        if req.generation != group.generation {
            return Reply::Now(SyncOutcome::error(ResponseError::IllegalGeneration));
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != group.protocol.as_ref())
        {
            return Reply::Now(SyncOutcome::error(ResponseError::InconsistentGroupProtocol));
        }
        let ok = |group: &Group, assignment: Bytes| SyncOutcome {
            error: None,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        match group.state {
            GroupState::Empty => Reply::Now(SyncOutcome::error(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncOutcome::error(ResponseError::RebalanceInProgress))
            }
            GroupState::Stable => {
                let member = &group.members[&req.member_id];
                Reply::Now(ok(group, member.assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(member) = group.members.get_mut(&req.member_id) {
                    member.last_heartbeat = now;
                    member.sync_waiter = Some(tx);
                }
                if group.leader.as_deref() == Some(req.member_id.as_str()) {
                    let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in group.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    group.sync_deadline = None;
                    info!(group = %group.id, generation = group.generation, "rebalance complete: group stable");
                    let (protocol_type, protocol_name) =
                        (group.protocol_type.clone(), group.protocol.clone());
                    for m in group.members.values_mut() {
                        if let Some(tx) = m.sync_waiter.take() {
                            drop(tx.send(SyncOutcome {
                                error: None,
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: m.assignment.clone(),
                            }));
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    /// Heartbeat: None when all is well, else the error for the member.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        let mut all = lock(&self.groups);
        let Some(group) = all.groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if group.is_fenced(instance_id, member_id) {
            return Some(ResponseError::FencedInstanceId);
        }
        let state = group.state;
        let current = group.generation;
        let Some(member) = group.members.get_mut(member_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if generation != current {
            return Some(ResponseError::IllegalGeneration);
        }
        member.last_heartbeat = now;
        match state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => Some(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance | GroupState::Stable => None,
        }
    }

    /// LeaveGroup: per member (member id, instance id) the error, if any.
    pub fn leave(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
        now: Instant,
        now_ms: i64,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let mut all = lock(&self.groups);
        let Some(group) = all.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = 0;
        for (member_id, instance_id) in leaving {
            let target = match instance_id {
                Some(instance) => match group.static_members.get(instance) {
                    Some(holder) if member_id.is_empty() || holder == member_id => {
                        Some(holder.clone())
                    }
                    Some(_) => {
                        results.push(Some(ResponseError::FencedInstanceId));
                        continue;
                    }
                    None => None,
                },
                None => Some(member_id.clone()),
            };
            match target {
                Some(id) if group.remove_member(&id).is_some() => {
                    removed += 1;
                    results.push(None);
                }
                Some(id) if group.pending.remove(&id).is_some() => results.push(None),
                _ => results.push(Some(ResponseError::UnknownMemberId)),
            }
        }
        if removed > 0 {
            group.members_changed(now, now_ms, &self.config, "member left");
        }
        Ok(results)
    }

    /// Expires silent members, overdue joins and syncs. Called periodically.
    pub fn tick(&self, now: Instant, now_ms: i64) {
        let mut all = lock(&self.groups);
        for group in all.groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| !m.is_alive(now))
                .map(|m| m.id.clone())
                .collect();
            for id in &expired {
                info!(group = %group.id, member = %id, "member session expired");
                group.remove_member(id);
            }
            let max_session = self.config.max_session_timeout;
            group
                .pending
                .retain(|_, since| now.duration_since(*since) < max_session);
            if group.state == GroupState::CompletingRebalance
                && group.sync_deadline.is_some_and(|t| now >= t)
            {
                let unsynced: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in &unsynced {
                    info!(group = %group.id, member = %id, "member did not sync in time");
                    group.remove_member(id);
                }
                group.sync_deadline = None;
                if !unsynced.is_empty() {
                    group.members_changed(now, now_ms, &self.config, "members did not sync");
                }
            }
            if !expired.is_empty() {
                group.members_changed(now, now_ms, &self.config, "member session expired");
            } else {
                group.try_complete_join(now, now_ms);
            }
        }
    }

    /// Checks an OffsetCommit against the group's generation; per partition
    /// the records to write. Err is a whole-request error.
    fn check_commit(&self, req: &CommitRequest, now_ms: i64) -> Result<(), ResponseError> {
        let mut all = lock(&self.groups);
        let simple = req.generation < 0 && req.member_id.is_empty();
        let group = match all.groups.get_mut(&req.group_id) {
            Some(g) => g,
            None if simple => all.get_or_create(&req.group_id, now_ms),
            None => return Err(ResponseError::IllegalGeneration),
        };
        if simple {
            return if group.state == GroupState::Empty {
                Ok(())
            } else {
                // Someone is consuming as a group: a standalone commit would
                // fight it.
                Err(ResponseError::UnknownMemberId)
            };
        }
        if group.is_fenced(req.instance_id.as_deref(), &req.member_id) {
            return Err(ResponseError::FencedInstanceId);
        }
        if !group.members.contains_key(&req.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if req.generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        if group.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// OffsetCommit: durably stores the offsets, then applies them. Blocking.
    pub fn commit(&self, req: &CommitRequest, now_ms: i64) -> Result<(), CommitError> {
        self.check_commit(req, now_ms).map_err(CommitError::Group)?;
        let records: Vec<OffsetRecord> = req
            .offsets
            .iter()
            .map(
                |(topic, partition, offset, leader_epoch, metadata)| OffsetRecord::Commit {
                    group: req.group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    committed: Committed {
                        offset: *offset,
                        leader_epoch: *leader_epoch,
                        metadata: metadata.clone(),
                        commit_ms: now_ms,
                    },
                },
            )
            .collect();
        self.write_and_apply(records, now_ms)
    }

    /// Writes records to the store (fdatasync) and applies them in memory,
    /// holding the store lock across both so memory follows the log's order.
    fn write_and_apply(&self, records: Vec<OffsetRecord>, now_ms: i64) -> Result<(), CommitError> {
        let mut store = lock(&self.store);
        store.append(&records).map_err(CommitError::Store)?;
        let mut all = lock(&self.groups);
        for record in records {
            if let OffsetRecord::DeleteGroup { group } = &record {
                all.groups.remove(group);
                continue;
            }
            let group = all.get_or_create(record.group(), now_ms);
            record.apply_to_group(&mut group.offsets);
        }
        // Groups that were only holders of offsets and lost them all vanish.
        all.groups.retain(|_, g| {
            !(g.state == GroupState::Empty
                && g.offsets.is_empty()
                && g.generation == 0
                && g.members.is_empty())
        });
        Ok(())
    }

    /// OffsetFetch: the committed offsets of `group_id`, all of them when
    /// `wanted` is None.
    pub fn committed(
        &self,
        group_id: &str,
        wanted: Option<&[(String, Vec<i32>)]>,
    ) -> Vec<TopicOffsets> {
        let all = lock(&self.groups);
        let offsets = all.groups.get(group_id).map(|g| &g.offsets);
        match wanted {
            Some(list) => list
                .iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .iter()
                        .map(|p| {
                            (
                                *p,
                                offsets.and_then(|o| o.get(&(topic.clone(), *p)).cloned()),
                            )
                        })
                        .collect();
                    (topic.clone(), found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
                for ((topic, p), c) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*p, Some(c.clone())));
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// Every committed offset: (group, topic, partition, offset), for lag.
    pub fn all_committed(&self) -> Vec<(String, String, i32, i64)> {
        let all = lock(&self.groups);
        all.groups
            .values()
            .flat_map(|g| {
                g.offsets
                    .iter()
                    .map(|((t, p), c)| (g.id.clone(), t.clone(), *p, c.offset))
            })
            .collect()
    }

    /// ListGroups: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        lock(&self.groups)
            .groups
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect()
    }

    /// DescribeGroups: None for a group nobody has heard of.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let all = lock(&self.groups);
        let g = all.groups.get(group_id)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: if g.state == GroupState::Stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups: only empty groups; their offsets go too. Blocking.
    pub fn delete_group(&self, group_id: &str, now_ms: i64) -> Result<(), CommitError> {
        {
            let all = lock(&self.groups);
            match all.groups.get(group_id) {
                None => return Err(CommitError::Group(ResponseError::GroupIdNotFound)),
                Some(g) if g.state != GroupState::Empty => {
                    return Err(CommitError::Group(ResponseError::NonEmptyGroup))
                }
                Some(_) => {}
            }
        }
        self.write_and_apply(
            vec![OffsetRecord::DeleteGroup {
                group: group_id.to_string(),
            }],
            now_ms,
        )?;
        info!(group = %group_id, "group deleted");
        Ok(())
    }

    /// Drops every group's committed offsets of a deleted topic. Blocking.
    pub fn remove_topic(&self, topic: &str, now_ms: i64) -> Result<(), CommitError> {
        let records: Vec<OffsetRecord> = {
            let all = lock(&self.groups);
            all.groups
                .values()
                .flat_map(|g| {
                    g.offsets.keys().filter(|(t, _)| t == topic).map(|(t, p)| {
                        OffsetRecord::DeleteOffset {
                            group: g.id.clone(),
                            topic: t.clone(),
                            partition: *p,
                        }
                    })
                })
                .collect()
        };
        self.write_and_apply(records, now_ms)
    }

    /// Expires offsets of empty groups older than `offsets_retention`
    /// (counted from when the group became empty, as Kafka does). Blocking.
    pub fn expire_offsets(&self, now_ms: i64) -> Result<usize, CommitError> {
        let retention = self.config.offsets_retention.as_millis() as i64;
        let records: Vec<OffsetRecord> = {
            let all = lock(&self.groups);
            all.groups
                .values()
                .filter(|g| g.state == GroupState::Empty)
                .flat_map(|g| {
                    g.offsets
                        .iter()
                        .filter(move |(_, c)| {
                            now_ms - c.commit_ms.max(g.empty_since_ms) >= retention
                        })
                        .map(|((t, p), _)| OffsetRecord::DeleteOffset {
                            group: g.id.clone(),
                            topic: t.clone(),
                            partition: *p,
                        })
                })
                .collect()
        };
        let n = records.len();
        self.write_and_apply(records, now_ms)?;
        Ok(n)
    }
}

/// Why an offset-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Group(ResponseError),
    #[error(transparent)]
    Store(MetadataError),
}

impl CommitError {
    pub fn code(&self) -> ResponseError {
        match self {
            CommitError::Group(e) => *e,
            CommitError::Store(_) => ResponseError::KafkaStorageError,
        }
    }
}
