//! The read-only commands: what the device holds, may send, has sent, and is doing.

use std::path::Path;

use anyhow::Context;

use camagent::config::Config;
use camagent::policy::consent::{self, LedgerFile};
use camagent::policy::disclosure::DisclosureLog;
use camagent::policy::{explain, Policy};
use camagent::record::rfc3339;

pub(crate) fn facts(config: &Config) -> anyhow::Result<()> {
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

/// `camagent status`: what the running (or the last) agent wrote.
pub(crate) fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let state = &config.agent.state();
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
        println!(
            "delivered   {} records, {} clips ({} clips evicted unsent, {} records refused)",
            s.delivered, s.clips_delivered, s.clips_evicted, s.refused
        );
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

/// `camagent disclosures`: what the device has sent.
pub(crate) fn disclosures(config: &Config, json: bool) -> anyhow::Result<()> {
    let state = &config.agent.state();
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

pub(crate) fn print_label(
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

/// `camagent policy check FILE`.
pub(crate) fn policy_check(file: &Path) -> anyhow::Result<()> {
    let policy = Policy::load(file)?;
    println!(
        "{}: valid — policy {:?} version {}, {} purposes",
        file.display(),
        policy.name,
        policy.version,
        policy.purposes.len()
    );
    Ok(())
}

/// `camagent policy explain`: the configured policy, with the owner's choices.
pub(crate) fn label(config: &Config, json: bool) -> anyhow::Result<()> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let ledger = LedgerFile::new(config.agent.state().consent_ledger()).load()?;
    print_label(&policy, Some(&ledger), json)
}
