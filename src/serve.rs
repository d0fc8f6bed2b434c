//! `strom serve`: start the broker, run until SIGTERM/SIGINT, shut down
//! cleanly (flush, checkpoint, clean-shutdown marker).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::{error, info};

use std::time::{Duration, Instant};

use crate::broker::{now_ms, Broker};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::Server;

/// Command-line overrides of the config file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// broker.toml to read (default: the built-in defaults, same as the
    /// shipped broker.toml)
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT (port 0 picks a free one)
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Directory for topic data and broker metadata
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address clients are told to connect to, HOST:PORT
    #[arg(long, value_name = "HOST:PORT")]
    pub advertised_listener: Option<String>,
    /// Address of the Prometheus endpoint, HOST:PORT ("" turns it off)
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
}

impl ServeArgs {
    /// The config file (or defaults) with the flags applied and validated.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(listen) = &self.listen {
            config.server.listen = listen.clone();
        }
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        if let Some(adv) = &self.advertised_listener {
            config.server.advertised_listener = adv.clone();
        }
        if let Some(metrics) = &self.metrics_listen {
            config.metrics.listen = metrics.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

/// Every segment keeps three files open, so the soft limit on open files
/// (often 1,024) would cap a broker at a few hundred partitions: it is
/// raised to the hard limit, as Kafka's docs ask operators to do by hand.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(
            max_open_files = limit,
            "open files limit raised to the hard limit"
        ),
        Err(e) => error!(cause = %e, "cannot raise the open files limit"),
    }
}

/// Runs the broker until a termination signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    raise_open_files_limit();
    let data_dir = config.server.data_dir.clone();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await?
        .with_context(|| format!("cannot open data dir {}", data_dir.display()))?;
    let broker = Arc::new(broker);
    let metrics = Arc::new(Metrics::default());
    let metrics_listener = crate::metrics::bind(&broker.config.metrics.listen).await?;
    let server = Server::bind(broker.clone(), metrics.clone()).await?;
    let addr = server.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let background = spawn_background(&broker, shutdown_rx.clone());
    info!(addr = %addr, "listening");
    let metrics_task = metrics_listener.map(|listener| {
        let registry = Arc::new(crate::metrics::registry(&metrics, broker.clone()));
        tokio::spawn(crate::metrics::serve(
            listener,
            registry,
            shutdown_rx.clone(),
        ))
    });
    let serving = tokio::spawn(server.run(shutdown_rx));

    wait_for_signal().await?;
    info!("shutting down");
    shutdown_tx.send_replace(true);
    if let Err(e) = serving.await {
        error!(cause = %e, "listener task failed");
    }
    for task in background.into_iter().chain(metrics_task) {
        if let Err(e) = task.await {
            error!(cause = %e, "background task failed");
        }
    }
    let closed = tokio::task::spawn_blocking(move || broker.shutdown()).await?;
    if !closed {
        anyhow::bail!(
            "some partitions failed to close cleanly; they will be recovered on the next start"
        );
    }
    info!("stopped cleanly");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "signal received"),
        _ = int.recv() => info!(signal = "SIGINT", "signal received"),
    }
    Ok(())
}

/// Interval flushes and retention, each on the blocking pool.
fn spawn_background(
    broker: &Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let periodic = |every: std::time::Duration, work: fn(&Broker)| {
        let broker = broker.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let broker = broker.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || work(&broker)).await {
                    error!(cause = %e, "background work panicked");
                }
            }
        })
    };
    if broker.config.flush.mode != strom_storage::FlushMode::Never {
        tasks.push(periodic(broker.config.flush.interval, Broker::flush_all));
    }
    tasks.push(periodic(
        broker.config.log.retention_check_interval,
        Broker::maintain_all,
    ));
    tasks.push(periodic(Duration::from_secs(60), Broker::expire_offsets));
    tasks.push(periodic(
        Duration::from_secs(30),
        Broker::snapshot_producers,
    ));
    // Session expiry and rebalance deadlines: cheap, in-memory, frequent.
    let groups_broker = broker.clone();
    let mut groups_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = ticker.tick() => groups_broker.groups.tick(Instant::now(), now_ms()),
                _ = groups_shutdown.changed() => return,
            }
        }
    }));
    tasks
}
