//! The record accumulator: `send` appends each record to its partition's open
//! batch under one short lock; the producer task takes the batches that are
//! full, have lingered, or must go now (flush, close).
//!
//! ```text
//! send ──lock──► topic ─► partition: open batch (records encoded in place)
//!                                     └─ full ─► sealed queue ─► drain() ─► producer task
//! DeliveryFuture = Arc<Completion> of the record's batch + its index in the batch
//! ```
//!
//! A batch has one [`Completion`], set once when its Produce request is
//! answered (or it fails for good); every record's [`DeliveryFuture`] reads
//! its own offset from it (base offset + index). Nothing is allocated per
//! record: no channel message, no oneshot, no `Record` struct.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use crate::batch::{BatchBuilder, Fields};
use crate::error::{Error, Result};
use crate::partitioner::partition_for_key;
use crate::producer::{clone_error, now_ms};
use crate::record::{RecordMetadata, TopicPartition};

/// A record on its way into a batch, borrowed from the caller.
pub(crate) struct Outgoing<'a, H> {
    pub(crate) topic: &'a str,
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: H,
    pub(crate) timestamp: Option<i64>,
}

/// What [`Accumulator::try_append`] did with a record.
pub(crate) enum Appended {
    /// In a batch; here is its future.
    Queued(DeliveryFuture),
    /// `queue_capacity` records are waiting to be sent: wait for [`Accumulator::space`].
    Full,
    /// The topic's partitions are not known (or the explicit partition is
    /// beyond them): look the topic up, [`Accumulator::set_partitions`], retry.
    NeedMetadata,
    /// The record cannot be sent (closed producer, record too large).
    Failed(Error),
}

/// Accumulator settings (from `ProducerConfig`).
pub(crate) struct Limits {
    pub(crate) batch_size: usize,
    pub(crate) linger: Duration,
    pub(crate) queue_capacity: usize,
}

pub(crate) struct Accumulator {
    inner: Mutex<Inner>,
    limits: Limits,
    /// Records appended but not yet handed to a Produce request.
    unsent: AtomicUsize,
    /// Wakes the producer task: a batch was opened or filled, a flush or close began.
    pub(crate) wake_task: Notify,
    /// Wakes `send`s waiting for room under `queue_capacity`.
    pub(crate) space: Notify,
}

/// FxHash (rustc's): topic names are chosen by the application, so a keyed
/// hash buys nothing here, and SipHash showed up in per-record profiles.
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

#[derive(Default)]
struct Inner {
    topics: Vec<TopicAcc>,
    by_name: HashMap<String, usize, FxBuild>,
    /// The topic of the last append: most producers send to one topic.
    last: usize,
    rr: u32,
    closed: bool,
    flush_waiters: Vec<oneshot::Sender<()>>,
    /// Buffers of acknowledged batches, for new ones: a fresh 1 MB buffer
    /// per batch cost more in page faults than encoding its records.
    pool: Vec<BytesMut>,
}

/// Buffers kept for reuse (each up to `batch_size` and a record).
const POOL_BUFFERS: usize = 8;

struct TopicAcc {
    name: String,
    parts: Vec<PartAcc>,
    /// Keyless records go to this partition until its batch fills.
    sticky: Option<i32>,
}

#[derive(Default)]
struct PartAcc {
    open: Option<Batch>,
    full: VecDeque<Batch>,
    /// Size of the last batch sealed here: the next one is allocated this
    /// big, so a partition's buffers stop growing (and copying) after one batch.
    last_len: usize,
}

/// A batch of one partition, from its first record until its last attempt.
pub(crate) struct Batch {
    /// The records, encoded in place, until the first send seals them.
    pub(crate) builder: Option<BatchBuilder>,
    /// Set at the first send; retries resend the same bytes (same sequences).
    pub(crate) encoded: Option<Bytes>,
    pub(crate) records: i32,
    pub(crate) done: Completer,
    pub(crate) created: Instant,
    pub(crate) attempts: u32,
    pub(crate) base_seq: i32,
    /// Creation order within the partition, given by the producer task;
    /// retries go back in this order.
    pub(crate) id: u64,
}

