//! ListGroups: every group this coordinator knows, optionally by state.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: ListGroupsRequest = req.decode()?;
    let groups = ctx
        .broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(state.name()))
        })
        .map(|(id, protocol_type, state)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(id)))
                .with_protocol_type(StrBytes::from_string(protocol_type));
            if req.version >= 4 {
                g.with_group_state(StrBytes::from_static_str(state.name()))
            } else {
                g
            }
        })
        .collect();
    respond(req, &ListGroupsResponse::default().with_groups(groups))
}
