//! One TCP connection to one broker: ApiVersions negotiation and pipelined requests.
//!
//! A writer task sends frames in the order callers hand them over and queues
//! each caller's reply slot; a reader task answers the slots in that same
//! order (Kafka answers one connection's requests in order) and checks the
//! correlation id. Requests that expect no answer (Produce with acks=0) queue
//! no slot.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::error::{Error, Result};

/// The highest version of each API this client speaks, where it is lower than
/// what `kafka-protocol` can encode: later versions switch to topic ids (Produce
/// 13, Fetch 13) or batched group layouts (FindCoordinator 4, OffsetFetch 8)
/// that the client does not use.
fn our_max(key: i16, codec_max: i16) -> i16 {
    let cap = match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => 11,
        Ok(ApiKey::Fetch) => 12,
        Ok(ApiKey::ListOffsets) => 7,
        Ok(ApiKey::Metadata) => 12,
        Ok(ApiKey::OffsetCommit) => 8,
        Ok(ApiKey::OffsetFetch) => 7,
        Ok(ApiKey::FindCoordinator) => 3,
        Ok(ApiKey::JoinGroup) => 7,
        Ok(ApiKey::SyncGroup) => 5,
        Ok(ApiKey::Heartbeat) => 4,
        Ok(ApiKey::LeaveGroup) => 4,
        Ok(ApiKey::ListGroups) => 4,
        Ok(ApiKey::DescribeGroups) => 5,
        Ok(ApiKey::DeleteGroups) => 2,
        Ok(ApiKey::CreateTopics) => 7,
        Ok(ApiKey::DeleteTopics) => 6,
        Ok(ApiKey::DescribeConfigs) => 4,
        Ok(ApiKey::InitProducerId) => 4,
        Ok(ApiKey::ApiVersions) => 3,
        Ok(ApiKey::CreatePartitions) => 3,
        Ok(ApiKey::DeleteRecords) => 2,
        _ => codec_max,
    };
    cap.min(codec_max)
}

struct Outgoing {
    frame: Bytes,
    reply: Option<(i32, oneshot::Sender<Result<Bytes>>)>,
}

type Pending = Arc<Mutex<VecDeque<(i32, oneshot::Sender<Result<Bytes>>)>>>;

/// A connection to one broker. Cheap to share behind an `Arc`; requests from
/// several tasks are pipelined.
pub(crate) struct Connection {
    pub(crate) addr: String,
    client_id: StrBytes,
    tx: mpsc::Sender<Outgoing>,
    correlation: AtomicI32,
    closed: Arc<AtomicBool>,
    /// api key -> (min, max) the broker supports.
    versions: HashMap<i16, (i16, i16)>,
    pub(crate) timeout: Duration,
}