impl Batch {
    fn new(builder: BatchBuilder) -> Batch {
        Batch {
            builder: Some(builder),
            encoded: None,
            records: 0,
            done: Completer(Arc::new(Completion::default())),
            created: Instant::now(),
            attempts: 0,
            base_seq: -1,
            id: 0,
        }
    }

    fn builder(&mut self) -> &mut BatchBuilder {
        self.builder
            .as_mut()
            .expect("an open batch has its builder")
    }

    fn len(&self) -> usize {
        self.builder.as_ref().map_or(0, |b| b.len())
    }
}

/// What the producer task took from the accumulator.
pub(crate) struct Drained {
    /// Batches to send, each partition's in order.
    pub(crate) batches: Vec<(TopicPartition, Batch)>,
    /// When the earliest open batch that stayed behind lingers out.
    pub(crate) next_linger: Option<Instant>,
}

impl Accumulator {
    pub(crate) fn new(limits: Limits) -> Accumulator {
        Accumulator {
            inner: Mutex::new(Inner::default()),
            limits,
            unsent: AtomicUsize::new(0),
            wake_task: Notify::new(),
            space: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("accumulator lock")
    }

    /// Appends `rec` to its partition's open batch, sealing the batch when full.
    pub(crate) fn try_append<'a, H>(&self, rec: &Outgoing<'a, H>) -> Appended
    where
        H: Iterator<Item = (&'a str, Option<&'a [u8]>)> + Clone,
    {
        let batch_size = self.limits.batch_size;
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.closed {
            return Appended::Failed(Error::Closed);
        }
        if self.unsent.load(Ordering::Acquire) >= self.limits.queue_capacity {
            return Appended::Full;
        }
        let Some(ti) = inner.find(rec.topic) else {
            return Appended::NeedMetadata;
        };
        let topic = &mut inner.topics[ti];
        let n = topic.parts.len() as i32;
        let partition = match (rec.partition, rec.key) {
            (Some(p), _) if (0..n).contains(&p) => p,
            (Some(p), _) if p < 0 => return Appended::Failed(no_partition(rec.topic, p, n)),
            (Some(_), _) => return Appended::NeedMetadata,
            (None, Some(key)) => partition_for_key(key, n),
            (None, None) => match topic.sticky {
                Some(p) => p,
                None => {
                    inner.rr = inner.rr.wrapping_add(1);
                    let p = (inner.rr % n as u32) as i32;
                    topic.sticky = Some(p);
                    p
                }
            },
        };
        let fields = Fields {
            key: rec.key,
            value: rec.value,
            headers: rec.headers.clone(),
            timestamp: rec.timestamp.unwrap_or_else(now_ms),
        };
        let part = &mut topic.parts[partition as usize];
        let mut wake = false;
        let mut sealed = false;
        if let Some(open) = &mut part.open {
            let len = match open.builder().record_len(&fields) {
                Ok(len) => len,
                Err(e) => return Appended::Failed(e),
            };
            if open.len() + len > batch_size {
                part.seal();
                (wake, sealed) = (true, true);
            }
        }
        let pool = &mut inner.pool;
        let open = part.open.get_or_insert_with(|| {
            wake = true;
            let want = part.last_len.max(4096).min(batch_size.saturating_add(1024));
            match pool.pop() {
                Some(buf) if buf.capacity() >= want => Batch::new(BatchBuilder::with_buffer(buf)),
                _ => Batch::new(BatchBuilder::with_capacity(want)),
            }
        });
        let before = open.len();
        if let Err(e) = open.builder().append(fields) {
            return Appended::Failed(e);
        }
        open.records += 1;
        let record_len = open.len() - before;
        let future = DeliveryFuture::in_batch(&open.done.0, open.records - 1, partition);
        // Sealed as soon as a record like this one would not fit, so a full
        // batch does not wait for the next send (or the linger) to go.
        if open.len() + record_len > batch_size {
            part.seal();
            (wake, sealed) = (true, true);
        }
        if sealed && rec.partition.is_none() && rec.key.is_none() && topic.sticky == Some(partition)
        {
            topic.sticky = None;
        }
        inner.last = ti;
        self.unsent.fetch_add(1, Ordering::AcqRel);
        drop(g);
        if wake {
            self.wake_task.notify_one();
        }
        Appended::Queued(future)
    }

