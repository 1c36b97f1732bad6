//! `camagent consent`: show, grant or withdraw the owner's consent.

use camagent::config::Config;
use camagent::policy::consent::{self, Choice, LedgerFile, Via};
use camagent::policy::{explain, Policy};

use crate::ConsentCommand;

pub(crate) fn consent(config: &Config, command: &ConsentCommand) -> anyhow::Result<()> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let ledger = LedgerFile::new(config.agent.state().consent_ledger());
    let choice = match command {
        ConsentCommand::Show { json } => {
            let current = ledger.load()?;
            if *json {
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
        ledger.update(|l| l.record(&policy, choice.0, choice.1, Via::Local, consent::uuid()))?;
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
