//! `camagent erase`.

use anyhow::{bail, Context};

use camagent::config::Config;

/// `camagent erase`: the owner's data on the device, with the agent stopped. The agent
/// confirms to the cloud at its next start, under the device id this erase retired.
pub(crate) fn erase(config: &Config, yes: bool) -> anyhow::Result<()> {
    let state = &config.agent.state();
    if !yes {
        bail!("erase removes the owner's data on this device for good; run `camagent erase --yes` to confirm");
    }
    let _lock = camagent::agent::lock_state(state).context(
        "stop the agent first (systemctl stop camagent), or send the signed erase command",
    )?;
    // The confirmation names the id being retired; the next start uses new ones.
    let retired = camagent::agent::build_gate(config)?.anchor_id();
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
