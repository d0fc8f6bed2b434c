//! The TCP side: the accept loop, connections, and one handler per API.

mod connection;
mod errors;
mod handlers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::parse_host_port;
use crate::metrics::Metrics;

/// What every handler may reach.
pub struct Context {
    pub broker: Arc<Broker>,
    /// host and port given to clients in Metadata.
    pub advertised: (String, u16),
    pub cluster_id: String,
    pub metrics: Arc<Metrics>,
    /// Bytes of request frames all connections may hold at once
    /// (`server.max_buffered_request_bytes`); readers wait for room.
    pub request_budget: Arc<tokio::sync::Semaphore>,
}

/// A bound Kafka listener.
pub struct Server {
    listener: TcpListener,
    ctx: Arc<Context>,
}

impl Server {
    /// Binds the configured address; the advertised address defaults to the
    /// bound one (so port 0 works).
    pub async fn bind(broker: Arc<Broker>, metrics: Arc<Metrics>) -> anyhow::Result<Server> {
        let listen = &broker.config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        let bound = listener.local_addr()?;
        let advertised = match broker.config.server.advertised_listener.as_str() {
            "" => (bound.ip().to_string(), bound.port()),
            other => parse_host_port(other).map_err(|m| anyhow::anyhow!(m))?,
        };
        let budget =
            usize::try_from(broker.config.server.max_buffered_request_bytes).unwrap_or(usize::MAX);
        let ctx = Arc::new(Context {
            broker,
            advertised,
            cluster_id: "strom-cluster".to_string(),
            metrics,
            request_budget: Arc::new(tokio::sync::Semaphore::new(budget)),
        });
        Ok(Server { listener, ctx })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until `shutdown` turns true, then waits for the
    /// open connections to finish their in-flight requests.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let max = self.ctx.broker.config.server.max_connections;
        let open = Arc::new(AtomicUsize::new(0));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            warn!(cause = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if open.load(Ordering::Relaxed) >= max {
                        self.ctx.metrics.connections_refused.inc();
                        warn!(%peer, max, "refusing connection: max_connections reached");
                        drop(stream);
                        continue;
                    }
                    open.fetch_add(1, Ordering::Relaxed);
                    let ctx = self.ctx.clone();
                    let open = open.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move {
                        ctx.metrics.connections.inc();
                        connection::serve(ctx.clone(), stream, peer, shutdown).await;
                        ctx.metrics.connections.dec();
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        }
        info!(
            open = open.load(Ordering::Relaxed),
            "listener closed; finishing connections"
        );
        while connections.join_next().await.is_some() {}
    }
}
