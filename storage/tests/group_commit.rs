//! Many threads append under a lock and wait for durability without it:
//! every waiter returns, and they share fdatasyncs.

use std::sync::{Arc, Mutex};
use std::thread;

use strom_storage::testing::batch_of;
use strom_storage::{Log, LogConfig};

#[test]
fn concurrent_waiters_share_fdatasyncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(
        Log::open(dir.path(), LogConfig::default()).unwrap(),
    ));
    let syncer = log.lock().unwrap().syncer();
    let (threads, rounds) = (16, 20);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let log = Arc::clone(&log);
            let syncer = syncer.clone();
            thread::spawn(move || {
                let b = batch_of(10, 100, 0);
                for _ in 0..rounds {
                    let end = log.lock().unwrap().append(&b).unwrap().log_end_offset;
                    syncer.wait_durable(end).unwrap();
                    assert!(syncer.durable_offset() >= end);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let waiters = (threads * rounds) as u64;
    let syncs = syncer.fdatasync_count();
    assert!(syncs < waiters, "{syncs} fdatasyncs for {waiters} waiters");
    assert_eq!(
        syncer.durable_offset(),
        log.lock().unwrap().log_end_offset()
    );
    println!("{syncs} fdatasyncs for {waiters} waiters");
}

#[test]
fn a_flush_after_a_roll_syncs_the_sealed_segment_too() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), cfg).unwrap();
    let syncer = log.syncer();
    let b = batch_of(10, 100, 0);
    while log.segment_count() < 2 {
        log.append(&b).unwrap();
    }
    let before = syncer.fdatasync_count();
    syncer.wait_durable(log.log_end_offset()).unwrap();
    assert_eq!(
        syncer.fdatasync_count() - before,
        2,
        "sealed segment, then active"
    );
    syncer.wait_durable(log.log_end_offset()).unwrap();
    assert_eq!(syncer.fdatasync_count() - before, 2, "nothing new to sync");
    log.append(&b).unwrap();
    log.flush().unwrap();
    assert_eq!(
        syncer.fdatasync_count() - before,
        3,
        "only the active segment now"
    );
}
