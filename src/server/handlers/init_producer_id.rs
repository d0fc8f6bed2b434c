//! InitProducerId: a fresh producer id (epoch 0) for an idempotent
//! producer, or, on v3+, an epoch bump of the id it already has.
//!
//! A transactional id gets UNSUPPORTED_VERSION until transactions exist:
//! that is what a Kafka broker without transaction support answers (its
//! transactional APIs throw UnsupportedVersionException below inter-broker
//! protocol 0.11), and clients treat it as fatal instead of retrying, as
//! they would for COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tracing::{debug, info};

use super::{respond, CloseReason, Reply};
use crate::broker::InitRequest;
use crate::protocol::Request;
use crate::server::errors::kafka_error;
use crate::server::Context;

pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: InitProducerIdRequest = req.decode()?;
    let refuse = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if let Some(txn) = request.transactional_id.as_ref() {
        info!(transactional_id = %txn.0, "InitProducerId with a transactional id refused: transactions are not supported");
        return respond(req, &refuse(ResponseError::UnsupportedVersion));
    }
    let init = match (request.producer_id.0, request.producer_epoch) {
        (-1, -1) => InitRequest::New,
        (producer_id, epoch) if producer_id >= 0 && epoch >= 0 => {
            InitRequest::Bump { producer_id, epoch }
        }
        (producer_id, epoch) => {
            debug!(
                producer_id,
                epoch, "InitProducerId with a half-set producer id/epoch"
            );
            return respond(req, &refuse(ResponseError::InvalidRequest));
        }
    };
    let response = match ctx.broker.producer_ids.init(init) {
        Ok((producer_id, epoch)) => {
            debug!(producer_id, epoch, "producer id handed out");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
        }
        Err(e) => refuse(kafka_error(&e)),
    };
    respond(req, &response)
}
