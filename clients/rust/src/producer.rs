//! The producer: partitions records, batches them per partition, compresses and
//! sends the batches, retries what may succeed, and resolves each record's future.
//!
//! ```text
//! send() ──mpsc──► producer task ──(per partition: VecDeque<Batch>)──► ready batches
//!                     ▲                                                   │ grouped by leader
//!                     └──── completions (offsets / errors) ◄── spawned request tasks
//! ```
//!
//! Up to `max_in_flight` batches of a partition are in flight at once. Their
//! requests are queued on the leader's connection by this one task, in batch
//! order, and a connection is answered in order, so the broker appends them in
//! order. A batch that fails retriably goes back into the queue in its place
//! (batches are numbered); with idempotence, the later batches the broker then
//! refuses as out of sequence are retried behind it. Without idempotence a
//! retry can reorder a partition, as in Kafka's producer.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cluster::{ClientConfig, Cluster};
use crate::conn::PendingCall;
use crate::error::{Error, Result};
use crate::partitioner::partition_for_key;
use crate::record::{Compression, ProducerRecord, RecordMetadata, TopicPartition};

/// How many acknowledgements a produce waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// acks=0: no answer; offsets are reported as -1.
    None,
    /// acks=1: the leader appended the batch.
    Leader,
    /// acks=all (-1): the batch is durable per the broker's flush mode.
    #[default]
    All,
}

impl Acks {
    fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Acknowledgements to wait for.
    pub acks: Acks,
    /// Batch compression.
    pub compression: Compression,
    /// A partition's batch is sent once it holds this many bytes (before compression).
    pub batch_size: usize,
    /// ... or once its first record has waited this long.
    pub linger: Duration,
    /// Produce requests in flight at once, across all brokers (and so also
    /// per partition).
    pub max_in_flight: usize,
    /// Times a batch is retried after a retriable error.
    pub retries: u32,
    /// Records accepted by `send` but not yet batched; `send` waits when full.
    pub queue_capacity: usize,
    /// Idempotent delivery (producer id + sequences). Needs `acks = All`; it is
    /// turned off with a warning otherwise, or when the broker lacks InitProducerId.
    pub idempotence: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            compression: Compression::None,
            batch_size: 16 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight: 5,
            retries: 10,
            queue_capacity: 100_000,
            idempotence: true,
        }
    }
}

impl ProducerConfig {
    /// Defaults with a comma-separated bootstrap list.
    pub fn new(bootstrap: &str) -> ProducerConfig {
        ProducerConfig {
            client: ClientConfig::new(bootstrap),
            ..Default::default()
        }
    }
}

type Reply = oneshot::Sender<Result<RecordMetadata>>;

enum Cmd {
    Send(ProducerRecord, Reply),
    Flush(oneshot::Sender<()>),
}

/// The future of one sent record: where it landed, once the broker acknowledged it.
pub struct DeliveryFuture(oneshot::Receiver<Result<RecordMetadata>>);

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// An async producer. Cheap to share behind an `Arc`; `send` may be called
/// from many tasks.
pub struct Producer {
    tx: mpsc::Sender<Cmd>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    producer_id: Option<(i64, i16)>,
}

impl Producer {
    /// Connects to the cluster and starts the producer's background task.
    pub async fn new(config: ProducerConfig) -> Result<Producer> {
        if config.batch_size == 0 || config.max_in_flight == 0 || config.queue_capacity == 0 {
            return Err(Error::Config(
                "batch_size, max_in_flight and queue_capacity must be at least 1".into(),
            ));
        }
        let cluster = Cluster::new(config.client.clone())?;
        let conn = cluster.any_conn().await?;
        let mut producer_id = None;
        if config.idempotence && config.acks != Acks::All {
            info!("idempotence needs acks=all; producing without it");
        } else if config.idempotence && !conn.supports(ApiKey::InitProducerId) {
            warn!(broker = %conn.addr, "broker does not support InitProducerId (api key 22); producing without idempotence");
        } else if config.idempotence {
            let req = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let resp = conn.call(&req).await?;
            Error::check(resp.error_code, || "InitProducerId".to_string())?;
            debug!(
                producer_id = resp.producer_id.0,
                epoch = resp.producer_epoch,
                "idempotent producer"
            );
            producer_id = Some((resp.producer_id.0, resp.producer_epoch));
        }
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let task = ProducerTask {
            cluster,
            config,
            producer_id,
            rx,
            done_tx,
            done_rx,
            parts: HashMap::new(),
            sticky: HashMap::new(),
            in_flight: 0,
            flush_waiters: Vec::new(),
            closing: false,
            rr: 0,
        };
        Ok(Producer {
            tx,
            task: std::sync::Mutex::new(Some(tokio::spawn(task.run()))),
            producer_id,
        })
    }

