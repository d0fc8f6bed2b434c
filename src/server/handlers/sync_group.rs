//! SyncGroup: the leader hands in the assignment; every member gets its own
//! part, unchanged.

use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Pending};
use crate::broker::groups::{Reply as GroupReply, SyncOutcome, SyncRequest};
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: Arc<Context>, req: Request) -> Pending {
    Box::pin(async move {
        let request: SyncGroupRequest = req.decode()?;
        let sync = SyncRequest {
            group_id: request.group_id.0.to_string(),
            generation: request.generation_id,
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
            protocol_type: request.protocol_type.as_ref().map(|s| s.to_string()),
            protocol_name: request.protocol_name.as_ref().map(|s| s.to_string()),
            assignments: request
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        let outcome = match ctx.broker.groups.sync(sync, Instant::now()) {
            GroupReply::Now(outcome) => outcome,
            GroupReply::Later(rx) => rx.await.unwrap_or_else(|_| SyncOutcome {
                error: Some(ResponseError::RebalanceInProgress),
                ..SyncOutcome::default()
            }),
        };
        let mut response = SyncGroupResponse::default()
            .with_error_code(outcome.error.map_or(0, |e| e.code()))
            .with_assignment(outcome.assignment);
        if req.version >= 5 {
            response.protocol_type = outcome.protocol_type.map(StrBytes::from_string);
            response.protocol_name = outcome.protocol_name.map(StrBytes::from_string);
        }
        respond(&req, &response)
    })
}
