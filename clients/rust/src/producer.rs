//! The producer: partitions records, batches them per partition, compresses and
//! sends the batches, retries what may succeed, and resolves each record's future.
//!
//! ```text
//! send() ──lock──► Accumulator (per partition: open batch, records encoded in place)
//!                     │ full / lingered / flushing batches
//!                     ▼
//!               producer task ──(per partition: VecDeque<Batch>)──► Produce requests
//!                     ▲                                              │ grouped by leader
//!                     └──── completions (base offset / error) ◄── spawned request tasks
//! ```
//!
//! `send` does the per-record work itself (see `accumulator.rs`); the task
//! only moves whole batches. Up to `max_in_flight` batches of a partition are
//! in flight at once. Their requests are queued on the leader's connection by
//! this one task, in batch order, and a connection is answered in order, so
//! the broker appends them in order. A batch that fails retriably goes back
//! into the queue in its place (batches are numbered); with idempotence, the
//! later batches the broker then refuses as out of sequence are retried behind
//! it. Without idempotence a retry can reorder a partition, as in Kafka's
//! producer.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use crate::accumulator::DeliveryFuture;
use crate::accumulator::{
    unknown_partition, Accumulator, Appended, Batch, FxBuild, Limits, Outgoing,
};
use crate::batch::ProducerIds;
use crate::cluster::{ClientConfig, Cluster};
use crate::conn::PendingCall;
use crate::error::{Error, Result};
use crate::record::{Compression, ProducerRecord, RecordMetadata, RecordRef, TopicPartition};

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

/// `0`, `1`, or `all` (also `-1`), as Kafka's `acks` setting is written.
impl std::str::FromStr for Acks {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(Error::Config(format!(
                "acks: expected 0, 1 or all, found {s:?}"
            ))),
        }
    }
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
    /// Records accepted by `send` but not yet handed to a Produce request;
    /// `send` waits while this many are.
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

/// An async producer. Cheap to share behind an `Arc`; `send` may be called
/// from many tasks.
pub struct Producer {
    acc: Arc<Accumulator>,
    cluster: Arc<Cluster>,
    queue_capacity: usize,
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
        let acc = Arc::new(Accumulator::new(Limits {
            batch_size: config.batch_size,
            linger: config.linger,
            queue_capacity: config.queue_capacity,
        }));
        let queue_capacity = config.queue_capacity;
        let next_refresh = config.client.metadata_due();
        let task = ProducerTask {
            cluster: cluster.clone(),
            config,
            producer_id,
            acc: acc.clone(),
            answers: FuturesUnordered::new(),
            parts: HashMap::default(),
            in_flight: 0,
            next_refresh,
        };
        Ok(Producer {
            acc,
            cluster,
            queue_capacity,
            task: std::sync::Mutex::new(Some(tokio::spawn(task.run()))),
            producer_id,
        })
    }

    /// Queues `record` and returns the future of its delivery. Waits only when
    /// `queue_capacity` records are already waiting to be sent.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        self.append(Outgoing {
            topic: &record.topic,
            partition: record.partition,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref())),
            timestamp: record.timestamp,
        })
        .await
    }

    /// Like [`send`](Self::send), for a record whose bytes the caller keeps:
    /// they are copied into the partition's batch, and nothing is allocated
    /// per record. Waits only when `queue_capacity` records are already
    /// waiting to be sent (or the topic's metadata is not known yet).
    pub async fn send_ref(&self, record: RecordRef<'_>) -> Result<DeliveryFuture> {
        self.append(Outgoing {
            topic: record.topic,
            partition: record.partition,
            key: record.key,
            value: record.value,
            headers: record.headers.iter().copied(),
            timestamp: record.timestamp,
        })
        .await
    }

    async fn append<'a, H>(&self, rec: Outgoing<'a, H>) -> Result<DeliveryFuture>
    where
        H: Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let mut looked_up = false;
        loop {
            match self.acc.try_append(&rec) {
                Appended::Queued(f) => return Ok(f),
                Appended::Failed(Error::Closed) => return Err(Error::Closed),
                Appended::Failed(e) => return Ok(DeliveryFuture::failed(e)),
                Appended::Full => {
                    let room = self.acc.space.notified();
                    tokio::pin!(room);
                    room.as_mut().enable();
                    if self.acc.unsent() >= self.queue_capacity && !self.acc.is_closed() {
                        room.await;
                    }
                }
                Appended::NeedMetadata if looked_up => {
                    let n = self.acc.partitions(rec.topic).unwrap_or(0);
                    let p = rec.partition.unwrap_or(-1);
                    return Ok(DeliveryFuture::failed(unknown_partition(rec.topic, p, n)));
                }
                Appended::NeedMetadata => {
                    looked_up = true;
                    // A known topic needs metadata only for a partition past
                    // its known count: it may have grown (CreatePartitions),
                    // so the cached metadata is not good enough.
                    let lookup = if self.acc.partitions(rec.topic).is_some() {
                        self.cluster.refresh_topic(rec.topic, true).await
                    } else {
                        self.cluster.topic(rec.topic, true).await
                    };
                    match lookup {
                        Ok(t) => self.acc.set_partitions(rec.topic, t.partitions.len()),
                        Err(e) => return Ok(DeliveryFuture::failed(e)),
                    }
                }
            }
        }
    }

    /// Sends one record and waits for its acknowledgement.
    pub async fn send_and_wait(&self, record: ProducerRecord) -> Result<RecordMetadata> {
        self.send(record).await?.await
    }

    /// Sends every queued record now and waits until all are acknowledged or failed.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.acc.add_flush(tx)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// The idempotent producer id and epoch, if idempotence is on.
    pub fn producer_id(&self) -> Option<(i64, i16)> {
        self.producer_id
    }

    /// Flushes, then stops the background task. Later sends fail with [`Error::Closed`].
    pub async fn close(self) -> Result<()> {
        let flushed = self.flush().await;
        self.acc.close();
        let handle = self.task.lock().expect("task lock").take();
        if let Some(h) = handle {
            h.await
                .map_err(|e| Error::Protocol(format!("producer task: {e}")))?;
        }
        flushed
    }
}

