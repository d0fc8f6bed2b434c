//! Group commit for the async side: one flusher thread per partition that
//! syncs for every producer waiting on it.
//!
//! ```text
//!  produce (task) ──(offset, oneshot)──► queue ──► flusher thread
//!        ▲                                           │ fdatasync up to the
//!        └──────────── result ◄──────────────────────┘ highest offset queued
//! ```
//!
//! Waiting with `spawn_blocking` per request cost a pool thread, a condvar
//! wake-up for each waiter after every fsync and a wake-up of the request
//! task on top; on two vCPUs these hand-offs took longer than the fsync.
//! Here the waiters queue up while an fsync runs and the next one starts as
//! soon as it returns, covering all of them. The thread starts on the first
//! wait and exits after `IDLE` without one, so idle partitions hold no
//! thread, or as soon as the partition is dropped.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use strom_storage::{Offset, Syncer};
use tokio::sync::oneshot;
use tracing::error;

use super::BrokerError;

/// An idle flusher thread exits after this long.
const IDLE: Duration = Duration::from_secs(2);

type Waiter = (Offset, oneshot::Sender<Result<(), BrokerError>>);

pub struct Flusher {
    syncer: Syncer,
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

struct Queue {
    waiters: Vec<Waiter>,
    running: bool,
    /// The thread is parked on `wake`.
    parked: bool,
    /// The log's group-commit handle; None once the partition is gone. The
    /// thread clones it per batch only, so an idle thread holds none of the
    /// log's files open.
    syncer: Option<Syncer>,
}

impl Flusher {
    pub fn new(syncer: Syncer) -> Flusher {
        let for_thread = Some(syncer.clone());
        Flusher {
            syncer,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    waiters: Vec::new(),
                    running: false,
                    parked: false,
                    syncer: for_thread,
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Resolves once every record below `offset` is durable.
    pub async fn wait_durable(&self, offset: Offset) -> Result<(), BrokerError> {
        if self.syncer.durable_offset() >= offset {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        if let Err(e) = self.enqueue((offset, tx)) {
            error!(cause = %e, "starting a flusher thread failed; syncing inline");
            let syncer = self.syncer.clone();
            return tokio::task::spawn_blocking(move || syncer.wait_durable(offset))
                .await
                .map_err(|e| BrokerError::Internal(format!("flush task failed: {e}")))?
                .map_err(BrokerError::from);
        }
        rx.await
            .map_err(|_| BrokerError::Internal("flusher thread stopped".into()))?
    }

    /// Queues a waiter and makes sure a thread will serve it.
    fn enqueue(&self, waiter: Waiter) -> std::io::Result<()> {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.running {
            q.waiters.push(waiter);
            if q.parked {
                self.shared.wake.notify_one();
            }
            return Ok(());
        }
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("strom-flush".into())
            .spawn(move || run(&shared))?;
        q.running = true;
        q.waiters.push(waiter);
        Ok(())
    }
}

impl Drop for Flusher {
    /// Takes the syncer from the thread and lets it go now instead of after
    /// `IDLE`: a deleted topic's files must close (and its space come back)
    /// when the partition is dropped, as before there was a thread.
    fn drop(&mut self) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.syncer = None;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared) {
    loop {
        let (batch, syncer) = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.waiters.is_empty() {
                if q.syncer.is_none() {
                    q.running = false;
                    return;
                }
                q.parked = true;
                let (guard, timeout) = shared
                    .wake
                    .wait_timeout(q, IDLE)
                    .unwrap_or_else(|p| p.into_inner());
                q = guard;
                q.parked = false;
                if timeout.timed_out() && q.waiters.is_empty() {
                    q.running = false;
                    return;
                }
            }
            // Gone with the partition: what is left are waiters whose
            // futures were dropped with it; nobody hears the answer.
            let Some(syncer) = q.syncer.clone() else {
                q.running = false;
                return;
            };
            (std::mem::take(&mut q.waiters), syncer)
        };
        let upto = batch.iter().map(|w| w.0).max().unwrap_or(0);
        let mut result = syncer.wait_durable(upto).map_err(BrokerError::from);
        // The first waiter gets a failure with its cause; the others what
        // the syncer says now (offline).
        let answers: Vec<_> = batch
            .into_iter()
            .map(|(offset, tx)| {
                let r = match result {
                    Ok(()) => Ok(()),
                    Err(_) => std::mem::replace(
                        &mut result,
                        syncer.wait_durable(offset).map_err(BrokerError::from),
                    ),
                };
                (tx, r)
            })
            .collect();
        // Released before anyone hears back, so nothing the waiters do next
        // (delete the topic) finds the files still open.
        drop(syncer);
        for (tx, r) in answers {
            let _ = tx.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use strom_storage::testing::batch_of;
    use strom_storage::{Log, LogConfig};

    use super::Flusher;

    /// Waiters for offsets appended before any fsync all resolve, each
    /// with its offset durable, through one shared fdatasync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let syncer = log.syncer();
        let ends: Vec<i64> = (0..64)
            .map(|_| log.append(&batch_of(3, 100, 0)).unwrap().log_end_offset)
            .collect();
        let flusher = Arc::new(Flusher::new(syncer.clone()));
        let before = syncer.fdatasync_count();
        let waits: Vec<_> = ends
            .into_iter()
            .map(|end| {
                let (flusher, syncer) = (flusher.clone(), syncer.clone());
                tokio::spawn(async move {
                    flusher.wait_durable(end).await.unwrap();
                    assert!(syncer.durable_offset() >= end);
                })
            })
            .collect();
        for w in waits {
            w.await.unwrap();
        }
        assert_eq!(syncer.durable_offset(), 64 * 3);
        assert_eq!(syncer.fdatasync_count() - before, 1);
        // Already durable: no wait, no fsync.
        flusher.wait_durable(10).await.unwrap();
        assert_eq!(syncer.fdatasync_count() - before, 1);
    }
}
