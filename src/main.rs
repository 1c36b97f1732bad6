//! The `camagent` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::error;

use camagent::config::{self, Config};
use camagent::policy::Policy;

#[derive(Parser)]
#[command(
    name = "camagent",
    version,
    about = "IP camera agent: device facts, alerts and clips to the cloud over MQTT/TLS, through a privacy-policy gate"
)]
struct Cli {
    /// Config file.
    #[arg(long, short, global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the daemon's job).
    Run,
    /// Print the device facts as read now, and which of them the policy lets leave.
    Facts,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("camagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command {
        Command::Run => run(config),
        Command::Facts => facts(&config),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        camagent::agent::run(config, shutdown).await?;
        Ok(())
    })
}

fn facts(config: &Config) -> anyhow::Result<()> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let facts = config.device.read();
    println!("{:<17} {:<34} leaves for", "field", "value");
    for (field, value) in &facts {
        let purposes = policy.purposes_for(*field);
        let leaves = if purposes.is_empty() {
            "never (stays on the device)".to_owned()
        } else {
            purposes.join(", ")
        };
        println!("{:<17} {:<34} {leaves}", field.name(), value.to_string());
    }
    Ok(())
}

/// Logs to stderr: plain lines for journald (which adds its own timestamps), `RUST_LOG` for
/// the level (`error`, `warn`, `info`, `debug`, `trace`; default `info`).
fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::level_filters::LevelFilter>().ok())
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    if under_journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
