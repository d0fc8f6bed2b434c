//! DeleteGroups: only empty groups; their committed offsets go with them.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{respond, CloseReason, Reply};
use crate::broker::now_ms;
use crate::protocol::Request;
use crate::server::Context;

/// Blocking: writes to the offsets store.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: DeleteGroupsRequest = req.decode()?;
    let results = request
        .groups_names
        .iter()
        .map(|id| {
            let code = match ctx.broker.groups.delete_group(id, now_ms()) {
                Ok(()) => 0,
                Err(e) => e.code().code(),
            };
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(code)
        })
        .collect();
    respond(req, &DeleteGroupsResponse::default().with_results(results))
}
