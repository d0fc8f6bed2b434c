//! kill -9 a child that appends and reports each durable batch; reopen and
//! check every reported batch is present and intact.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{batch, read_one, stored, tiny_config};
use strom_storage::{Log, LogConfig, Offset};

const CHILD_ENV: &str = "STROM_CRASH_CHILD_DIR";
const ROUND_ENV: &str = "STROM_CRASH_ROUND";

fn config() -> LogConfig {
    tiny_config(64 * 1024, 4096)
}

/// The batch the child writes as number `i` of `round`.
fn nth_batch(round: u64, i: u64) -> Vec<u8> {
    let seed = round * 1_000_000 + i;
    batch(
        seed,
        1 + (seed % 5) as usize,
        50 + (seed % 300) as usize,
        seed as i64,
    )
}

fn child(dir: &str, round: u64) {
    let mut log = Log::open(dir.as_ref(), config()).unwrap();
    let syncer = log.syncer();
    let mut out = std::io::stdout().lock();
    for i in 0..1_000_000u64 {
        let info = log.append(&nth_batch(round, i)).unwrap();
        if i % 3 == 0 {
            log.flush().unwrap();
        } else {
            syncer.wait_durable(info.log_end_offset).unwrap();
        }
        writeln!(out, "ACK {} {} {}", info.base_offset, round, i).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
        child(&dir, round);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut acked: Vec<(Offset, Vec<u8>)> = Vec::new();
    for round in 0..5u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 5 + seed % 300;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "acknowledged_batches_survive_sigkill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut seen = 0;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(rest) = line.strip_prefix("ACK ") else {
                continue;
            };
            let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
            let base = f[0] as Offset;
            acked.push((base, stored(&nth_batch(f[1], f[2]), base)));
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child was killed (seed {seed})"
        );
        let log = Log::open(dir.path(), config()).unwrap();
        for (base, bytes) in &acked {
            assert_eq!(
                &read_one(&log, *base),
                bytes,
                "round {round}: batch at {base} (seed {seed})"
            );
        }
        let last = acked.last().unwrap();
        assert!(log.log_end_offset() > last.0, "round {round}: log end");
        println!(
            "round {round}: killed after {kill_after} acks; {} acked batches intact over {} segments",
            acked.len(),
            log.segment_count()
        );
    }
}
