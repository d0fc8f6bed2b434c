//! One client connection: reads frames, starts their handlers in arrival
//! order, and writes responses strictly in that order (pipelining).
//!
//! ```text
//!  socket ─► buf ─► take_frame ─► parse ─► handler (sync part runs now)
//!                                            │
//!                                   FuturesOrdered<Pending> (durability waits,
//!                                            │               long polls, ...)
//!  socket ◄──────────── response bytes ◄─────┘  in request order
//! ```
//!
//! The read buffer lives here, not in a future, so a cancelled read loses
//! nothing (`select!` safety).

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::{debug, info};

use super::handlers::{self, Pending};
use super::Context;
use crate::protocol::frame::{bytes_wanted, frame_size, take_frame, OutFrame};
use crate::protocol::parse_request;

/// How long in-flight requests may still finish once the broker stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Largest read-ahead made in one go while a big frame arrives.
const READ_CHUNK: usize = 1 << 20;

pub async fn serve(
    ctx: Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, cause = %e, "set_nodelay failed");
    }
    info!(%peer, "connection opened");
    let reason = run(&ctx, stream, peer, &mut shutdown).await;
    info!(%peer, reason = %reason, "connection closed");
}

async fn run(
    ctx: &Arc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> String {
    let (mut reader, mut writer) = stream.into_split();
    let max_frame = ctx.broker.config.server.socket_request_max_bytes as usize;
    let max_in_flight = ctx.broker.config.server.max_in_flight_per_connection;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    // Set once we stop reading (peer EOF, shutdown, bad input); the
    // connection then finishes what it has started and closes.
    let mut closing: Option<String> = None;
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    // Memory for the frame being read, reserved from the broker-wide budget
    // as soon as its size is known; it travels with the request until its
    // response is ready.
    let mut reserved: Option<OwnedSemaphorePermit> = None;
    let mut wanted: Option<u32> = None;
    loop {
        while closing.is_none() && pending.len() < max_in_flight {
            if reserved.is_none() {
                match frame_size(&buf, max_frame) {
                    Err(e) => {
                        closing = Some(e.to_string());
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(size)) => {
                        // validate() keeps every allowed frame within the budget.
                        let size = u32::try_from(size).unwrap_or(u32::MAX);
                        match ctx.request_budget.clone().try_acquire_many_owned(size) {
                            Ok(permit) => reserved = Some(permit),
                            Err(_) => {
                                wanted = Some(size);
                                break;
                            }
                        }
                    }
                }
            }
            match take_frame(&mut buf, max_frame) {
                Ok(None) => break,
                Ok(Some(frame)) => {
                    let permit = reserved.take();
                    match parse_request(frame)
                        .map_err(|e| e.to_string())
                        .and_then(|parsed| {
                            handlers::dispatch(ctx, parsed, peer).map_err(|e| e.to_string())
                        }) {
                        Ok(p) => pending.push_back(Box::pin(async move {
                            let reply = p.await;
                            drop(permit);
                            reply
                        })),
                        Err(e) => closing = Some(e),
                    }
                }
                Err(e) => closing = Some(e.to_string()),
            }
        }
        if let Some(reason) = &closing {
            if pending.is_empty() {
                return reason.clone();
            }
        }
        // Read only while the frame in progress has its memory (or its size
        // is still unknown): back-pressure instead of unbounded buffering.
        let can_read = closing.is_none()
            && pending.len() < max_in_flight
            && (reserved.is_some() || buf.len() < 4);
        if can_read {
            buf.reserve(bytes_wanted(&buf, READ_CHUNK).max(16 * 1024));
        }
        tokio::select! {
            Some(done) = pending.next(), if !pending.is_empty() => match done {
                Ok(Some(response)) => {
                    if let Err(e) = write_frame(&mut writer, &response).await {
                        return format!("write failed: {e}");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    // Kafka closes the connection here (e.g. acks=0 failures);
                    // earlier responses were written, later ones are dropped.
                    return e.to_string();
                }
            },
            read = reader.read_buf(&mut buf), if can_read => match read {
                Ok(0) => closing = Some(if buf.is_empty() { "peer closed".into() } else { "peer closed mid-request".into() }),
                Ok(_) => {}
                Err(e) => return format!("read failed: {e}"),
            },
            permit = ctx.request_budget.clone().acquire_many_owned(wanted.unwrap_or(0)), if wanted.is_some() && closing.is_none() => {
                wanted = None;
                match permit {
                    Ok(p) => reserved = Some(p),
                    Err(_) => return "request budget closed".into(),
                }
            }
            _ = shutdown.changed(), if closing.is_none() => {
                closing = Some("broker shutting down".into());
                // Long polls and joins may wait minutes; shutdown does not.
                drain_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_GRACE);
            }
            _ = sleep_until_opt(drain_deadline) => {
                return format!("broker shutting down; {} unanswered request(s) dropped", pending.len());
            }
        }
    }
}

/// Writes a response's chunks back to back, with vectored writes so that a
/// Fetch response's record bytes go from the segment map to the socket.
async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, frame: &OutFrame) -> io::Result<()> {
    /// iovecs per call; the rest go in the next write.
    const MAX_SLICES: usize = 64;
    let chunks = frame.chunks();
    if let [one] = chunks {
        return writer.write_all(one).await;
    }
    let (mut index, mut offset) = (0usize, 0usize);
    while index < chunks.len() {
        let slices: Vec<IoSlice<'_>> = chunks[index..]
            .iter()
            .take(MAX_SLICES)
            .enumerate()
            .map(|(i, c)| IoSlice::new(if i == 0 { &c[offset..] } else { c }))
            .collect();
        let mut written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while index < chunks.len() && written >= chunks[index].len() - offset {
            written -= chunks[index].len() - offset;
            index += 1;
            offset = 0;
        }
        offset += written;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};

    use bytes::Bytes;

    use super::*;

    /// Takes at most `step` bytes per write, so every chunk boundary gets
    /// crossed mid-write somewhere.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut TaskContext<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            for b in bufs {
                let n = b.len().min(left);
                self.out.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(self.step - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn chunks_arrive_whole_and_in_order_through_partial_writes() {
        let chunks: Vec<Bytes> = [5usize, 0, 1, 300, 0, 7, 4096, 2]
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 40 + j) as u8).collect())
            .chain((0..100).map(|i| Bytes::from(vec![i as u8; 3])))
            .collect();
        let want: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let frame = OutFrame::from_chunks(chunks);
        for step in [1, 2, 3, 6, 299, 1000, 1 << 20] {
            let mut w = Trickle {
                out: Vec::new(),
                step,
            };
            write_frame(&mut w, &frame).await.unwrap();
            assert_eq!(w.out, want, "step {step}");
        }
    }
}
