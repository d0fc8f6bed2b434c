//! Corruption on purpose, then reopen without the clean-shutdown marker:
//! every batch before the damage reads back, nothing after it is served,
//! the log end is right and the indexes are rebuilt.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use common::{batch, check_all, stored, tiny_config};
use strom_storage::{Log, LogConfig, Offset};

fn config() -> LogConfig {
    tiny_config(700, 120)
}

/// A log of 30 batches over several segments, dropped without `close`.
fn build(dir: &Path) -> Vec<(Offset, Vec<u8>)> {
    let mut log = Log::open(dir, config()).unwrap();
    let mut out = Vec::new();
    for i in 0..30u64 {
        let b = batch(
            i,
            1 + (i as usize % 3),
            10 + (i as usize * 7) % 50,
            i as i64 * 10,
        );
        let info = log.append(&b).unwrap();
        out.push((info.base_offset, stored(&b, info.base_offset)));
    }
    assert!(log.segment_count() >= 3, "the test wants sealed segments");
    log.flush().unwrap();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

fn base_of(p: &Path) -> Offset {
    p.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Reopens `dir`, checks it holds exactly `expected`, and that the next
/// append gets the next offset.
fn reopen_and_check(dir: &Path, expected: &[(Offset, Vec<u8>)], case: &str) {
    let mut log = Log::open(dir, config()).unwrap_or_else(|e| panic!("{case}: open: {e}"));
    check_all(&log, expected);
    let end = log.log_end_offset();
    let info = log.append(&batch(777, 1, 5, 0)).unwrap();
    assert_eq!(info.base_offset, end, "{case}: next append");
    for ext in ["index", "timeindex"] {
        assert_eq!(
            segment_files(dir, ext).len(),
            log.segment_count(),
            "{case}: {ext} files"
        );
    }
}

#[test]
fn recovers_after_torn_tail_write_at_every_byte_of_the_last_batch() {
    let pristine = tempfile::tempdir().unwrap();
    let expected = build(pristine.path());
    let active = segment_files(pristine.path(), "log").pop().unwrap();
    let len = fs::metadata(&active).unwrap().len();
    let last = expected.last().unwrap().1.len() as u64;
    for cut in len - last..len {
        let work = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), work.path());
        let log_file = work.path().join(active.file_name().unwrap());
        OpenOptions::new()
            .write(true)
            .open(&log_file)
            .unwrap()
            .set_len(cut)
            .unwrap();
        reopen_and_check(
            work.path(),
            &expected[..expected.len() - 1],
            &format!("cut at {cut}"),
        );
        assert!(fs::metadata(&log_file).unwrap().len() >= len - last);
    }
}

#[test]
fn recovers_after_a_flipped_byte_in_a_crc_covered_region() {
    let pristine = tempfile::tempdir().unwrap();
    let expected = build(pristine.path());
    let active = segment_files(pristine.path(), "log").pop().unwrap();
    let active_base = base_of(&active);
    let in_active: Vec<usize> = (0..expected.len())
        .filter(|&i| expected[i].0 >= active_base)
        .collect();
    let mut position = 0usize;
    for &k in &in_active {
        let size = expected[k].1.len();
        for at in [21, 30, 60, size / 2, size - 1] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(pristine.path(), work.path());
            let path = work.path().join(active.file_name().unwrap());
            let mut bytes = fs::read(&path).unwrap();
            bytes[position + at] ^= 0x40;
            fs::write(&path, &bytes).unwrap();
            reopen_and_check(work.path(), &expected[..k], &format!("batch {k} byte {at}"));
        }
        position += size;
    }
}

#[test]
fn recovers_after_garbage_is_appended_to_the_active_segment() {
    let garbage: [&[u8]; 4] = [
        &[0u8; 100],
        &[0xab; 7],
        &[0xff; 200],
        b"not a batch at all, just text",
    ];
    for g in garbage {
        let dir = tempfile::tempdir().unwrap();
        let expected = build(dir.path());
        let active = segment_files(dir.path(), "log").pop().unwrap();
        let before = fs::metadata(&active).unwrap().len();
        OpenOptions::new()
            .append(true)
            .open(&active)
            .unwrap()
            .write_all(g)
            .unwrap();
        reopen_and_check(dir.path(), &expected, &format!("{} garbage bytes", g.len()));
        assert!(
            fs::metadata(&active).unwrap().len() > before,
            "the append after recovery"
        );
    }
}

#[test]
fn rebuilds_a_deleted_or_damaged_index_file() {
    for (victim, damage) in [
        ("index", "delete"),
        ("timeindex", "delete"),
        ("index", "scribble"),
        ("timeindex", "scribble"),
    ] {
        for clean in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let expected = build(dir.path());
            if clean {
                Log::open(dir.path(), config()).unwrap().close().unwrap();
            }
            // The first (sealed) segment: below the recovery point, so only
            // the consistency check can catch it.
            let path = segment_files(dir.path(), victim).remove(0);
            if damage == "delete" {
                fs::remove_file(&path).unwrap();
            } else {
                let mut b = fs::read(&path).unwrap();
                assert!(!b.is_empty(), "sealed {victim} has entries");
                // The last entry: where a torn write would land.
                let n = b.len();
                for x in b[n - 8..].iter_mut() {
                    *x = 0xee;
                }
                fs::write(&path, &b).unwrap();
            }
            let case = format!("{damage} {victim} clean={clean}");
            {
                let log = Log::open(dir.path(), config()).unwrap();
                check_all(&log, &expected);
                for target in [0i64, 55, 150, 290, 1000] {
                    let want = expected.iter().find_map(|(b, bytes)| {
                        let ts = i64::from_be_bytes(bytes[35..43].try_into().unwrap());
                        (ts >= target).then_some((*b, ts))
                    });
                    assert_eq!(
                        log.offset_for_timestamp(target).unwrap(),
                        want,
                        "{case}: ts {target}"
                    );
                }
            }
            assert!(path.exists(), "{case}: index rebuilt");
            reopen_and_check(dir.path(), &expected, &case);
        }
    }
}

#[test]
fn without_a_checkpoint_damage_in_a_sealed_segment_drops_it_and_every_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let expected = build(dir.path());
    fs::remove_file(dir.path().join("strom.checkpoint")).unwrap();
    let first = segment_files(dir.path(), "log").remove(0);
    let mut bytes = fs::read(&first).unwrap();
    let k = 1; // the second batch of the first segment
    let at = expected[0].1.len() + 40;
    bytes[at] ^= 1;
    fs::write(&first, &bytes).unwrap();
    reopen_and_check(dir.path(), &expected[..k], "flip in sealed segment 0");
    assert_eq!(segment_files(dir.path(), "log").len(), 1);
}

#[test]
fn a_clean_shutdown_skips_the_scan_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let expected = build(dir.path());
    Log::open(dir.path(), config()).unwrap().close().unwrap();
    assert!(dir.path().join(".clean_shutdown").exists());
    let log = Log::open(dir.path(), config()).unwrap();
    assert!(
        !dir.path().join(".clean_shutdown").exists(),
        "the marker is consumed on open"
    );
    check_all(&log, &expected);
}