impl Connection {
    /// Connects and negotiates API versions.
    pub(crate) async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Connection> {
        let io_err = |source| Error::Io {
            addr: addr.to_string(),
            source,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Timeout(format!("connect to {addr}"), timeout))?
            .map_err(io_err)?;
        stream.set_nodelay(true).map_err(io_err)?;
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Outgoing>(1024);
        let pending: Pending = Default::default();
        let closed = Arc::new(AtomicBool::new(false));

        let (wpending, wclosed, waddr) = (pending.clone(), closed.clone(), addr.to_string());
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                if let Some(slot) = out.reply {
                    wpending.lock().expect("pending lock").push_back(slot);
                }
                if let Err(e) = wr.write_all(&out.frame).await {
                    debug!(addr = %waddr, cause = %e, "write failed; closing connection");
                    break;
                }
            }
            wclosed.store(true, Ordering::SeqCst);
            let _ = wr.shutdown().await;
        });

        let (rpending, rclosed, raddr) = (pending, closed.clone(), addr.to_string());
        tokio::spawn(async move {
            loop {
                let mut size = [0u8; 4];
                if rd.read_exact(&mut size).await.is_err() {
                    break;
                }
                let size = i32::from_be_bytes(size);
                if size < 4 {
                    break;
                }
                let mut body = BytesMut::zeroed(size as usize);
                if rd.read_exact(&mut body).await.is_err() {
                    break;
                }
                let body = body.freeze();
                let correlation = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                let slot = rpending.lock().expect("pending lock").pop_front();
                match slot {
                    Some((want, reply)) if want == correlation => {
                        let _ = reply.send(Ok(body));
                    }
                    other => {
                        debug!(addr = %raddr, correlation, expected = ?other.map(|s| s.0), "unexpected correlation id; closing connection");
                        break;
                    }
                }
            }
            rclosed.store(true, Ordering::SeqCst);
            for (_, reply) in rpending.lock().expect("pending lock").drain(..) {
                let _ = reply.send(Err(Error::Disconnected(raddr.clone())));
            }
        });

        let mut conn = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            tx,
            correlation: AtomicI32::new(0),
            closed,
            versions: HashMap::new(),
            timeout,
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    async fn negotiate(&mut self) -> Result<()> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strom-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp: ApiVersionsResponse = self.call_version(&req, 3, self.timeout).await?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: the broker is older; v0 always works (KIP-511).
            resp = self.call_version(&req, 0, self.timeout).await?;
        }
        Error::check(resp.error_code, || format!("ApiVersions to {}", self.addr))?;
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.tx.is_closed()
    }

    /// Whether the broker lists `key` in its ApiVersions answer.
    pub(crate) fn supports(&self, key: ApiKey) -> bool {
        self.versions.contains_key(&(key as i16))
    }

    /// The version to use for `R`: min(ours, broker's max), if within both ranges.
    pub(crate) fn version_for<R: Request>(&self) -> Result<i16> {
        let ours_max = our_max(R::KEY, R::VERSIONS.max);
        let unsupported = || Error::UnsupportedVersion {
            addr: self.addr.clone(),
            api_key: R::KEY,
            ours: format!("{}-{}", R::VERSIONS.min, ours_max),
        };
        let (bmin, bmax) = *self.versions.get(&R::KEY).ok_or_else(unsupported)?;
        let v = ours_max.min(bmax);
        if v < bmin.max(R::VERSIONS.min) {
            return Err(unsupported());
        }
        Ok(v)
    }

    /// Sends `req` at the negotiated version and waits for the answer.
    pub(crate) async fn call<R: Request>(&self, req: &R) -> Result<R::Response> {
        self.call_timeout(req, self.timeout).await
    }

    /// Like [`call`](Self::call) with its own timeout (JoinGroup waits for a rebalance).
    pub(crate) async fn call_timeout<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let v = self.version_for::<R>()?;
        self.call_version(req, v, timeout).await
    }

    async fn call_version<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response> {
        self.enqueue_version(req, version, timeout)
            .await?
            .wait()
            .await
    }

    /// Queues `req` at the negotiated version and returns the future of its
    /// answer. Requests queued one after another by a task go out, and are
    /// answered, in that order, so a caller can pipeline without racing.
    pub(crate) async fn enqueue<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<PendingCall<R>> {
        let v = self.version_for::<R>()?;
        self.enqueue_version(req, v, timeout).await
    }

    async fn enqueue_version<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<PendingCall<R>> {
        let (correlation, frame) = self.encode(req, version)?;
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Outgoing {
                frame,
                reply: Some((correlation, tx)),
            })
            .await
            .map_err(|_| Error::Disconnected(self.addr.clone()))?;
        Ok(PendingCall {
            rx,
            version,
            timeout,
            deadline: tokio::time::Instant::now() + timeout,
            addr: self.addr.clone(),
            _request: std::marker::PhantomData,
        })
    }

    /// Sends a request that gets no answer (Produce with acks=0).
    pub(crate) async fn send_only<R: Request>(&self, req: &R) -> Result<()> {
        let v = self.version_for::<R>()?;
        let (_, frame) = self.encode(req, v)?;
        self.tx
            .send(Outgoing { frame, reply: None })
            .await
            .map_err(|_| Error::Disconnected(self.addr.clone()))
    }

    fn encode<R: Request>(&self, req: &R, version: i16) -> Result<(i32, Bytes)> {
        let correlation = self.correlation.fetch_add(1, Ordering::Relaxed);
        // Sized up front: a Produce request carries whole record batches, and
        // growing the frame by doubling copied each one several times.
        let body = req.compute_size(version).unwrap_or(0);
        let mut buf = BytesMut::with_capacity(64 + body);
        buf.extend_from_slice(&[0; 4]);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        let enc = |e| Error::Protocol(format!("encode api key {} v{version}: {e}", R::KEY));
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(enc)?;
        req.encode(&mut buf, version).map_err(enc)?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok((correlation, buf.freeze()))
    }
}

/// The answer to a queued request (see [`Connection::enqueue`]).
pub(crate) struct PendingCall<R> {
    rx: oneshot::Receiver<Result<Bytes>>,
    version: i16,
    timeout: Duration,
    /// Counted from when the request was queued, not from the first poll of
    /// [`wait`](Self::wait): a caller may start waiting later.
    deadline: tokio::time::Instant,
    addr: String,
    _request: std::marker::PhantomData<fn() -> R>,
}

impl<R: Request> PendingCall<R> {
    /// Waits for the answer and decodes it.
    pub(crate) async fn wait(self) -> Result<R::Response> {
        let version = self.version;
        let what = || format!("api key {} v{version} to {}", R::KEY, self.addr);
        let mut body = tokio::time::timeout_at(self.deadline, self.rx)
            .await
            .map_err(|_| Error::Timeout(what(), self.timeout))?
            .map_err(|_| Error::Disconnected(self.addr.clone()))??;
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| Error::Protocol(format!("{}: response header: {e}", what())))?;
        let resp = R::Response::decode(&mut body, version)
            .map_err(|e| Error::Protocol(format!("{}: response body: {e}", what())))?;
        if body.has_remaining() {
            debug!(
                api_key = R::KEY,
                version,
                left = body.remaining(),
                "trailing bytes in response"
            );
        }
        Ok(resp)
    }
}
