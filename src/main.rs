//! The `camagent` command line.

#![deny(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use camagent::config::{self, Config};
use camagent::policy::consent::{self, Choice, LedgerFile, Via};
use camagent::policy::disclosure::DisclosureLog;
use camagent::policy::{explain, Policy};
use camagent::record::rfc3339;

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
    },
    /// Run motion detection over every clip of a corpus (`NAME.truth.json` beside each clip,
    /// as `scripts/build-corpus` makes them) and score it: per clip truth against found,
    /// onset and end error; then false events, missed events and error percentiles.
    Eval {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
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
    if let Command::Policy(PolicyCommand::Check { file }) = &cli.command {
        let policy = Policy::load(file)?;
        println!(
            "{}: valid — policy {:?} version {}, {} purposes",
            file.display(),
            policy.name,
            policy.version,
            policy.purposes.len()
        );
        return Ok(());
    }
    if let Command::Policy(PolicyCommand::Explain {
        file: Some(file),
        json,
    }) = &cli.command
    {
        return print_label(&Policy::load(file)?, None, *json);
    }
    if let Command::Detect { .. } | Command::Eval { .. } = &cli.command {
        // The config is optional here: without one, the defaults are what gets tuned.
        let motion = if cli.config.exists() {
            Config::load(&cli.config)?.motion
        } else {
            camagent::config::MotionConfig::default()
        };
        return match &cli.command {
            Command::Eval { dir, json } => eval(dir, &motion, *json),
            Command::Detect { input } => detect(input, &motion),
            _ => Ok(()),
        };
    }
    let config = Config::load(&cli.config)?;
    let state = &config.agent.state();
    match cli.command {
        Command::Run { allow_root } => {
            if camagent::os::is_root() && !allow_root {
                bail!("refusing to run as root: run it as an unprivileged user (the systemd unit uses User=camagent), or pass --allow-root");
            }
            run(config)
        }
        Command::Facts => facts(&config),
        Command::Detect { .. } | Command::Eval { .. } => Ok(()), // handled above
        Command::Policy(_) => {
            let policy = Policy::load(&config.agent.policy_file)?;
            let ledger = LedgerFile::new(state.consent_ledger()).load()?;
            let json = matches!(
                cli.command,
                Command::Policy(PolicyCommand::Explain { json: true, .. })
            );
            print_label(&policy, Some(&ledger), json)
        }
        Command::Consent(c) => consent_command(&config, c),
        Command::Status { json } => {
            let s = camagent::status::read(&state.status()).with_context(|| {
                format!(
                    "no status in {} (has the agent run with this state directory?)",
                    state.root().display()
                )
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "broker      {}",
                    if s.connected {
                        "connected"
                    } else {
                        "not connected"
                    }
                );
                println!(
                    "queued      {} records, {} bytes",
                    s.outbox_records, s.outbox_bytes
                );
                println!("delivered   {} records, {} clips ({} clips evicted unsent, {} records refused)", s.delivered, s.clips_delivered, s.clips_evicted, s.refused);
                if s.quarantined > 0 {
                    println!(
                        "quarantine  {} damaged records kept aside, never sent ({}, {})",
                        s.quarantined,
                        state.outbox().join("quarantine").display(),
                        state.clips().join("*.damaged").display()
                    );
                }
                for u in &s.uploads {
                    println!(
                        "uploading   clip {}: {}/{} chunks of {} bytes",
                        u.clip_id, u.acknowledged, u.chunks, u.bytes
                    );
                }
                println!("camera      {}", s.camera);
                match &s.last_event {
                    Some(e) => println!("last event  {} at {}", e.event_id, e.time),
                    None => println!("last event  none"),
                }
            }
            Ok(())
        }
        Command::Disclosures { json } => {
            let log = DisclosureLog::new(
                state.disclosure_log(),
                config.agent.disclosure_log_max_bytes,
            );
            let entries = log.read().context("cannot read the disclosure log")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                println!(
                    "{:<24} {:<22} {:<19} {:>6}  {:<40} fields",
                    "time", "purpose", "legal basis", "bytes", "topic"
                );
                for d in entries {
                    println!(
                        "{:<24} {:<22} {:<19} {:>6}  {:<40} {}",
                        rfc3339(d.time_ms),
                        d.purpose,
                        d.legal_basis,
                        d.bytes,
                        d.topic,
                        d.fields.join(",")
                    );
                }
            }
            Ok(())
        }
        Command::Erase { yes } => {
            if !yes {
                bail!("erase removes the owner's data on this device for good; run `camagent erase --yes` to confirm");
            }
            let _lock = camagent::agent::lock_state(state).context(
                "stop the agent first (systemctl stop camagent), or send the signed erase command",
            )?;
            // The confirmation names the id being retired; the next start uses new ones.
            let retired = camagent::agent::build_gate(&config)?.anchor_id();
            let erased = camagent::uplink::erase::wipe(state)?;
            // The next start clears every retained topic used so far, before it confirms.
            let (mut retained, damaged) =
                camagent::uplink::retained::RetainedTopics::open(state.retained_topics());
            if let Some(e) = damaged {
                eprintln!(
                    "camagent: {}; the retained messages it named cannot be cleared",
                    camagent::report::Chain(&e)
                );
            }
            retained.clear_where(|_| true)?;
            let (mut outbox, _) =
                camagent::uplink::outbox::Outbox::open(&state.outbox(), config.outbox.max_bytes)?;
            outbox.append(&camagent::uplink::erase::confirmation(
                &erased,
                &retired,
                "device command line",
                None,
            )?)?;
            if erased.is_empty() {
                println!("nothing to erase; a confirmation is queued for the cloud");
            } else {
                println!(
                    "erased: {}; a confirmation is queued for the cloud",
                    erased.join(", ")
                );
            }
            Ok(())
        }
    }
}