    /// Records that a topic has `partitions` partitions (it never shrinks).
    pub(crate) fn set_partitions(&self, topic: &str, partitions: usize) {
        let mut g = self.lock();
        let i = match g.find(topic) {
            Some(i) => i,
            None => {
                let i = g.topics.len();
                g.topics.push(TopicAcc {
                    name: topic.to_string(),
                    parts: Vec::new(),
                    sticky: None,
                });
                g.by_name.insert(topic.to_string(), i);
                i
            }
        };
        let parts = &mut g.topics[i].parts;
        if parts.len() < partitions {
            parts.resize_with(partitions, PartAcc::default);
        }
    }

    /// The topics whose partition counts are known.
    pub(crate) fn topic_names(&self) -> Vec<String> {
        let g = self.lock();
        g.topics
            .iter()
            .filter(|t| !t.parts.is_empty())
            .map(|t| t.name.clone())
            .collect()
    }

    /// The partition count known for `topic`.
    pub(crate) fn partitions(&self, topic: &str) -> Option<usize> {
        let mut g = self.lock();
        let i = g.find(topic)?;
        Some(g.topics[i].parts.len())
    }

    /// Takes the batches to send: every full one, and open ones that have
    /// lingered (or all, when `draining`) if `sendable` says their partition
    /// could send now. Open batches of partitions that cannot send stay open
    /// and keep filling.
    pub(crate) fn drain(
        &self,
        now: Instant,
        draining: bool,
        mut sendable: impl FnMut(&str, i32) -> bool,
    ) -> Drained {
        let linger = self.limits.linger;
        let mut g = self.lock();
        let mut out = Drained {
            batches: Vec::new(),
            next_linger: None,
        };
        for topic in &mut g.topics {
            for (p, part) in topic.parts.iter_mut().enumerate() {
                let p = p as i32;
                let Some(open) = &part.open else {
                    for b in part.full.drain(..) {
                        out.batches.push((TopicPartition::new(&topic.name, p), b));
                    }
                    continue;
                };
                let due = open.created + linger;
                if draining || (due <= now && part.full.is_empty() && sendable(&topic.name, p)) {
                    part.seal();
                } else if part.full.is_empty() && sendable(&topic.name, p) {
                    out.next_linger = Some(out.next_linger.map_or(due, |t| t.min(due)));
                }
                for b in part.full.drain(..) {
                    out.batches.push((TopicPartition::new(&topic.name, p), b));
                }
            }
        }
        out
    }

    /// `records` left the accumulator's count (their batch was sent).
    pub(crate) fn sent(&self, records: usize) {
        self.unsent.fetch_sub(records, Ordering::AcqRel);
        self.space.notify_waiters();
    }

    /// Keeps a finished batch's buffer for a later batch, if it is ours alone.
    pub(crate) fn recycle(&self, batch: Bytes) {
        let Ok(buf) = batch.try_into_mut() else {
            return;
        };
        let mut g = self.lock();
        if g.pool.len() < POOL_BUFFERS {
            g.pool.push(buf);
        }
    }

    /// Records not yet handed to a Produce request.
    pub(crate) fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    /// Registers a flush: the task sends everything and answers when idle.
    pub(crate) fn add_flush(&self, waiter: oneshot::Sender<()>) -> Result<()> {
        let mut g = self.lock();
        if g.closed && g.flush_waiters.is_empty() && self.unsent() == 0 {
            // Nothing left to wait for, and perhaps no task to answer.
            let _ = waiter.send(());
            return Ok(());
        }
        g.flush_waiters.push(waiter);
        drop(g);
        self.wake_task.notify_one();
        Ok(())
    }