    /// Queues `record` and returns the future of its delivery. Waits only when
    /// `queue_capacity` records are already queued.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Send(record, tx))
            .await
            .map_err(|_| Error::Closed)?;
        Ok(DeliveryFuture(rx))
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    /// Sends every queued record now and waits until all are acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Flush(tx))
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The idempotent producer id and epoch, if idempotence is on.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.producer_id
    }

    /// Flushes, then stops the background task. Later sends fail with [`Error::Closed`].
    pub async fn close(self) -> Result<()> {
        let flushed = self.flush().await;
        let handle = self.task.lock().expect("task lock").take();
        drop(self.tx);
        if let Some(h) = handle {
            h.await
                .map_err(|e| Error::Protocol(format!("producer task: {e}")))?;
        }
        flushed
    }
}

struct Batch {
    records: Vec<Record>,
    replies: Vec<Reply>,
    bytes: usize,
    created: Instant,
    /// Set at the first send; retries resend the same bytes (same sequences).
    encoded: Option<Bytes>,
    attempts: u32,
    base_seq: i32,
    /// Creation order within the partition; retries go back in this order.
    id: u64,
}

#[derive(Default)]
struct PartState {
    queue: VecDeque<Batch>,
    in_flight: usize,
    next_seq: i32,
    next_id: u64,
    backoff_until: Option<Instant>,
}

impl PartState {
    /// Puts a batch that will be retried back in creation order.
    fn requeue(&mut self, batch: Batch) {
        let at = self
            .queue
            .iter()
            .position(|b| b.id > batch.id)
            .unwrap_or(self.queue.len());
        self.queue.insert(at, batch);
    }
}

struct Done {
    tp: TopicPartition,
    batch: Batch,
    result: Result<i64>,
}

struct ProducerTask {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    producer_id: Option<(i64, i16)>,
    rx: mpsc::Receiver<Cmd>,
    done_tx: mpsc::UnboundedSender<Vec<Done>>,
    done_rx: mpsc::UnboundedReceiver<Vec<Done>>,
    parts: HashMap<TopicPartition, PartState>,
    /// Keyless records go to one partition per topic until its batch fills.
    sticky: HashMap<String, i32>,
    in_flight: usize,
    flush_waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
    rr: u32,
}

