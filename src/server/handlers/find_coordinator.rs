//! FindCoordinator: this broker coordinates every group (and, once
//! transactions exist, every transactional id).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: FindCoordinatorRequest = req.decode()?;
    let (host, port) = &ctx.advertised;
    let host = StrBytes::from_string(host.clone());
    let port = i32::from(*port);
    let response = if req.version >= 4 {
        // KIP-699: a batch of keys, one coordinator each.
        FindCoordinatorResponse::default().with_coordinators(
            request
                .coordinator_keys
                .into_iter()
                .map(|key| {
                    Coordinator::default()
                        .with_key(key)
                        .with_node_id(BrokerId(0))
                        .with_host(host.clone())
                        .with_port(port)
                })
                .collect(),
        )
    } else {
        FindCoordinatorResponse::default()
            .with_node_id(BrokerId(0))
            .with_host(host)
            .with_port(port)
    };
    respond(req, &response)
}