    /// Whether everything must go now (a flush is waiting, or closing).
    pub(crate) fn draining(&self) -> bool {
        let g = self.lock();
        g.closed || !g.flush_waiters.is_empty()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Answers the waiting flushes (the task is idle).
    pub(crate) fn finish_flushes(&self) {
        let waiters = std::mem::take(&mut self.lock().flush_waiters);
        for w in waiters {
            let _ = w.send(());
        }
    }

    /// Refuses further sends; the task drains what is queued and stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_task.notify_one();
        self.space.notify_waiters();
    }
}

impl Inner {
    fn find(&mut self, topic: &str) -> Option<usize> {
        if self.topics.get(self.last).is_some_and(|t| t.name == topic) {
            return Some(self.last);
        }
        let i = *self.by_name.get(topic)?;
        // A topic registered by set_partitions with no partitions yet is unknown.
        (!self.topics[i].parts.is_empty()).then_some(i)
    }
}

impl PartAcc {
    /// Moves the open batch (if any) to the full queue.
    fn seal(&mut self) {
        if let Some(b) = self.open.take() {
            self.last_len = b.len();
            self.full.push_back(b);
        }
    }
}

fn no_partition(topic: &str, p: i32, n: i32) -> Error {
    Error::kafka(
        3,
        format!("partition {p} of topic {topic} ({n} partitions)"),
        None,
    )
}

/// The unknown-partition error for an explicit partition beyond the topic's.
pub(crate) fn unknown_partition(topic: &str, p: i32, n: usize) -> Error {
    no_partition(topic, p, n as i32)
}

/// The outcome of one batch, shared by the delivery futures of its records.
#[derive(Default)]
pub(crate) struct Completion {
    state: Mutex<State>,
}

enum State {
    /// Wakers of the futures that polled before the answer.
    Pending(Vec<Waker>),
    /// The batch's base offset (-1 with acks=0), or why it failed.
    Done(Result<i64>),
}

impl Default for State {
    fn default() -> Self {
        State::Pending(Vec::new())
    }
}

impl Completion {
    fn complete(&self, result: Result<i64>) {
        let mut st = self.state.lock().expect("completion lock");
        if let State::Pending(wakers) = std::mem::replace(&mut *st, State::Done(result)) {
            drop(st);
            for w in wakers {
                w.wake();
            }
        }
    }
}

/// A batch's handle on its [`Completion`]. Dropping a batch that was never
/// completed (the producer task stopped) fails its records with [`Error::Closed`].
pub(crate) struct Completer(Arc<Completion>);

impl Completer {
    /// Resolves every record of the batch: Ok(base offset) or the error.
    pub(crate) fn complete(&self, result: Result<i64>) {
        self.0.complete(result);
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        let pending = matches!(
            *self.0.state.lock().expect("completion lock"),
            State::Pending(_)
        );
        if pending {
            self.0.complete(Err(Error::Closed));
        }
    }
}

/// The future of one sent record: where it landed, once the broker
/// acknowledged its batch. Cheap: a shared pointer to the batch's outcome and
/// the record's index in the batch.
pub struct DeliveryFuture(Delivery);

enum Delivery {
    /// Failed before it reached a batch.
    Failed(Option<Error>),
    InBatch {
        batch: Arc<Completion>,
        index: i32,
        partition: i32,
        /// This future's slot among the batch's wakers, once it has waited.
        slot: Option<usize>,
    },
}

impl DeliveryFuture {
    pub(crate) fn in_batch(batch: &Arc<Completion>, index: i32, partition: i32) -> DeliveryFuture {
        DeliveryFuture(Delivery::InBatch {
            batch: batch.clone(),
            index,
            partition,
            slot: None,
        })
    }