impl ProducerTask {
    async fn run(mut self) {
        loop {
            let wake = self.next_wakeup();
            tokio::select! {
                cmd = self.rx.recv(), if !self.closing => match cmd {
                    Some(Cmd::Send(rec, reply)) => self.append(rec, reply).await,
                    Some(Cmd::Flush(w)) => self.flush_waiters.push(w),
                    None => self.closing = true,
                },
                Some(done) = self.done_rx.recv() => self.complete(done),
                _ = sleep_until(wake) => {}
            }
            self.dispatch().await;
            if self.idle() {
                for w in self.flush_waiters.drain(..) {
                    let _ = w.send(());
                }
                if self.closing {
                    debug!("producer task done");
                    return;
                }
            }
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.parts.values().all(|p| p.queue.is_empty())
    }

    fn draining(&self) -> bool {
        self.closing || !self.flush_waiters.is_empty()
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        for p in self.parts.values() {
            if p.in_flight >= self.config.max_in_flight {
                continue;
            }
            let Some(first) = p.queue.front() else {
                continue;
            };
            let t = p
                .backoff_until
                .unwrap_or(first.created + self.config.linger);
            wake = Some(wake.map_or(t, |w| w.min(t)));
        }
        wake
    }

    async fn append(&mut self, rec: ProducerRecord, reply: Reply) {
        let topic = match self.cluster.topic(&rec.topic, true).await {
            Ok(t) => t,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let n = topic.partitions.len() as i32;
        let partition = match (rec.partition, &rec.key) {
            (Some(p), _) if (0..n).contains(&p) => p,
            (Some(p), _) => {
                let _ = reply.send(Err(Error::kafka(
                    3,
                    format!("partition {p} of topic {} ({n} partitions)", rec.topic),
                    None,
                )));
                return;
            }
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => match self.sticky.get(&rec.topic) {
                Some(&p) if p < n => p,
                _ => {
                    self.rr = self.rr.wrapping_add(1);
                    let p = (self.rr % n as u32) as i32;
                    self.sticky.insert(rec.topic.clone(), p);
                    p
                }
            },
        };
        let size = rec.key.as_ref().map_or(0, |k| k.len())
            + rec.value.as_ref().map_or(0, |v| v.len())
            + rec
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
                .sum::<usize>()
            + 16;
        let timestamp = rec.timestamp.unwrap_or_else(now_ms);
        let mut headers = IndexMap::new();
        for (k, v) in rec.headers {
            headers.insert(StrBytes::from_string(k), v);
        }
        let tp = TopicPartition::new(rec.topic, partition);
        let batch_size = self.config.batch_size;
        let part = self.parts.entry(tp.clone()).or_default();
        let open = part
            .queue
            .back()
            .is_some_and(|b| b.encoded.is_none() && b.bytes + size <= batch_size);
        if !open {
            part.next_id += 1;
            // Sized for a full batch of records like this one: growing the
            // vectors record by record showed up as malloc + memmove in profiles.
            let expect = (batch_size / size).clamp(1, 4096);
            part.queue.push_back(Batch {
                id: part.next_id,
                records: Vec::with_capacity(expect),
                replies: Vec::with_capacity(expect),
                bytes: 0,
                created: Instant::now(),
                encoded: None,
                attempts: 0,
                base_seq: -1,
            });
        }
        let batch = part.queue.back_mut().expect("a batch");
        let offset = batch.records.len() as i64;
        batch.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp,
            key: rec.key,
            value: rec.value,
            headers,
        });
        batch.replies.push(reply);
        batch.bytes += size;
        if batch.bytes + size > batch_size && rec.partition.is_none() {
            // The sticky partition's batch is (about) full: move keyless records on.
            if self.sticky.get(&tp.topic) == Some(&tp.partition) {
                self.sticky.remove(&tp.topic);
            }
        }
    }

    fn ready(&self, p: &PartState, now: Instant) -> bool {
        if p.in_flight >= self.config.max_in_flight || p.backoff_until.is_some_and(|t| t > now) {
            return false;
        }
        let Some(first) = p.queue.front() else {
            return false;
        };
        self.draining()
            || p.queue.len() > 1
            || first.encoded.is_some()
            || first.bytes >= self.config.batch_size
            || first.created + self.config.linger <= now
    }

    /// Sends what is ready, in rounds of at most one batch per partition (a
    /// Produce request carries one batch per partition), until nothing is
    /// ready or `max_in_flight` requests are out.
    async fn dispatch(&mut self) {
        while self.dispatch_round().await {}
    }

