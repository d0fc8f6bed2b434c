//! DescribeGroups: state, protocol and members with their assignments.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: DescribeGroupsRequest = req.decode()?;
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            match ctx.broker.groups.describe(id) {
                // Kafka describes an unknown group as Dead with no members.
                None => described.with_group_state(StrBytes::from_static_str("Dead")),
                Some(g) => described
                    .with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type))
                    .with_protocol_data(StrBytes::from_string(g.protocol))
                    .with_members(
                        g.members
                            .into_iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(StrBytes::from_string(m.member_id))
                                    .with_client_id(StrBytes::from_string(m.client_id))
                                    .with_client_host(StrBytes::from_string(m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if req.version >= 4 {
                                    member.with_group_instance_id(
                                        m.instance_id.map(StrBytes::from_string),
                                    )
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    respond(req, &DescribeGroupsResponse::default().with_groups(groups))
}
