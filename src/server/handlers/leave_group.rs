//! LeaveGroup: one member (v0-2) or a batch of them (v3+) leave; the rest
//! rebalance.

use std::time::Instant;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::broker::now_ms;
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: LeaveGroupRequest = req.decode()?;
    let leaving: Vec<(String, Option<String>)> = if req.version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let response =
        match ctx
            .broker
            .groups
            .leave(&request.group_id, &leaving, Instant::now(), now_ms())
        {
            Err(e) => LeaveGroupResponse::default().with_error_code(e.code()),
            Ok(results) if req.version >= 3 => LeaveGroupResponse::default().with_members(
                leaving
                    .into_iter()
                    .zip(results)
                    .map(|((member_id, instance_id), error)| {
                        MemberResponse::default()
                            .with_member_id(StrBytes::from_string(member_id))
                            .with_group_instance_id(instance_id.map(StrBytes::from_string))
                            .with_error_code(error.map_or(0, |e| e.code()))
                    })
                    .collect(),
            ),
            Ok(results) => LeaveGroupResponse::default()
                .with_error_code(results.first().copied().flatten().map_or(0, |e| e.code())),
        };
    respond(req, &response)
}
