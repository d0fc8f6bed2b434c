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

#[derive(Default)]
struct Queue {
    waiters: Vec<Waiter>,
    running: bool,
    /// The thread is parked on `wake`.
    parked: bool,
    /// The partition is gone: the thread exits (releasing the log's files).
    stopped: bool,
}

impl Flusher {
    pub fn new(syncer: Syncer) -> Flusher {
        Flusher {
            syncer,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
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
}

impl Flusher {
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
        let syncer = self.syncer.clone();
        std::thread::Builder::new()
            .name("strom-flush".into())
            .spawn(move || run(&shared, &syncer))?;
        q.running = true;
        q.waiters.push(waiter);
        Ok(())
    }
}

impl Drop for Flusher {
    /// Lets the thread go now instead of after `IDLE`: it holds the log's
    /// files open, and a deleted topic's space must come back at once.
    fn drop(&mut self) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.stopped = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared, syncer: &Syncer) {
    loop {
        let batch = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.waiters.is_empty() {
                if q.stopped {
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
            std::mem::take(&mut q.waiters)
        };
        let upto = batch.iter().map(|w| w.0).max().unwrap_or(0);
        let mut result = syncer.wait_durable(upto).map_err(BrokerError::from);
        for (offset, tx) in batch {
            // The first waiter gets the failure with its cause; the others
            // what the syncer says now (offline).
            let r = match result {
                Ok(()) => Ok(()),
                Err(_) => std::mem::replace(
                    &mut result,
                    syncer.wait_durable(offset).map_err(BrokerError::from),
                ),
            };
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
