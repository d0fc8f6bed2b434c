//! A write that fails for lack of space (simulated with RLIMIT_FSIZE, which
//! fails writes past the limit with EFBIG) is a clear error, leaves no
//! partial batch visible, and appends work again once space is back.
//! Its own test binary: the limit is per process.

use strom_storage::testing::batch_of;
use strom_storage::{Log, LogConfig, StorageError};

#[test]
fn a_failed_write_is_an_error_leaves_nothing_visible_and_later_appends_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_max_bytes: 4096,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), cfg.clone()).unwrap();
    let b = batch_of(10, 1000, 0);
    for _ in 0..3 {
        log.append(&b).unwrap();
    }
    let size = log.size_bytes();
    let end = log.log_end_offset();
    #[allow(unsafe_code)]
    // SAFETY: plain libc calls; SIGXFSZ is ignored so the failing write
    // returns EFBIG instead of killing the process.
    let old = unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let mut old: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut old), 0);
        let lim = libc::rlimit {
            rlim_cur: size + b.len() as u64 / 2,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
        old
    };
    let err = log.append(&b).unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.size_bytes(), size);
    assert!(
        !log.is_offline(),
        "a rolled-back write does not take the log offline"
    );
    let log_file = dir.path().join(format!("{:020}.log", 0));
    assert_eq!(
        std::fs::metadata(&log_file).unwrap().len(),
        size,
        "partial bytes cut off"
    );
    #[allow(unsafe_code)]
    // SAFETY: restores the limit read above.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &old), 0);
    }
    let info = log.append(&b).unwrap();
    assert_eq!(info.base_offset, end);
    log.flush().unwrap();
    drop(log);
    let log = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_end_offset(), end + 10);
}
