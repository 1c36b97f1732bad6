//! The `camagent` command line.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use camagent::config::capture::Decoding;
use camagent::config::{self, Config, MotionConfig};
use camagent::policy::Policy;

mod cli;

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
    Run {
        /// Run even as root (the systemd unit runs it as its own unprivileged user).
        #[arg(long)]
        allow_root: bool,
    },
    /// Print the device facts as read now, and which purposes may carry them.
    Facts,
    /// Run motion detection over a recorded clip as fast as it decodes; print one JSON line
    /// per event start and end (`pts` in media seconds), to tune `[motion]` on real footage.
    Detect {
        #[arg(long)]
        input: PathBuf,
        /// What the detector decodes: `on-demand` (keyframes, and motion when the encoding
        /// shows it) or `always`, as `capture.decode`.
        #[arg(long, default_value = "on-demand")]
        decode: Decoding,
    },
    /// Run motion detection over every clip of a corpus (`NAME.truth.json` beside each clip,
    /// as `scripts/build-corpus` makes them) and score it: per clip truth against found,
    /// onset and end error; then false events, missed events and error percentiles.
    Eval {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// What the detector decodes: `on-demand` or `always`, as `capture.decode`.
        #[arg(long, default_value = "on-demand")]
        decode: Decoding,
    },
    /// Check a policy file, or explain what this device sends.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show, grant or withdraw the owner's consent (withdraw also objects to a
    /// legitimate-interest purpose).
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Show what the device has sent: time, purpose, legal basis, topic, field names, size.
    Disclosures {
        #[arg(long)]
        json: bool,
    },
    /// The running agent's status: connection, queued records, clip uploads, evictions, the
    /// camera and the last event.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Erase the owner's data on the device: queued records, clips, snapshots, consent ledger,
    /// disclosure log, pseudonym keys. The agent must be stopped; it confirms to the cloud at
    /// its next start.
    Erase {
        /// Confirm that the data should be erased.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file; every error names its line.
    Check { file: PathBuf },
    /// The device's privacy label: what it sends, for what, on which basis, what never leaves.
    Explain {
        /// Explain this policy file instead of the configured one.
        file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConsentCommand {
    Show {
        #[arg(long)]
        json: bool,
    },
    Grant {
        purpose: String,
    },
    Withdraw {
        purpose: String,
    },
}

fn main() -> ExitCode {
    camagent::os::limit_malloc_arenas();
    let cli = Cli::parse();
    // Every file the agent makes (outbox, disclosure log, ledger, clips) is the owner's data:
    // private to the agent's user, also outside systemd's UMask=0077.
    camagent::os::private_files();
    if !matches!(cli.command, Command::Run { .. }) {
        // A command's output piped into `head` or `true` ends quietly, as for any Unix tool,
        // instead of panicking on a closed pipe. The daemon keeps ignoring SIGPIPE.
        camagent::os::default_sigpipe();
    }
    init_logging();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("camagent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = || Config::load(&cli.config);
    // Tuning works without a config: the defaults are what gets tuned.
    let motion = || -> anyhow::Result<MotionConfig> {
        Ok(match cli.config.exists() {
            true => config()?.motion,
            false => MotionConfig::default(),
        })
    };
    match &cli.command {
        Command::Run { allow_root } => {
            // A bad config is the first thing to hear about, whoever runs it.
            let config = config()?;
            if camagent::os::is_root() && !allow_root {
                bail!("refusing to run as root: run it as an unprivileged user (the systemd unit uses User=camagent), or pass --allow-root");
            }
            run(config)
        }
        Command::Facts => cli::show::facts(&config()?),
        Command::Detect { input, decode } => cli::motion::detect(input, &motion()?, *decode),
        Command::Eval { dir, json, decode } => cli::motion::eval(dir, &motion()?, *decode, *json),
        Command::Policy(PolicyCommand::Check { file }) => cli::show::policy_check(file),
        Command::Policy(PolicyCommand::Explain {
            file: Some(file),
            json,
        }) => cli::show::print_label(&Policy::load(file)?, None, *json),
        Command::Policy(PolicyCommand::Explain { file: None, json }) => {
            cli::show::label(&config()?, *json)
        }
        Command::Consent(c) => cli::consent::consent(&config()?, c),
        Command::Status { json } => cli::show::status(&config()?, *json),
        Command::Disclosures { json } => cli::show::disclosures(&config()?, *json),
        Command::Erase { yes } => cli::erase::erase(&config()?, *yes),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    // GStreamer reads its plugin list from the environment: before any thread exists.
    if let Some(capture) = &config.capture {
        camagent::capture::plugins::confine(capture);
    }
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

/// Logs to stderr: plain lines for journald (which adds its own timestamps), `RUST_LOG` for
/// the level (`error`, `warn`, `info`, `debug`, `trace`; default `info`), each kind of line
/// rate-limited (`log_limit`).
fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::level_filters::LevelFilter>().ok())
        .unwrap_or(tracing::level_filters::LevelFilter::INFO);
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(camagent::log_limit::LimitedStderr::default())
        .with_target(false)
        .with_ansi(false);
    if under_journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