    pub(crate) fn failed(e: Error) -> DeliveryFuture {
        DeliveryFuture(Delivery::Failed(Some(e)))
    }

    /// Whether `other`'s record went into the same batch as this one's, so
    /// both are acknowledged (or fail) together. Lets a caller that tracks
    /// many records wait on one future per batch.
    pub fn same_batch(&self, other: &DeliveryFuture) -> bool {
        match (&self.0, &other.0) {
            (Delivery::InBatch { batch: a, .. }, Delivery::InBatch { batch: b, .. }) => {
                Arc::ptr_eq(a, b)
            }
            _ => false,
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Delivery::Failed(e) => Poll::Ready(Err(e.take().unwrap_or(Error::Closed))),
            Delivery::InBatch {
                batch,
                index,
                partition,
                slot,
            } => {
                let mut st = batch.state.lock().expect("completion lock");
                match &mut *st {
                    State::Done(Ok(base)) => Poll::Ready(Ok(RecordMetadata {
                        partition: *partition,
                        offset: if *base < 0 { -1 } else { *base + *index as i64 },
                    })),
                    State::Done(Err(e)) => Poll::Ready(Err(clone_error(e))),
                    State::Pending(wakers) => {
                        match *slot {
                            Some(i) if wakers[i].will_wake(cx.waker()) => {}
                            Some(i) => wakers[i] = cx.waker().clone(),
                            None => {
                                *slot = Some(wakers.len());
                                wakers.push(cx.waker().clone());
                            }
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn acc(batch_size: usize) -> Accumulator {
        let acc = Accumulator::new(Limits {
            batch_size,
            linger: Duration::from_millis(5),
            queue_capacity: 1000,
        });
        acc.set_partitions("t", 2);
        acc
    }

    fn send(acc: &Accumulator, partition: i32, value: &[u8]) -> DeliveryFuture {
        match acc.try_append(&Outgoing {
            topic: "t",
            partition: Some(partition),
            key: None,
            value: Some(value),
            headers: std::iter::empty(),
            timestamp: Some(1),
        }) {
            Appended::Queued(f) => f,
            _ => panic!("not queued"),
        }
    }

    fn drain_all(acc: &Accumulator) -> Vec<(TopicPartition, Batch)> {
        acc.drain(Instant::now(), true, |_, _| true).batches
    }

    #[test]
    fn records_resolve_to_base_offset_plus_index_from_one_shared_completion() {
        let acc = acc(1 << 20);
        let futures: Vec<_> = (0..5).map(|_| send(&acc, 1, b"v")).collect();
        assert!(futures.windows(2).all(|w| w[0].same_batch(&w[1])));
        assert!(
            futures[0].is_done().is_none(),
            "pending until the batch completes"
        );
        let mut batches = drain_all(&acc);
        assert_eq!(batches.len(), 1);
        let (tp, batch) = batches.pop().unwrap();
        assert_eq!((tp.partition, batch.records), (1, 5));
        assert_eq!(acc.unsent(), 5);
        batch.done.complete(Ok(100));
        for (i, f) in futures.into_iter().enumerate() {
            let m = f.now_or_never().expect("ready").expect("delivered");
            assert_eq!((m.partition, m.offset), (1, 100 + i as i64), "record {i}");
        }
    }

    #[test]
    fn a_failed_batch_fails_each_of_its_records() {
        let acc = acc(1 << 20);
        let futures: Vec<_> = (0..3).map(|_| send(&acc, 0, b"v")).collect();
        let (_, batch) = drain_all(&acc).pop().unwrap();
        batch
            .done
            .complete(Err(Error::kafka(10, "produce to t-0", None)));
        for (i, f) in futures.into_iter().enumerate() {
            let e = f.now_or_never().expect("ready").unwrap_err();
            assert_eq!(e.code(), Some(10), "record {i}: {e}");
        }
    }

    #[test]
    fn dropping_an_uncompleted_batch_fails_its_records_as_closed() {
        let acc = acc(1 << 20);
        let f = send(&acc, 0, b"v");
        drop(drain_all(&acc));
        assert!(matches!(f.now_or_never(), Some(Err(Error::Closed))));
    }

    #[test]
    fn a_batch_is_sealed_when_the_next_like_record_would_not_fit() {
        let acc = acc(1000);
        let first = send(&acc, 0, &[0; 400]);
        let second = send(&acc, 0, &[0; 400]);
        // 61 + 2 x 409 bytes: a third would pass 1000, so the batch is full now.
        let third = send(&acc, 0, &[0; 400]);
        assert!(first.same_batch(&second));
        assert!(!second.same_batch(&third));
        let full = acc.drain(Instant::now(), false, |_, _| true);
        assert_eq!(
            full.batches.len(),
            1,
            "only the full batch goes before linger"
        );
        assert_eq!(full.batches[0].1.records, 2);
        let lingering = acc.drain(Instant::now(), false, |_, _| true);
        assert!(lingering.batches.is_empty());
        assert!(lingering.next_linger.is_some(), "the open one lingers");
        let rest = drain_all(&acc);
        assert_eq!(rest[0].1.records, 1);
    }

    #[test]
    fn keyless_records_stick_to_a_partition_until_its_batch_fills() {
        let acc = acc(1000);
        let send_keyless = || match acc.try_append(&Outgoing {
            topic: "t",
            partition: None,
            key: None,
            value: Some(&[0u8; 400][..]),
            headers: std::iter::empty(),
            timestamp: None,
        }) {
            Appended::Queued(f) => f,
            _ => panic!("not queued"),
        };
        let parts: Vec<i32> = (0..6)
            .map(|_| match send_keyless().0 {
                Delivery::InBatch { partition, .. } => partition,
                Delivery::Failed(_) => panic!("failed"),
            })
            .collect();
        assert_eq!(parts[0], parts[1]);
        assert_ne!(parts[1], parts[2], "moved on after a full batch: {parts:?}");
        assert_eq!(parts[2], parts[3]);
    }

    #[test]
    fn unknown_topics_and_partitions_ask_for_metadata_and_full_queues_push_back() {
        let acc = Accumulator::new(Limits {
            batch_size: 1 << 20,
            linger: Duration::ZERO,
            queue_capacity: 2,
        });
        let out = |topic, partition| Outgoing {
            topic,
            partition,
            key: None,
            value: None,
            headers: std::iter::empty(),
            timestamp: None,
        };
        assert!(matches!(
            acc.try_append(&out("t", None)),
            Appended::NeedMetadata
        ));
        acc.set_partitions("t", 1);
        assert!(matches!(
            acc.try_append(&out("t", Some(1))),
            Appended::NeedMetadata
        ));
        assert!(matches!(
            acc.try_append(&out("t", Some(-1))),
            Appended::Failed(e) if e.code() == Some(3)
        ));
        for _ in 0..2 {
            assert!(matches!(
                acc.try_append(&out("t", Some(0))),
                Appended::Queued(_)
            ));
        }
        assert!(matches!(acc.try_append(&out("t", Some(0))), Appended::Full));
        let drained = drain_all(&acc);
        acc.sent(drained[0].1.records as usize);
        assert!(matches!(
            acc.try_append(&out("t", Some(0))),
            Appended::Queued(_)
        ));
        acc.close();
        assert!(matches!(
            acc.try_append(&out("t", Some(0))),
            Appended::Failed(Error::Closed)
        ));
    }

    impl DeliveryFuture {
        /// `Some` once the outcome is known.
        fn is_done(&self) -> Option<()> {
            match &self.0 {
                Delivery::InBatch { batch, .. } => match *batch.state.lock().unwrap() {
                    State::Done(_) => Some(()),
                    State::Pending(_) => None,
                },
                Delivery::Failed(_) => Some(()),
            }
        }
    }
}
