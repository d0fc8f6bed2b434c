//! The group coordinator's state machine driven with raw requests against a
//! real `strom serve`: racing joins, members that stop heartbeating, static
//! members, stale generations and durable offsets.

mod common;

use std::thread;

use bytes::Bytes;
use common::{Client, TestBroker};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const NONE: i16 = 0;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const FENCED_INSTANCE_ID: i16 = 82;

/// Fast groups: no initial delay, short sessions allowed.
const CONFIG: &str =
    "[groups]\ninitial_rebalance_delay = \"0ms\"\nmin_session_timeout = \"100ms\"\n";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

struct Join<'a> {
    group: &'a str,
    member: &'a str,
    instance: Option<&'a str>,
    session_ms: i32,
    rebalance_ms: i32,
    protocol: &'a str,
}

impl<'a> Join<'a> {
    fn new(group: &'a str) -> Self {
        Join {
            group,
            member: "",
            instance: None,
            session_ms: 10_000,
            rebalance_ms: 10_000,
            protocol: "range",
        }
    }
}

fn join(client: &mut Client, j: &Join) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(s(j.group)))
        .with_session_timeout_ms(j.session_ms)
        .with_rebalance_timeout_ms(j.rebalance_ms)
        .with_member_id(s(j.member))
        .with_group_instance_id(j.instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s(j.protocol))
            .with_metadata(Bytes::from(format!(
                "meta-of-{}",
                j.instance.unwrap_or("dynamic")
            )))]);
    client.call(ApiKey::JoinGroup, 7, &request)
}

/// KIP-394: the first join gets MEMBER_ID_REQUIRED and an id; the second
/// joins with it.
fn join_dynamic(client: &mut Client, group: &str) -> JoinGroupResponse {
    let first = join(client, &Join::new(group));
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    assert!(!first.member_id.is_empty());
    let member = first.member_id.to_string();
    join(
        client,
        &Join {
            member: &member,
            ..Join::new(group)
        },
    )
}

fn sync(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    assignments: &[(&str, &str)],
) -> SyncGroupResponse {
    let request = SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from(a.to_string()))
                })
                .collect(),
        );
    client.call(ApiKey::SyncGroup, 5, &request)
}

fn heartbeat(client: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id(generation)
        .with_member_id(s(member));
    let response: HeartbeatResponse = client.call(ApiKey::Heartbeat, 4, &request);
    response.error_code
}

fn commit(
    client: &mut Client,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_metadata(Some(s("note")))])]);
    let response: OffsetCommitResponse = client.call(ApiKey::OffsetCommit, 8, &request);
    response.topics[0].partitions[0].error_code
}

fn fetch_committed(client: &mut Client, group: &str, topic: &str) -> (i64, Option<String>) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partition_indexes(vec![0])]));
    let response: OffsetFetchResponse = client.call(ApiKey::OffsetFetch, 7, &request);
    let p = &response.topics[0].partitions[0];
    (
        p.committed_offset,
        p.metadata.as_ref().map(|m| m.to_string()),
    )
}

fn create_topic(client: &mut Client, topic: &str) {
    let request = CreateTopicsRequest::default().with_topics(vec![
        create_topics_request::CreatableTopic::default()
            .with_name(TopicName(s(topic)))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(response.topics[0].error_code, NONE);
}

#[test]
fn racing_joins_form_one_generation_with_one_leader() {
    // The initial rebalance delay gathers joins that race a new group.
    let broker =
        TestBroker::start_with_config(Some("[groups]\ninitial_rebalance_delay = \"1s\"\n"));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let addr = broker.addr.clone();
            thread::spawn(move || join_dynamic(&mut Client::connect(&addr), "race"))
        })
        .collect();
    let answers: Vec<JoinGroupResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(answers.iter().all(|a| a.error_code == NONE));
    assert!(
        answers.iter().all(|a| a.generation_id == 1),
        "one generation"
    );
    let leaders: Vec<&JoinGroupResponse> =
        answers.iter().filter(|a| a.leader == a.member_id).collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    assert_eq!(leaders[0].members.len(), 3, "the leader sees every member");
    let mut ids: Vec<String> = leaders[0]
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    ids.sort();
    let mut joined: Vec<String> = answers.iter().map(|a| a.member_id.to_string()).collect();
    joined.sort();
    assert_eq!(ids, joined);
    assert!(answers
        .iter()
        .filter(|a| a.leader != a.member_id)
        .all(|a| a.members.is_empty()));
    assert!(answers.iter().all(|a| a.leader == leaders[0].member_id));
}

