//! JoinGroup: becomes a member, waits for the rebalance to gather everyone,
//! and answers with the generation (and, to the leader, every member).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Pending};
use crate::broker::groups::{JoinOutcome, JoinRequest, Reply as GroupReply};
use crate::broker::now_ms;
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: Arc<Context>, req: Request, peer: SocketAddr) -> Pending {
    Box::pin(async move {
        let request: JoinGroupRequest = req.decode()?;
        // v0 has no rebalance timeout: it equals the session timeout.
        let rebalance_ms = if req.version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        };
        let join = JoinRequest {
            group_id: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            client_id: req
                .header
                .client_id
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
            client_host: format!("/{}", peer.ip()),
            session_timeout: Duration::from_millis(request.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(rebalance_ms.max(0) as u64),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: req.version >= 4,
        };
        let member_id = join.member_id.clone();
        let outcome = match ctx.broker.groups.join(join, Instant::now(), now_ms()) {
            GroupReply::Now(outcome) => outcome,
            GroupReply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| JoinOutcome::error(ResponseError::UnknownMemberId, &member_id)),
        };
        respond(&req, &encode(outcome, req.version))
    })
}

fn encode(o: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default()
        .with_error_code(o.error.map_or(0, |e| e.code()))
        .with_generation_id(o.generation)
        .with_leader(StrBytes::from_string(o.leader))
        .with_member_id(StrBytes::from_string(o.member_id))
        .with_members(
            o.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let m = JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_metadata(metadata);
                    if version >= 5 {
                        m.with_group_instance_id(instance.map(StrBytes::from_string))
                    } else {
                        m
                    }
                })
                .collect(),
        );
    response.protocol_name = o.protocol_name.map(StrBytes::from_string);
    if version >= 7 {
        response.protocol_type = o.protocol_type.map(StrBytes::from_string);
    }
    response
}
