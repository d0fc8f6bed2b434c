//! Test harness: a real `strom serve` process on 127.0.0.1:0 with a temp
//! data dir, and a raw Kafka-protocol client to poke it with.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

/// A broker process owned by a test; killed and its data dir removed on drop.
pub struct TestBroker {
    child: Option<Child>,
    pub addr: String,
    /// host:port of the Prometheus endpoint.
    pub metrics_addr: String,
    dir: tempfile::TempDir,
    /// Where the data lives when not under `dir`.
    data_dir: Option<PathBuf>,
    config: Option<String>,
    stderr_log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl TestBroker {
    pub fn start() -> TestBroker {
        Self::start_with_config(None)
    }

    /// Starts with extra broker.toml text.
    pub fn start_with_config(config: Option<&str>) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = TestBroker {
            child: None,
            addr: String::new(),
            metrics_addr: String::new(),
            dir,
            data_dir: None,
            config: config.map(str::to_string),
            stderr_log: Default::default(),
        };
        broker.spawn();
        broker
    }

    /// Starts with its data in `data_dir` (e.g. on a special filesystem).
    pub fn start_on(data_dir: &Path, config: &str) -> TestBroker {
        let mut broker = TestBroker {
            child: None,
            addr: String::new(),
            metrics_addr: String::new(),
            dir: tempfile::tempdir().expect("temp dir"),
            data_dir: Some(data_dir.to_path_buf()),
            config: Some(config.to_string()),
            stderr_log: Default::default(),
        };
        broker.spawn();
        broker
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strom"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(text) = &self.config {
            let path = self.dir.path().join("broker.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(path);
        }
        let mut child = cmd.spawn().expect("spawn strom serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let log = self.stderr_log.clone();
        std::thread::spawn(move || {
            let mut metrics = None;
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("metrics endpoint at http://").nth(1) {
                    metrics = rest.split('/').next().map(str::to_string);
                }
                if let Some(addr) = line.split("listening addr=").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ =
                            tx.send((addr.trim().to_string(), metrics.clone().unwrap_or_default()));
                    }
                }
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        (self.addr, self.metrics_addr) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("broker did not become ready; stderr:\n{}", self.stderr()));
        self.child = Some(child);
    }

    pub fn stderr(&self) -> String {
        self.stderr_log.lock().unwrap().clone()
    }

    /// Whether `needle` shows up in the broker's stderr within 10 s. A line
    /// logged while serving a request can reach the reader thread after
    /// the response reached the test, so tests wait for it.
    pub fn stderr_shows(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.stderr().contains(needle) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("broker running");
        let pid = child.id() as i32;
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill");
        for _ in 0..300 {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().ok();
        panic!(
            "broker did not stop within 15 s of SIGTERM; stderr:\n{}",
            self.stderr()
        );
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Starts again on the same data dir (new port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Resident memory of the broker process, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("broker running").id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .expect("VmRSS of the broker")
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.addr)
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking raw Kafka client: one request at a time.
pub struct Client {
    pub stream: TcpStream,
    correlation: i32,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        Self::try_connect(addr).expect("connect")
    }

    /// Connects, or the reason it could not (a broker that was just killed).
    pub fn try_connect(addr: &str) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Client {
            stream,
            correlation: 0,
        })
    }

    /// Sends `body` as `key` v`version` and decodes the response as `R`.
    pub fn call<Q: Encodable, R: Decodable + HeaderVersion>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Q,
    ) -> R {
        self.send(key, version, body);
        let mut frame = self.read_frame().expect("response frame");
        let header = ResponseHeader::decode(&mut frame, R::header_version(version))
            .expect("response header");
        assert_eq!(header.correlation_id, self.correlation, "correlation id");
        R::decode(&mut frame, version).expect("response body")
    }

    pub fn send<Q: Encodable>(&mut self, key: ApiKey, version: i16, body: &Q) {
        self.correlation += 1;
        let mut buf = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("strom-tests")))
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        self.send_raw(&buf);
    }

    /// Writes one frame (size prefix added).
    pub fn send_raw(&mut self, payload: &[u8]) {
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).expect("write");
    }

    /// Reads one response frame; None if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).ok()?;
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    /// Whether the broker closed this connection (EOF or reset).
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}

/// All partition directories of `topic` under `data_dir`.
pub fn partition_dirs(data_dir: &Path, topic: &str) -> Vec<PathBuf> {
    std::fs::read_dir(data_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.strip_prefix(topic))
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|idx| idx.parse::<u32>().is_ok())
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Client {
    /// The correlation id of the last request sent.
    pub fn last_correlation(&self) -> i32 {
        self.correlation
    }
}

/// A two-worker runtime (the machine has two cores) for client tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