impl Drop for Producer {
    /// The task sends what is queued, then stops.
    fn drop(&mut self) {
        self.acc.close();
    }
}

/// The producer task's side of a partition: batches taken from the
/// accumulator, in order, and what is in flight.
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

    fn backing_off(&self, now: Instant) -> bool {
        self.backoff_until.is_some_and(|t| t > now)
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
    acc: Arc<Accumulator>,
    /// Requests waiting for their answers, polled by this task itself: a
    /// task per request cost two wake-ups per answer (its own, then this
    /// task's through a channel).
    answers: FuturesUnordered<BoxFuture<'static, Vec<Done>>>,
    /// Topic -> partition index -> state.
    parts: HashMap<String, Vec<PartState>, FxBuild>,
    in_flight: usize,
    /// When the known topics' partition counts are read again.
    next_refresh: Instant,
}

impl ProducerTask {
    async fn run(mut self) {
        loop {
            let now = Instant::now();
            let draining = self.acc.draining();
            let drained = {
                let max = self.config.max_in_flight;
                let (parts, in_flight) = (&self.parts, self.in_flight);
                self.acc.drain(now, draining, |topic, p| {
                    in_flight < max
                        && parts
                            .get(topic)
                            .and_then(|ps| ps.get(p as usize))
                            .is_none_or(|s| {
                                s.queue.is_empty() && s.in_flight < max && !s.backing_off(now)
                            })
                })
            };
            for (tp, mut batch) in drained.batches {
                let part = self.part_mut(&tp);
                part.next_id += 1;
                batch.id = part.next_id;
                part.queue.push_back(batch);
            }
            self.dispatch().await;
            if self.idle() {
                self.acc.finish_flushes();
                if self.acc.is_closed() && self.acc.unsent() == 0 {
                    debug!("producer task done");
                    return;
                }
            }
            if now >= self.next_refresh {
                self.next_refresh = self.config.client.metadata_due();
                self.refresh_partition_counts();
            }
            let wake = [drained.next_linger, self.next_backoff()]
                .into_iter()
                .flatten()
                .fold(self.next_refresh, Instant::min);
            tokio::select! {
                _ = self.acc.wake_task.notified() => {}
                Some(done) = self.answers.next(), if !self.answers.is_empty() => self.complete(done),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Re-reads the partition counts of the topics produced to, in the
    /// background, so keys and sticky batches spread over partitions added
    /// since (CreatePartitions), as Kafka's producers do every
    /// `metadata.max.age.ms`. Counts only grow.
    fn refresh_partition_counts(&self) {
        let topics = self.acc.topic_names();
        if topics.is_empty() {
            return;
        }
        let (cluster, acc) = (self.cluster.clone(), self.acc.clone());
        tokio::spawn(async move {
            match cluster.partition_counts(&topics).await {
                Ok(counts) => {
                    for (topic, n) in counts {
                        acc.set_partitions(&topic, n.max(0) as usize);
                    }
                }
                Err(e) => debug!(cause = %e, "partition count refresh failed"),
            }
        });
    }

    fn part_mut(&mut self, tp: &TopicPartition) -> &mut PartState {
        if !self.parts.contains_key(&tp.topic) {
            self.parts.insert(tp.topic.clone(), Vec::new());
        }
        let ps = self.parts.get_mut(&tp.topic).expect("just inserted");
        let i = tp.partition as usize;
        if ps.len() <= i {
            ps.resize_with(i + 1, PartState::default);
        }
        &mut ps[i]
    }

    fn idle(&self) -> bool {
        self.in_flight == 0
            && self.acc.unsent() == 0
            && self
                .parts
                .values()
                .all(|ps| ps.iter().all(|p| p.queue.is_empty()))
    }

    /// When the earliest backoff of a partition with batches to send ends.
    /// Everything else that can go has been sent; completions and the
    /// accumulator wake the task for the rest.
    fn next_backoff(&self) -> Option<Instant> {
        if self.in_flight >= self.config.max_in_flight {
            return None;
        }
        self.parts
            .values()
            .flatten()
            .filter(|p| !p.queue.is_empty() && p.in_flight < self.config.max_in_flight)
            .filter_map(|p| p.backoff_until)
            .min()
    }

    /// Sends what is ready, in rounds of at most one batch per partition (a
    /// Produce request carries one batch per partition), until nothing is
    /// ready or `max_in_flight` requests are out.
    async fn dispatch(&mut self) {
        while self.dispatch_round().await {}
    }

    /// One round; whether anything was sent.
    async fn dispatch_round(&mut self) -> bool {
        if self.in_flight >= self.config.max_in_flight {
            return false;
        }
        let now = Instant::now();
        let max = self.config.max_in_flight;
        let mut ready: Vec<TopicPartition> = Vec::new();
        for (topic, ps) in &self.parts {
            for (p, s) in ps.iter().enumerate() {
                if !s.queue.is_empty() && s.in_flight < max && !s.backing_off(now) {
                    ready.push(TopicPartition::new(topic, p as i32));
                }
            }
        }
        if ready.is_empty() {
            return false;
        }
        ready.sort();
        let mut by_leader: HashMap<i32, Vec<(TopicPartition, Batch)>> = HashMap::new();
        for tp in ready {
            let leader = match self.cluster.topic(&tp.topic, true).await {
                Ok(t) => {
                    self.acc.set_partitions(&tp.topic, t.partitions.len());
                    t.partitions
                        .get(tp.partition as usize)
                        .map_or(-1, |p| p.leader)
                }
                Err(e) => {
                    debug!(topic = %tp.topic, cause = %e, "no metadata for ready batch");
                    -1
                }
            };
            let producer_id = self.producer_id;
            let backoff = self.config.client.retry_backoff;
            let part = self.part_mut(&tp);
            if leader < 0 {
                part.backoff_until = Some(now + backoff);
                self.cluster.invalidate(&tp.topic);
                continue;
            }
            let mut batch = part.queue.pop_front().expect("ready batch");
            part.in_flight += 1;
            part.backoff_until = None;
            if batch.encoded.is_none() {
                if producer_id.is_some() {
                    batch.base_seq = part.next_seq;
                    part.next_seq = part.next_seq.wrapping_add(batch.records);
                }
                self.acc.sent(batch.records as usize);
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
                    self.answers
                        .push(Box::pin(async move { ctx.finish(call).await }));
                }
            }
        }
        sent
    }

    fn complete(&mut self, done: Vec<Done>) {
        self.in_flight -= 1;
        let (retries, backoff) = (self.config.retries, self.config.client.retry_backoff);
        let idempotent = self.producer_id.is_some();
        for Done {
            tp,
            mut batch,
            result,
        } in done
        {
            let part = self.part_mut(&tp);
            part.in_flight -= 1;
            // OUT_OF_ORDER_SEQUENCE_NUMBER behind an earlier batch that is
            // being retried: this one follows it.
            let behind_retry = |e: &Error| {
                e.code() == Some(45) && part.queue.front().is_some_and(|b| b.id < batch.id)
            };
            match result {
                Ok(base) => {
                    batch.done.complete(Ok(base));
                    if let Some(bytes) = batch.encoded.take() {
                        self.acc.recycle(bytes);
                    }
                }
                Err(e) if (e.is_retriable() || behind_retry(&e)) && batch.attempts < retries => {
                    batch.attempts += 1;
                    warn!(partition = %tp, attempt = batch.attempts, cause = %e, "produce failed; retrying");
                    part.backoff_until = Some(Instant::now() + backoff * batch.attempts);
                    part.requeue(batch);
                    if e.needs_metadata_refresh() {
                        self.cluster.invalidate(&tp.topic);
                    }
                }
                Err(e) => {
                    warn!(partition = %tp, cause = %e, records = batch.records, "produce failed");
                    if idempotent && e.code().is_some() {
                        // The broker refused the batch, so its sequences are free again.
                        // Later batches in flight fail as out of sequence in turn.
                        if batch.base_seq >= 0 && batch.base_seq < part.next_seq {
                            part.next_seq = batch.base_seq;
                        }
                    }
                    batch.done.complete(Err(e));
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
        let builder = batch.builder.take().ok_or_else(|| {
            Error::Protocol("record batch lost its records after a failed encode".into())
        })?;
        let ids = match self.producer_id {
            Some((producer_id, epoch)) => ProducerIds {
                producer_id,
                epoch,
                base_sequence: batch.base_seq,
            },
            None => ProducerIds::NONE,
        };
        builder.seal(ids, self.compression)
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

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn acks_parse_as_kafka_writes_them() {
        for (s, acks) in [
            ("0", Acks::None),
            ("1", Acks::Leader),
            ("all", Acks::All),
            ("-1", Acks::All),
        ] {
            assert_eq!(s.parse::<Acks>().unwrap(), acks, "{s}");
        }
        let e = "2".parse::<Acks>().unwrap_err().to_string();
        assert!(e.contains("expected 0, 1 or all, found \"2\""), "{e}");
    }
}