#[test]
fn the_leaders_assignment_reaches_each_member_unchanged() {
    let broker =
        TestBroker::start_with_config(Some("[groups]\ninitial_rebalance_delay = \"1s\"\n"));
    let addr = broker.addr.clone();
    let other = thread::spawn(move || {
        let mut c = Client::connect(&addr);
        let joined = join_dynamic(&mut c, "assign");
        (joined, c)
    });
    let mut first_client = broker.client();
    let first = join_dynamic(&mut first_client, "assign");
    let (second, second_client) = other.join().unwrap();
    assert_eq!(first.generation_id, second.generation_id);
    let (mut leader_client, leader, mut follower_client, follower) =
        if first.leader == first.member_id {
            (first_client, first, second_client, second)
        } else {
            (second_client, second, first_client, first)
        };
    let gen = leader.generation_id;
    let (l_id, f_id) = (leader.member_id.to_string(), follower.member_id.to_string());
    // The follower asks first and waits for the leader's assignment.
    let fid = f_id.clone();
    let waiting = thread::spawn(move || sync(&mut follower_client, "assign", gen, &fid, &[]));
    thread::sleep(std::time::Duration::from_millis(100));
    let mine = sync(
        &mut leader_client,
        "assign",
        gen,
        &l_id,
        &[(&l_id, "L-part"), (&f_id, "F-part")],
    );
    assert_eq!(
        (mine.error_code, &mine.assignment[..]),
        (NONE, &b"L-part"[..])
    );
    let theirs = waiting.join().unwrap();
    assert_eq!(
        (theirs.error_code, &theirs.assignment[..]),
        (NONE, &b"F-part"[..])
    );
    assert_eq!(theirs.protocol_name.as_deref(), Some("range"));
}

#[test]
fn a_member_that_stops_heartbeating_is_removed_and_the_group_rebalances() {
    let broker = TestBroker::start_with_config(Some(CONFIG));
    let mut a = broker.client();
    let first = join(
        &mut a,
        &Join {
            session_ms: 500,
            ..Join::new("hb")
        },
    );
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let a_id = first.member_id.to_string();
    let joined = join(
        &mut a,
        &Join {
            member: &a_id,
            session_ms: 500,
            ..Join::new("hb")
        },
    );
    assert_eq!(joined.error_code, NONE);
    let gen = joined.generation_id;
    assert_eq!(
        sync(&mut a, "hb", gen, &a_id, &[(&a_id, "x")]).error_code,
        NONE
    );
    // No heartbeats: after the 500 ms session the member is gone.
    let mut waited = 0;
    loop {
        thread::sleep(std::time::Duration::from_millis(200));
        waited += 200;
        let described: DescribeGroupsResponse = a.call(
            ApiKey::DescribeGroups,
            5,
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("hb"))]),
        );
        if described.groups[0].members.is_empty() {
            assert_eq!(&*described.groups[0].group_state, "Empty");
            break;
        }
        assert!(waited < 10_000, "member never expired");
    }
    assert_eq!(heartbeat(&mut a, "hb", gen, &a_id), UNKNOWN_MEMBER_ID);
}