    /// One round; whether anything was sent.
    async fn dispatch_round(&mut self) -> bool {
        let now = Instant::now();
        let mut ready: Vec<TopicPartition> = self
            .parts
            .iter()
            .filter(|(_, p)| self.ready(p, now))
            .map(|(tp, _)| tp.clone())
            .collect();
        if ready.is_empty() || self.in_flight >= self.config.max_in_flight {
            return false;
        }
        ready.sort();
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, Batch)>> = HashMap::new();
        for tp in ready {
            let leader = match self.cluster.topic(&tp.topic, true).await {
                Ok(t) => t
                    .partitions
                    .get(tp.partition as usize)
                    .map_or(-1, |p| p.leader),
                Err(e) => {
                    debug!(topic = %tp.topic, cause = %e, "no metadata for ready batch");
                    -1
                }
            };
            if leader < 0 {
                let part = self.parts.get_mut(&tp).expect("partition state");
                part.backoff_until = Some(now + self.config.client.retry_backoff);
                self.cluster.invalidate(&tp.topic);
                continue;
            }
            let part = self.parts.get_mut(&tp).expect("partition state");
            let mut batch = part.queue.pop_front().expect("ready batch");
            part.in_flight += 1;
            part.backoff_until = None;
            if batch.encoded.is_none() && self.producer_id.is_some() {
                batch.base_seq = part.next_seq;
                part.next_seq = part.next_seq.wrapping_add(batch.records.len() as i32);
            }
            by_leader.entry(leader).or_default().push((tp, batch));
        }
        let sent = !by_leader.is_empty();
        for (leader, batches) in by_leader {
            self.in_flight += 1;
            let ctx = SendCtx {
                cluster: self.cluster.clone(),
                acks: self.config.acks,
                compression: self.config.compression,
                producer_id: self.producer_id,
                timeout: self.config.client.request_timeout,
            };
            // Queued on the connection here, in order; answered in a task.
            match ctx.start(leader, batches).await {
                Started::Done(done) => self.complete(done),
                Started::Waiting(call) => {
                    let done_tx = self.done_tx.clone();
                    tokio::spawn(async move {
                        let done = ctx.finish(call).await;
                        let _ = done_tx.send(done);
                    });
                }
            }
        }
        sent
    }

    fn complete(&mut self, done: Vec<Done>) {
        self.in_flight -= 1;
        for Done {
            tp,
            mut batch,
            result,
        } in done
        {
            let part = self.parts.get_mut(&tp).expect("partition state");
            part.in_flight -= 1;
            // OUT_OF_ORDER_SEQUENCE_NUMBER behind an earlier batch that is
            // being retried: this one follows it.
            let behind_retry = |e: &Error| {
                e.code() == Some(45) && part.queue.front().is_some_and(|b| b.id < batch.id)
            };
            match result {
                Ok(base) => {
                    for (i, reply) in batch.replies.drain(..).enumerate() {
                        let offset = if base < 0 { -1 } else { base + i as i64 };
                        let _ = reply.send(Ok(RecordMetadata {
                            partition: tp.partition,
                            offset,
                        }));
                    }
                }
                Err(e)
                    if (e.is_retriable() || behind_retry(&e))
                        && batch.attempts < self.config.retries =>
                {
                    batch.attempts += 1;
                    warn!(partition = %tp, attempt = batch.attempts, cause = %e, "produce failed; retrying");
                    if e.needs_metadata_refresh() {
                        self.cluster.invalidate(&tp.topic);
                    }
                    part.backoff_until =
                        Some(Instant::now() + self.config.client.retry_backoff * batch.attempts);
                    part.requeue(batch);
                }
                Err(e) => {
                    warn!(partition = %tp, cause = %e, records = batch.replies.len(), "produce failed");
                    if self.producer_id.is_some() && e.code().is_some() {
                        // The broker refused the batch, so its sequences are free again.
                        // Later batches in flight fail as out of sequence in turn.
                        if batch.base_seq >= 0 && batch.base_seq < part.next_seq {
                            part.next_seq = batch.base_seq;
                        }
                    }
                    for reply in batch.replies.drain(..) {
                        let _ = reply.send(Err(clone_error(&e)));
                    }
                }
            }
        }
    }
}

/// A partition's answer in a ProduceResponse: error code, base offset, message.
type PartitionOutcome = (i16, i64, Option<String>);

/// A Produce request on its way: its batches and, unless it failed before
/// being queued (or needs no answer), the answer to wait for.
struct InFlight {
    batches: Vec<(TopicPartition, Batch)>,
    encode_err: Vec<(usize, Error)>,
    answer: Option<PendingCall<ProduceRequest>>,
}

enum Started {
    /// Results are known already (acks=0, or the request could not be queued).
    Done(Vec<Done>),
    Waiting(InFlight),
}

struct SendCtx {
    cluster: Arc<Cluster>,
    acks: Acks,
    compression: Compression,
    producer_id: Option<(i64, i16)>,
    timeout: Duration,
}

