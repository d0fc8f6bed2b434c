//! The `strom` binary: `strom serve` runs the broker; the other subcommands
//! are the admin CLI (src/cli/).

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

use strom::serve::{self, ServeArgs};

mod cli;

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
    #[command(flatten)]
    connect: cli::Connect,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (Kafka protocol on 127.0.0.1:9092, data in ./data by default)
    Serve(ServeArgs),
    /// List, describe, create, delete and alter topics
    Topics(cli::topics::TopicsArgs),
    /// List, describe and delete consumer groups; reset their offsets
    Groups(cli::groups::GroupsArgs),
    /// Write stdin lines to a topic, one record per line
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records
    Consume(cli::consume::ConsumeArgs),
    /// Inspect segment files offline: dump batches, verify a data dir
    Log(cli::log::LogArgs),
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
        Command::Topics(args) => cli::topics::run(args, &cli.connect),
        Command::Groups(args) => cli::groups::run(args, &cli.connect),
        Command::Produce(args) => cli::produce::run(args, &cli.connect),
        Command::Consume(args) => cli::consume::run(args, &cli.connect),
        Command::Log(args) => cli::log::run(args),
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