fn print_label(
    policy: &Policy,
    ledger: Option<&consent::Ledger>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explain::json(policy, ledger))?
        );
    } else {
        print!("{}", explain::text(policy, ledger));
    }
    Ok(())
}

fn consent_command(config: &Config, command: ConsentCommand) -> anyhow::Result<()> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let ledger = LedgerFile::new(config.agent.state().consent_ledger());
    let choice = match command {
        ConsentCommand::Show { json } => {
            let current = ledger.load()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&explain::json(&policy, Some(&current))["sends"])?
                );
                return Ok(());
            }
            println!(
                "{:<24} {:<20} {:<16} state",
                "purpose", "legal basis", "needs consent"
            );
            for p in &policy.purposes {
                let state = match (current.choice(&p.id), current.permits(p)) {
                    (Some(Choice::Given), _) => "given",
                    (Some(Choice::Withdrawn), _) => "withdrawn / objected",
                    (None, true) => "runs (no choice made)",
                    (None, false) => "off until granted",
                };
                println!(
                    "{:<24} {:<20} {:<16} {state}",
                    p.id,
                    p.legal_basis.name(),
                    if p.needs_opt_in() { "yes" } else { "no" }
                );
            }
            return Ok(());
        }
        ConsentCommand::Grant { purpose } => (purpose, Choice::Given),
        ConsentCommand::Withdraw { purpose } => (purpose, Choice::Withdrawn),
    };
    let event =
        ledger.update(|l| l.record(&policy, &choice.0, choice.1, Via::Local, consent::uuid()))?;
    println!(
        "consent {} for {} (receipt {}); the agent applies it before its next publish",
        match event.choice {
            Choice::Given => "given",
            Choice::Withdrawn => "withdrawn",
        },
        event.purpose,
        event.receipt_id
    );
    Ok(())
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

fn detect(input: &std::path::Path, motion: &camagent::config::MotionConfig) -> anyhow::Result<()> {
    use std::io::Write;
    let started = std::time::Instant::now();
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let summary = camagent::capture::detect_file(input, motion, |line| {
        if write_error.is_none() {
            if let Err(e) = serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
            {
                write_error = Some(e);
            }
        }
    })
    .with_context(|| format!("cannot analyse {}", input.display()))?;
    if let Some(e) = write_error {
        return Err(e).context("cannot write the events");
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "{} analysis frames ({:.1} s of media at {} fps, {}x{}) in {took:.2} s",
        summary.frames, summary.media_seconds, motion.fps, motion.width, motion.height
    );
    Ok(())
}

fn eval(
    dir: &std::path::Path,
    motion: &camagent::config::MotionConfig,
    json: bool,
) -> anyhow::Result<()> {
    use camagent::motion::eval::{totals, Report};
    let scores = camagent::capture::eval::evaluate_dir(dir, motion)
        .with_context(|| format!("cannot evaluate {}", dir.display()))?;
    if json {
        let report = serde_json::json!({ "clips": scores, "totals": totals(&scores) });
        println!("{report}");
    } else {
        println!("{}", Report(&scores));
    }
    Ok(())
}

fn facts(config: &Config) -> anyhow::Result<()> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let facts = config.device.read();
    // The same secrets the gate stops are not printed either: terminals end up in tickets.
    let secrets = camagent::policy::Secrets::from_facts(&facts, &policy.never_leave);
    println!("{:<24} {:<34} leaves for", "field", "value");
    for (field, value) in &facts {
        let purposes = policy.purposes_for(*field);
        let leaves = if purposes.is_empty() || policy.never_leave.contains(field) {
            "never (stays on the device)".to_owned()
        } else {
            purposes.join(", ")
        };
        let mut shown = value.to_string();
        if secrets.found_in(shown.as_bytes()) {
            shown = "(holds a secret, not shown)".into();
        }
        println!("{:<24} {shown:<34} {leaves}", field.name());
    }
    Ok(())
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