impl SendCtx {
    /// Encodes `batches` into one Produce request and queues it on the
    /// leader's connection; the answer is for [`finish`](Self::finish).
    async fn start(&self, leader: i32, mut batches: Vec<(TopicPartition, Batch)>) -> Started {
        let mut topics: Vec<TopicProduceData> = Vec::new();
        let mut encode_err = Vec::new();
        for (i, (tp, batch)) in batches.iter_mut().enumerate() {
            if batch.encoded.is_none() {
                match self.encode(batch) {
                    Ok(b) => batch.encoded = Some(b),
                    Err(e) => {
                        encode_err.push((i, e));
                        continue;
                    }
                }
            }
            let data = PartitionProduceData::default()
                .with_index(tp.partition)
                .with_records(batch.encoded.clone());
            match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
                Some(t) => t.partition_data.push(data),
                None => topics.push(
                    TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_string(tp.topic.clone())))
                        .with_partition_data(vec![data]),
                ),
            }
        }
        let req = ProduceRequest::default()
            .with_acks(self.acks.wire())
            .with_timeout_ms(self.timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topic_data(topics);
        let queued: Result<Option<PendingCall<ProduceRequest>>> = async {
            let conn = self.cluster.conn_for_node(leader).await?;
            if self.acks == Acks::None {
                conn.send_only(&req).await?;
                return Ok(None);
            }
            Ok(Some(conn.enqueue(&req, self.timeout).await?))
        }
        .await;
        let call = InFlight {
            batches,
            encode_err,
            answer: None,
        };
        match queued {
            Ok(Some(pending)) => Started::Waiting(InFlight {
                answer: Some(pending),
                ..call
            }),
            Ok(None) => Started::Done(self.results(call, Ok(HashMap::new()))),
            Err(e) => Started::Done(self.results(call, Err(e))),
        }
    }

    /// Waits for a queued request's answer; one result per batch.
    async fn finish(&self, mut call: InFlight) -> Vec<Done> {
        let Some(pending) = call.answer.take() else {
            return self.results(call, Ok(HashMap::new()));
        };
        let outcome = pending.wait().await.map(|resp| {
            let mut out = HashMap::new();
            for t in resp.responses {
                for p in t.partition_responses {
                    out.insert(
                        (t.name.0.to_string(), p.index),
                        (
                            p.error_code,
                            p.base_offset,
                            p.error_message.map(|m| m.to_string()),
                        ),
                    );
                }
            }
            out
        });
        self.results(call, outcome)
    }

    fn results(
        &self,
        call: InFlight,
        outcome: Result<HashMap<(String, i32), PartitionOutcome>>,
    ) -> Vec<Done> {
        let mut encode_err: HashMap<usize, Error> = call.encode_err.into_iter().collect();
        call.batches
            .into_iter()
            .enumerate()
            .map(|(i, (tp, batch))| {
                let result = if let Some(e) = encode_err.remove(&i) {
                    Err(e)
                } else {
                    match &outcome {
                        Err(e) => Err(clone_error(e)),
                        Ok(_) if self.acks == Acks::None => Ok(-1),
                        Ok(map) => match map.get(&(tp.topic.clone(), tp.partition)) {
                            Some((0, base, _)) => Ok(*base),
                            Some((code, _, msg)) => {
                                Err(Error::kafka(*code, format!("produce to {tp}"), msg.clone()))
                            }
                            None => Err(Error::Protocol(format!(
                                "produce response has no result for {tp}"
                            ))),
                        },
                    }
                };
                Done { tp, batch, result }
            })
            .collect()
    }

    fn encode(&self, batch: &mut Batch) -> Result<Bytes> {
        let (pid, epoch) = self.producer_id.unwrap_or((-1, -1));
        for r in batch.records.iter_mut() {
            r.producer_id = pid;
            r.producer_epoch = epoch;
            // The encoder derives the base sequence as (first sequence - first offset)
            // and keeps records together only while offset - sequence is constant.
            r.sequence = if pid >= 0 {
                batch.base_seq.wrapping_add(r.offset as i32)
            } else {
                (r.offset as i32).wrapping_sub(1)
            };
        }
        let mut buf = BytesMut::with_capacity(batch.bytes + 128);
        RecordBatchEncoder::encode_with_custom_compression(
            &mut buf,
            batch.records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: self.compression.to_protocol(),
            },
            crate::compression::compressor(self.compression),
        )
        .map_err(|e| Error::Protocol(format!("encode record batch: {e}")))?;
        Ok(buf.freeze())
    }
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A copy of `e` for each waiter of a failed batch (`std::io::Error` is not `Clone`).
pub(crate) fn clone_error(e: &Error) -> Error {
    match e {
        Error::Kafka {
            code,
            name,
            context,
            message,
        } => Error::Kafka {
            code: *code,
            name: name.clone(),
            context: context.clone(),
            message: message.clone(),
        },
        Error::Io { addr, source } => Error::Io {
            addr: addr.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        Error::Disconnected(a) => Error::Disconnected(a.clone()),
        Error::Timeout(w, d) => Error::Timeout(w.clone(), *d),
        Error::UnsupportedVersion {
            addr,
            api_key,
            ours,
        } => Error::UnsupportedVersion {
            addr: addr.clone(),
            api_key: *api_key,
            ours: ours.clone(),
        },
        Error::Protocol(m) => Error::Protocol(m.clone()),
        Error::NoBrokers(a) => Error::NoBrokers(a.clone()),
        Error::Config(m) => Error::Config(m.clone()),
        Error::Closed => Error::Closed,
    }
}