#[test]
fn heartbeats_say_rebalance_in_progress_when_someone_joins() {
    let broker = TestBroker::start_with_config(Some(CONFIG));
    let mut a = broker.client();
    let joined = join_dynamic(&mut a, "rb");
    let a_id = joined.member_id.to_string();
    assert_eq!(
        sync(&mut a, "rb", joined.generation_id, &a_id, &[(&a_id, "x")]).error_code,
        NONE
    );
    assert_eq!(heartbeat(&mut a, "rb", joined.generation_id, &a_id), NONE);
    let addr = broker.addr.clone();
    let newcomer = thread::spawn(move || join_dynamic(&mut Client::connect(&addr), "rb"));
    // The newcomer's join puts the group in PreparingRebalance.
    let mut code = NONE;
    for _ in 0..50 {
        code = heartbeat(&mut a, "rb", joined.generation_id, &a_id);
        if code != NONE {
            break;
        }
        thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(code, REBALANCE_IN_PROGRESS);
    let rejoined = join(
        &mut a,
        &Join {
            member: &a_id,
            ..Join::new("rb")
        },
    );
    let theirs = newcomer.join().unwrap();
    assert_eq!(rejoined.generation_id, joined.generation_id + 1);
    assert_eq!(theirs.generation_id, rejoined.generation_id);
    // A heartbeat with the old generation is now illegal.
    assert_eq!(
        heartbeat(&mut a, "rb", joined.generation_id, &a_id),
        ILLEGAL_GENERATION
    );
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let broker = TestBroker::start_with_config(Some(CONFIG));
    let mut leader = broker.client();
    let l = join(
        &mut leader,
        &Join {
            instance: Some("leader-1"),
            ..Join::new("static")
        },
    );
    assert_eq!(
        l.error_code, NONE,
        "static members need no MEMBER_ID_REQUIRED round"
    );
    let l_id = l.member_id.to_string();
    // Sync the first generation so a follower can join a stable group.
    assert_eq!(
        sync(
            &mut leader,
            "static",
            l.generation_id,
            &l_id,
            &[(&l_id, "L")]
        )
        .error_code,
        NONE
    );

    let addr = broker.addr.clone();
    let follower = thread::spawn(move || {
        let mut c = Client::connect(&addr);
        let f = join(
            &mut c,
            &Join {
                instance: Some("follower-1"),
                ..Join::new("static")
            },
        );
        (f, c)
    });
    // The leader rejoins for the rebalance the follower triggered.
    let mut l2 = None;
    for _ in 0..50 {
        if heartbeat(&mut leader, "static", l.generation_id, &l_id) == REBALANCE_IN_PROGRESS {
            l2 = Some(join(
                &mut leader,
                &Join {
                    member: &l_id,
                    instance: Some("leader-1"),
                    ..Join::new("static")
                },
            ));
            break;
        }
        thread::sleep(std::time::Duration::from_millis(50));
    }
    let l2 = l2.expect("leader saw the rebalance");
    let (f, mut follower_client) = follower.join().unwrap();
    let gen = l2.generation_id;
    let f_id = f.member_id.to_string();
    let fid = f_id.clone();
    let follower_sync = thread::spawn(move || {
        let r = sync(&mut follower_client, "static", gen, &fid, &[]);
        (r, follower_client)
    });
    assert_eq!(
        sync(
            &mut leader,
            "static",
            gen,
            &l_id,
            &[(&l_id, "L2"), (&f_id, "F2")]
        )
        .error_code,
        NONE
    );
    let (synced, _) = follower_sync.join().unwrap();
    assert_eq!(&synced.assignment[..], b"F2");

    // The follower restarts: same instance id, no member id.
    let mut restarted = broker.client();
    let back = join(
        &mut restarted,
        &Join {
            instance: Some("follower-1"),
            ..Join::new("static")
        },
    );
    assert_eq!(back.error_code, NONE);
    assert_eq!(back.generation_id, gen, "no rebalance for a static rejoin");
    assert_ne!(back.member_id.to_string(), f_id);
    let again = sync(&mut restarted, "static", gen, &back.member_id, &[]);
    assert_eq!(&again.assignment[..], b"F2", "the assignment is kept");
    assert_eq!(
        heartbeat(&mut leader, "static", gen, &l_id),
        NONE,
        "the leader saw no rebalance"
    );
    // The old member id of that instance is fenced.
    let request = HeartbeatRequest::default()
        .with_group_id(GroupId(s("static")))
        .with_generation_id(gen)
        .with_member_id(s(&f_id))
        .with_group_instance_id(Some(s("follower-1")));
    let fenced: HeartbeatResponse = restarted.call(ApiKey::Heartbeat, 4, &request);
    assert_eq!(fenced.error_code, FENCED_INSTANCE_ID);
}

#[test]
fn commits_check_the_generation_and_survive_restarts() {
    let mut broker = TestBroker::start_with_config(Some(CONFIG));
    let mut c = broker.client();
    create_topic(&mut c, "t");
    let joined = join_dynamic(&mut c, "offs");
    let id = joined.member_id.to_string();
    let gen = joined.generation_id;
    assert_eq!(
        sync(&mut c, "offs", gen, &id, &[(&id, "x")]).error_code,
        NONE
    );
    assert_eq!(
        commit(&mut c, "offs", gen + 1, &id, "t", 5),
        ILLEGAL_GENERATION
    );
    assert_eq!(
        commit(&mut c, "offs", gen, "stranger", "t", 5),
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(commit(&mut c, "offs", gen, &id, "t", 42), NONE);
    assert_eq!(
        fetch_committed(&mut c, "offs", "t"),
        (42, Some("note".into()))
    );
    // Standalone commits (generation -1) are refused while the group has members.
    assert_eq!(commit(&mut c, "offs", -1, "", "t", 1), UNKNOWN_MEMBER_ID);
    // ... and accepted for a group nobody is in.
    assert_eq!(commit(&mut c, "solo", -1, "", "t", 7), NONE);
    drop(c);

    broker.kill();
    broker.restart();
    let mut c = broker.client();
    assert_eq!(
        fetch_committed(&mut c, "offs", "t"),
        (42, Some("note".into()))
    );
    assert_eq!(fetch_committed(&mut c, "solo", "t").0, 7);
    assert!(broker.stop().success());
    broker.restart();
    let mut c = broker.client();
    assert_eq!(fetch_committed(&mut c, "offs", "t").0, 42);
}

#[test]
fn join_requests_are_validated() {
    let broker = TestBroker::start_with_config(Some(CONFIG));
    let mut c = broker.client();
    let too_long = join(
        &mut c,
        &Join {
            session_ms: 99_999_999,
            ..Join::new("v")
        },
    );
    assert_eq!(too_long.error_code, INVALID_SESSION_TIMEOUT);
    let joined = join_dynamic(&mut c, "v");
    assert_eq!(joined.error_code, NONE);
    let mut other = broker.client();
    let mismatch = join(
        &mut other,
        &Join {
            protocol: "roundrobin",
            ..Join::new("v")
        },
    );
    assert_eq!(mismatch.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let unknown = join(
        &mut other,
        &Join {
            member: "made-up",
            ..Join::new("v")
        },
    );
    assert_eq!(unknown.error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn leave_and_delete_follow_kafkas_rules() {
    let broker = TestBroker::start_with_config(Some(CONFIG));
    let mut c = broker.client();
    create_topic(&mut c, "t");
    let joined = join_dynamic(&mut c, "del");
    let id = joined.member_id.to_string();
    assert_eq!(
        sync(&mut c, "del", joined.generation_id, &id, &[(&id, "x")]).error_code,
        NONE
    );
    assert_eq!(
        commit(&mut c, "del", joined.generation_id, &id, "t", 3),
        NONE
    );

    let delete = |c: &mut Client, group: &str| -> i16 {
        let response: DeleteGroupsResponse = c.call(
            ApiKey::DeleteGroups,
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]),
        );
        response.results[0].error_code
    };
    assert_eq!(delete(&mut c, "del"), NON_EMPTY_GROUP);
    assert_eq!(delete(&mut c, "nobody"), GROUP_ID_NOT_FOUND);

    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("del")))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&id)),
            MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let left: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, 4, &leave);
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![NONE, UNKNOWN_MEMBER_ID]);

    let listed: ListGroupsResponse = c.call(ApiKey::ListGroups, 4, &ListGroupsRequest::default());
    let state = listed
        .groups
        .iter()
        .find(|g| &*g.group_id == "del")
        .map(|g| g.group_state.to_string());
    assert_eq!(state.as_deref(), Some("Empty"));
    assert_eq!(delete(&mut c, "del"), NONE);
    assert_eq!(
        fetch_committed(&mut c, "del", "t").0,
        -1,
        "offsets went with the group"
    );
}

#[test]
fn find_coordinator_names_this_broker_for_single_and_batched_keys() {
    let broker = TestBroker::start();
    let mut c = broker.client();
    let port: i32 = broker.addr.rsplit(':').next().unwrap().parse().unwrap();
    let v3: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default().with_key(s("g")),
    );
    assert_eq!((v3.error_code, v3.node_id.0, v3.port), (NONE, 0, port));
    let v4: FindCoordinatorResponse = c.call(
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
    );
    let keys: Vec<(String, i32)> = v4
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.port))
        .collect();
    assert_eq!(keys, vec![("a".into(), port), ("b".into(), port)]);
}
