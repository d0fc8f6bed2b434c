//! The `strom` binary: `strom serve` runs the broker.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use strom::serve::{self, ServeArgs};

mod bench;

#[derive(Debug, Parser)]
#[command(
    name = "strom",
    version,
    about = "A persistent, log-based message broker that speaks the Kafka protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (Kafka protocol on 127.0.0.1:9092, data in ./data by default)
    Serve(ServeArgs),
    /// Load generators: throughput and latency percentiles against a running broker
    Bench(bench::BenchArgs),
}

fn init_tracing(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.config()?;
            init_tracing(&config.server.log_filter);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve::run(config))
        }
        Command::Bench(args) => bench::run(args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One readable message with its causes; no backtrace for users.
            eprintln!("strom: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
