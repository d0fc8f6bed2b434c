//! DeleteRecords: moves partitions' log starts up (`kafka-delete-records`);
//! the records below are no longer served and whole segments below go.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{respond, CloseReason, Reply};
use crate::protocol::Request;
use crate::server::errors::kafka_error;
use crate::server::Context;

/// Blocking: writes checkpoints and unlinks segments.
pub fn handle(ctx: &Context, req: &Request) -> Result<Reply, CloseReason> {
    let request: DeleteRecordsRequest = req.decode()?;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index);
                    match ctx.broker.delete_records(
                        topic.name.0.as_str(),
                        p.partition_index,
                        p.offset,
                    ) {
                        Ok(low_watermark) => result.with_low_watermark(low_watermark),
                        Err(e) => result
                            .with_low_watermark(-1)
                            .with_error_code(kafka_error(&e).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    respond(req, &DeleteRecordsResponse::default().with_topics(topics))
}
