//! Heartbeat: keeps a member alive and tells it when to rejoin.

use std::time::Instant;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: HeartbeatRequest = req.decode()?;
    let error = ctx.broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
        Instant::now(),
    );
    respond(
        req,
        &HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code())),
    )
}
