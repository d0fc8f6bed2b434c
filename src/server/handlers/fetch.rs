//! Fetch: whole batches from each partition's log, long-polling until
//! `min_bytes` are available or `max_wait_ms` passes.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use strom_storage::batch::BatchIter;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{respond_spliced, Pending};
use crate::broker::BrokerError;
use crate::protocol::Request;
use crate::server::errors::kafka_error;
use crate::server::Context;

pub fn handle(ctx: Arc<Context>, req: Request) -> Pending {
    Box::pin(async move {
        let request: FetchRequest = req.decode()?;
        let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
        let deadline = Instant::now() + max_wait;
        let min_bytes = request.min_bytes.max(0) as usize;
        // Subscribe before the first read so an append between the read and
        // the wait still wakes us.
        let mut watches: Vec<watch::Receiver<i64>> = request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter_map(|(t, p)| ctx.broker.partition(&t.topic.0, p.partition).ok())
            .map(|p| p.watch_end())
            .collect();
        loop {
            let (responses, bytes, any_error) = read_all(&ctx, &request, req.version);
            let now = Instant::now();
            if bytes >= min_bytes || any_error || now >= deadline || watches.is_empty() {
                count_out(&ctx, &responses);
                // The records go to the socket from the segment maps as they
                // are: only the fields around them are encoded and copied.
                let records: Vec<bytes::Bytes> = responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().filter_map(|p| p.records.clone()))
                    .collect();
                let response = FetchResponse::default().with_responses(responses);
                return respond_spliced(&req, &response, &records);
            }
            let changed =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            // A closed watch (topic deleted) also ends the wait; the next
            // read reports the error.
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    })
}

/// Counts the bytes and records a response hands out, per topic.
fn count_out(ctx: &Context, responses: &[FetchableTopicResponse]) {
    for topic in responses {
        let (mut bytes, mut records) = (0u64, 0u64);
        for p in &topic.partitions {
            if let Some(data) = &p.records {
                bytes += data.len() as u64;
                records += BatchIter::new(data, false)
                    .map(|b| b.header.record_count().max(0) as u64)
                    .sum::<u64>();
            }
        }
        if bytes > 0 {
            let labels = ctx.metrics.topic(&topic.topic.0);
            ctx.metrics.bytes_out.get_or_create(&labels).inc_by(bytes);
            ctx.metrics
                .records_out
                .get_or_create(&labels)
                .inc_by(records);
        }
    }
}

/// Reads every requested partition once: (responses, record bytes, whether
/// any partition had an error).
fn read_all(
    ctx: &Context,
    request: &FetchRequest,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut remaining = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0usize;
    let mut any_error = false;
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut data = PartitionData::default().with_partition_index(p.partition);
                    let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                    match read_partition(
                        ctx,
                        &topic.topic.0,
                        p.partition,
                        p.fetch_offset,
                        limit,
                        total == 0,
                    ) {
                        Ok((records, start, end)) => {
                            total += records.len();
                            remaining = remaining.saturating_sub(records.len());
                            data.high_watermark = end;
                            data.last_stable_offset = end;
                            if version >= 5 {
                                data.log_start_offset = start;
                            }
                            data.records = Some(records);
                        }
                        Err(e) => {
                            any_error = true;
                            data.error_code = kafka_error(&e).code();
                            data.high_watermark = -1;
                            if let BrokerError::Storage(
                                strom_storage::StorageError::OffsetOutOfRange {
                                    log_start,
                                    log_end,
                                    ..
                                },
                            ) = e
                            {
                                data.high_watermark = log_end;
                                data.last_stable_offset = log_end;
                                if version >= 5 {
                                    data.log_start_offset = log_start;
                                }
                            }
                        }
                    }
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    (responses, total, any_error)
}

/// One partition's batches. The first non-empty partition of a response may
/// exceed `limit` by one batch (so a batch larger than max_bytes is still
/// delivered); later ones may not.
fn read_partition(
    ctx: &Context,
    topic: &str,
    index: i32,
    offset: i64,
    limit: usize,
    first: bool,
) -> Result<(bytes::Bytes, i64, i64), BrokerError> {
    let partition = ctx.broker.partition(topic, index)?;
    if limit == 0 && !first {
        let (start, end) = partition.offsets()?;
        return Ok((bytes::Bytes::new(), start, end));
    }
    let data = partition.read(offset, limit.max(1))?;
    let records = if data.records.len() > limit && !first {
        bytes::Bytes::new()
    } else {
        data.records
    };
    Ok((records, data.log_start_offset, data.log_end_offset))
}
