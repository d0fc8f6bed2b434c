//! The admin CLI (`strom topics | groups | produce | consume | log | bench`)
//! run as a process against a real `strom serve`, output parsed as JSON (or,
//! for `bench`, its `summary` lines).

mod common;

use std::collections::HashMap;
use std::path::Path;

use assert_cmd::Command;
use common::{partition_dirs, TestBroker};
use predicates::prelude::*;
use serde_json::Value;

fn strom(broker: &TestBroker) -> Command {
    let mut cmd = Command::cargo_bin("strom").expect("strom binary");
    cmd.env("STROM_BOOTSTRAP", &broker.addr)
        .env_remove("RUST_LOG")
        .timeout(std::time::Duration::from_secs(30));
    cmd
}

/// Runs `args`, expects success, parses stdout as JSON.
fn json(broker: &TestBroker, args: &[&str]) -> Value {
    let out = strom(broker)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "strom {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "strom {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn produce(broker: &TestBroker, topic: &str, input: &str, extra: &[&str]) {
    strom(broker)
        .args(["produce", topic])
        .args(extra)
        .write_stdin(input.to_string())
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "{n} of {n} record(s) acknowledged",
            n = input.lines().count()
        )));
}

#[test]
fn topics_create_list_describe_alter_delete() {
    let broker = TestBroker::start();
    strom(&broker)
        .args([
            "topics",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=3600000",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "created topic orders with 3 partition(s)",
        ));

    let list = json(&broker, &["topics", "list"]);
    let topics = list["topics"].as_array().unwrap();
    assert!(
        topics
            .iter()
            .any(|t| t["name"] == "orders" && t["partitions"] == 3),
        "{list}"
    );

    produce(&broker, "orders", "a\nb\nc\nd\n", &["--partition", "1"]);
    let d = json(&broker, &["topics", "describe", "orders"]);
    assert_eq!(d["name"], "orders");
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[1]["log_start_offset"], 0);
    assert_eq!(parts[1]["high_watermark"], 4);
    assert_eq!(parts[0]["high_watermark"], 0);
    assert!(parts[1]["size_bytes"].as_i64().unwrap() > 0, "{d}");
    assert_eq!(parts[1]["segments"], 1, "{d}");
    let config = |d: &Value, name: &str| {
        d["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {d}"))
    };
    assert_eq!(config(&d, "retention.ms")["value"], "3600000");
    assert_eq!(config(&d, "retention.ms")["source"], "topic");

    // The table form is aligned text with the numbers in it.
    strom(&broker)
        .args(["topics", "describe", "orders"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("HIGH WATERMARK")
                .and(predicate::str::contains("retention.ms")),
        );

    strom(&broker)
        .args([
            "topics",
            "alter",
            "orders",
            "--config",
            "retention.ms=60000",
        ])
        .assert()
        .success();
    let d = json(&broker, &["topics", "describe", "orders"]);
    assert_eq!(config(&d, "retention.ms")["value"], "60000");
    strom(&broker)
        .args(["topics", "alter", "orders", "--config", "no.such.config=1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no.such.config"));

    strom(&broker)
        .args(["topics", "create", "orders", "--partitions", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("already exists"));

    strom(&broker)
        .args(["topics", "delete", "orders"])
        .assert()
        .success();
    let list = json(&broker, &["topics", "list"]);
    assert!(!list["topics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "orders"));
    strom(&broker)
        .args(["topics", "describe", "orders"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("UnknownTopicOrPartition")
                .and(predicate::str::contains("strom topics list")),
        );
}

#[test]
fn topics_alter_partitions_and_delete_records() {
    let broker = TestBroker::start();
    strom(&broker)
        .args(["topics", "create", "trim", "--partitions", "2"])
        .assert()
        .success();
    produce(&broker, "trim", "a\nb\nc\nd\ne\n", &["--partition", "0"]);
    produce(&broker, "trim", "x\ny\n", &["--partition", "1"]);

    strom(&broker)
        .args(["topics", "alter", "trim", "--partitions", "3"])
        .assert()
        .success()
        .stdout("trim: partitions = 3\n");
    assert_eq!(partition_dirs(&broker.data_dir(), "trim").len(), 3);
    strom(&broker)
        .args(["topics", "alter", "trim", "--partitions", "2"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("InvalidPartitions"));
    // Neither --config nor --partitions: a usage error, nothing sent.
    strom(&broker)
        .args(["topics", "alter", "trim"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--config"));

    let r = json(
        &broker,
        &[
            "topics",
            "delete-records",
            "trim",
            "--partition",
            "0",
            "--before",
            "3",
        ],
    );
    assert_eq!(r["partitions"][0]["log_start_offset"], 3, "{r}");
    strom(&broker)
        .args([
            "consume",
            "trim",
            "--partition",
            "0",
            "--from-beginning",
            "--max-messages",
            "2",
        ])
        .assert()
        .success()
        .stdout("d\ne\n");
    strom(&broker)
        .args([
            "topics",
            "delete-records",
            "trim",
            "--partition",
            "1",
            "--before",
            "9",
        ])
        .assert()
        .failure()
        .stderr(predicate::str::contains("OffsetOutOfRange"));

    // Over every partition, one too short fails but the others are done,
    // and every partition is reported.
    strom(&broker)
        .args(["topics", "delete-records", "trim", "--before", "4"])
        .assert()
        .failure()
        .stdout(predicate::str::is_match(r"(?m)^\s*0\s+4\s*$").unwrap())
        .stdout(predicate::str::contains("OffsetOutOfRange"))
        .stderr(predicate::str::contains("OffsetOutOfRange"));

    // `end` on every partition empties the topic.
    json(
        &broker,
        &["topics", "delete-records", "trim", "--before", "end"],
    );
    let d = json(&broker, &["topics", "describe", "trim"]);
    let marks: Vec<(i64, i64)> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["log_start_offset"].as_i64().unwrap(),
                p["high_watermark"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(marks, vec![(5, 5), (2, 2), (0, 0)]);
}

#[test]
fn produce_and_consume_with_keys_formats_and_offsets() {
    let broker = TestBroker::start();
    strom(&broker)
        .args(["topics", "create", "events", "--partitions", "1"])
        .assert()
        .success();
    produce(
        &broker,
        "events",
        "k1:one\nk2:two\nthree\n",
        &["--key-separator", ":", "--compression", "lz4"],
    );

    strom(&broker)
        .args([
            "consume",
            "events",
            "--from-beginning",
            "--max-messages",
            "3",
            "--format",
            "%o %k=%v",
        ])
        .assert()
        .success()
        .stdout("0 k1=one\n1 k2=two\n2 =three\n");

    strom(&broker)
        .args([
            "consume",
            "events",
            "--offset",
            "1",
            "--max-messages",
            "1",
            "--format",
            "%p/%o %v",
        ])
        .assert()
        .success()
        .stdout("0/1 two\n");

    // A time before everything starts at the beginning.
    strom(&broker)
        .args([
            "consume",
            "events",
            "--from-datetime",
            "2000-01-01T00:00:00Z",
            "--max-messages",
            "1",
        ])
        .assert()
        .success()
        .stdout("one\n");

    // Without --max-messages, --idle-timeout ends the read.
    strom(&broker)
        .args([
            "consume",
            "events",
            "--from-beginning",
            "--idle-timeout",
            "500ms",
        ])
        .assert()
        .success()
        .stdout("one\ntwo\nthree\n");
}

#[test]
fn groups_describe_lag_reset_and_delete() {
    let broker = TestBroker::start();
    strom(&broker)
        .args(["topics", "create", "jobs", "--partitions", "2"])
        .assert()
        .success();
    produce(&broker, "jobs", "a\nb\nc\n", &["--partition", "0"]);
    produce(&broker, "jobs", "d\n", &["--partition", "1"]);

    // A group member reads everything and commits on exit.
    let out = strom(&broker)
        .args([
            "consume",
            "jobs",
            "--group",
            "workers",
            "--from-beginning",
            "--max-messages",
            "4",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got: Vec<_> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    got.sort();
    assert_eq!(got, ["a", "b", "c", "d"]);

    let list = json(&broker, &["groups", "list"]);
    assert!(
        list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "workers"),
        "{list}"
    );

    // Move partition 0 back to offset 1: a lag of 2 there.
    let r = json(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "workers",
            "--topic",
            "jobs",
            "--partition",
            "0",
            "--to-offset",
            "1",
        ],
    );
    assert_eq!(r["offsets"][0]["previous_offset"], 3, "{r}");
    assert_eq!(r["offsets"][0]["new_offset"], 1);
    let d = json(&broker, &["groups", "describe", "workers"]);
    let offsets = d["offsets"].as_array().unwrap();
    let p0 = offsets
        .iter()
        .find(|o| o["topic"] == "jobs" && o["partition"] == 0)
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(p0["committed_offset"], 1, "{d}");
    assert_eq!(p0["high_watermark"], 3);
    assert_eq!(p0["lag"], 2);

    // Dry run changes nothing.
    let plan = json(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "workers",
            "--topic",
            "jobs",
            "--to-earliest",
            "--dry-run",
        ],
    );
    assert_eq!(plan["dry_run"], true);
    let d = json(&broker, &["groups", "describe", "workers"]);
    assert_eq!(d["offsets"][0]["committed_offset"], 1, "{d}");

    json(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "workers",
            "--topic",
            "jobs",
            "--to-latest",
        ],
    );
    let d = json(&broker, &["groups", "describe", "workers"]);
    let lag: i64 = d["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["lag"].as_i64().unwrap())
        .sum();
    assert_eq!(lag, 0, "{d}");

    let r = json(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "workers",
            "--topic",
            "jobs",
            "--partition",
            "0",
            "--to-offset",
            "1",
        ],
    );
    assert_eq!(r["offsets"][0]["new_offset"], 1);
    json(
        &broker,
        &[
            "groups",
            "reset-offsets",
            "workers",
            "--topic",
            "jobs",
            "--to-datetime",
            "2000-01-01T00:00:00Z",
        ],
    );
    let d = json(&broker, &["groups", "describe", "workers"]);
    for o in d["offsets"].as_array().unwrap() {
        assert_eq!(o["committed_offset"], 0, "{d}");
    }

    strom(&broker)
        .args(["groups", "delete", "workers"])
        .assert()
        .success();
    strom(&broker)
        .args(["groups", "describe", "workers"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("does not exist"));
}

#[test]
fn errors_say_what_went_wrong_and_exit_non_zero() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    for args in [
        &["topics", "list"][..],
        &["groups", "list"],
        &["consume", "t", "-n", "1"],
    ] {
        Command::cargo_bin("strom")
            .unwrap()
            .args(["--bootstrap", &addr])
            .args(args)
            .write_stdin("x\n")
            .assert()
            .failure()
            .stderr(predicate::str::contains(format!(
                "cannot reach {addr}: connection refused"
            )))
            .stderr(predicate::str::contains("is `strom serve` running?"));
    }
    let broker = TestBroker::start();
    strom(&broker)
        .args(["topics", "create", "x", "--config", "retention.ms"])
        .assert()
        .failure()
        .code(2)
        .stderr(predicate::str::contains("expected key=value"));
    strom(&broker)
        .args(["groups", "reset-offsets", "g", "--topic", "x"])
        .assert()
        .failure()
        .code(2);
    strom(&broker)
        .args(["consume", "no-such-topic", "-n", "1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("no-such-topic"));
    strom(&broker)
        .args(["produce", "t", "--acks", "2"])
        .assert()
        .failure()
        .code(2)
        .stderr(predicate::str::contains("expected 0, 1 or all"));
    Command::cargo_bin("strom")
        .unwrap()
        .args(["log", "verify", "/no/such/dir"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "cannot read data dir /no/such/dir",
        ));
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn log_dump_and_verify_find_a_flipped_byte_in_a_sealed_segment() {
    let mut broker = TestBroker::start_with_config(Some("[log]\nsegment_bytes = \"1 KiB\"\n"));
    strom(&broker)
        .args(["topics", "create", "audit", "--partitions", "1"])
        .assert()
        .success();
    // One line per produce request, so each lands in its own batch of ~150 bytes.
    for i in 0..20 {
        let line = format!("record-{i:02}-{}\n", "x".repeat(80));
        strom(&broker)
            .args(["produce", "audit", "--partition", "0"])
            .write_stdin(line)
            .assert()
            .success();
    }
    let status = broker.stop();
    assert!(status.success(), "{status:?}");
    let data = broker.data_dir();
    let dir = partition_dirs(&data, "audit").pop().expect("partition dir");
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "expected rolled segments: {segs:?}");

    let v = json(&broker, &["log", "verify", data.to_str().unwrap()]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["batches"], 20);

    let dump = json(
        &broker,
        &["log", "dump", segs[0].to_str().unwrap(), "--records"],
    );
    let batches = dump["batches"].as_array().unwrap();
    assert!(!batches.is_empty());
    assert_eq!(batches[0]["base_offset"], 0);
    assert_eq!(batches[0]["crc_ok"], true);
    assert_eq!(
        batches[0]["records"][0]["value"],
        format!("record-00-{}", "x".repeat(80))
    );
    let idx = json(
        &broker,
        &[
            "log",
            "dump",
            segs[0].with_extension("index").to_str().unwrap(),
        ],
    );
    assert!(idx["entries"].is_array());

    // Flip a byte inside the second batch of the first (sealed) segment.
    let second = &batches[1];
    let pos = second["position"].as_u64().unwrap() as usize + 70;
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[pos] ^= 0xff;
    std::fs::write(&segs[0], &bytes).unwrap();

    let out = strom(&broker)
        .args(["log", "verify", data.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let p = &v["problems"][0];
    assert_eq!(p["file"], segs[0].to_str().unwrap(), "{v}");
    assert_eq!(p["position"], second["position"], "{v}");
    assert_eq!(p["offset"], second["base_offset"], "{v}");
    assert!(p["reason"].as_str().unwrap().contains("CRC"), "{v}");

    // The table form names the file and offset too; dump marks the batch BAD.
    strom(&broker)
        .args(["log", "verify", data.to_str().unwrap()])
        .assert()
        .failure()
        .stdout(predicate::str::contains(format!(
            "CORRUPT {} at byte {} (offset {})",
            segs[0].display(),
            second["position"],
            second["base_offset"]
        )));
    let dump = json(&broker, &["log", "dump", segs[0].to_str().unwrap()]);
    assert_eq!(dump["batches"][1]["crc_ok"], false);
}

/// The `key=value` pairs of the `summary side=SIDE` line a bench run prints.
fn bench_summary(stdout: &str, side: &str) -> HashMap<String, String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("summary side={side} ")))
        .unwrap_or_else(|| panic!("no {side} summary in:\n{stdout}"));
    line.split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bench(broker: &TestBroker, args: &[&str]) -> String {
    let out = strom(broker)
        .arg("bench")
        .args(args)
        .args(["--bootstrap", &broker.addr, "--topic", "loadgen"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "strom bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Counts and latency kinds only: timings are never asserted.
#[test]
fn bench_produce_paced_and_flat_out_then_consume_everything() {
    let broker = TestBroker::start();

    // Fixed rate, two producers, with a concurrent consumer from the log end.
    let out = bench(
        &broker,
        &[
            "produce",
            "--partitions",
            "2",
            "--producers",
            "2",
            "--messages",
            "3001",
            "--size",
            "100",
            "--rate",
            "30000",
            "--linger",
            "0",
            "--consume",
        ],
    );
    let produced = bench_summary(&out, "produce");
    assert_eq!(produced["messages"], "3001", "{out}");
    assert_eq!(produced["errors"], "0", "{out}");
    assert_eq!(produced["latency"], "intended-send→ack", "{out}");
    assert_ne!(produced["max_us"], "0", "no latency recorded: {out}");
    let consumed = bench_summary(&out, "consume");
    assert_eq!(consumed["messages"], "3001", "{out}");
    assert_eq!(consumed["latency"], "end-to-end", "{out}");
    assert_ne!(consumed["max_us"], "0", "no end-to-end latency: {out}");

    // As fast as possible, acks=1, into the same topic.
    let out = bench(
        &broker,
        &[
            "produce",
            "--messages",
            "2000",
            "--size",
            "16",
            "--acks",
            "1",
        ],
    );
    let produced = bench_summary(&out, "produce");
    assert_eq!(produced["messages"], "2000", "{out}");
    assert_eq!(produced["bytes"], "32000", "{out}");
    assert_eq!(produced["errors"], "0", "{out}");
    assert_eq!(produced["latency"], "send→ack", "{out}");

    // Both runs are in the log, across both partitions.
    let out = bench(
        &broker,
        &["consume", "--consumers", "2", "--idle-timeout", "1"],
    );
    let consumed = bench_summary(&out, "consume");
    assert_eq!(consumed["messages"], "5001", "{out}");
    assert_eq!(consumed["errors"], "0", "{out}");
}
