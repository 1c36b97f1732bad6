//! Kills at random moments of motion events, and what the cloud then holds: shared by the
//! evidence tests (which assert on it) and `cargo bench --bench evidence` (which reports it).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::{sha256_hex, wait_for, Agent, Message, Subscriber, PATIENCE};

/// What the cloud holds after a run of kills.
pub struct KillRun {
    /// Events whose start alert arrived.
    pub started: BTreeSet<String>,
    /// Events whose end alert arrived.
    pub ended: BTreeSet<String>,
    /// The clips that arrived whole and match their manifest's SHA-256: manifest and bytes.
    pub clips: Vec<(serde_json::Value, Vec<u8>)>,
    /// Events no verified clip covers.
    pub without_footage: BTreeSet<String>,
    /// Records the agent's disclosure log shows as sent, and those that never reached the
    /// cloud.
    pub records_sent: usize,
    pub records_missing: usize,
    /// The agents' logs, for a failure's message.
    pub logs: String,
}

fn event(m: &Message) -> (String, String) {
    let data = &m.json()["fields"]["event_data"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    (text(&data["phase"]), text(&data["event_id"]))
}

fn events(cloud: &Subscriber, phase: &str) -> BTreeSet<String> {
    cloud
        .on("/alarm")
        .iter()
        .map(event)
        .filter(|(p, _)| p == phase)
        .map(|(_, id)| id)
        .collect()
}

/// Clips verified at the cloud and the events they cover.
fn verified(cloud: &Subscriber) -> (Vec<(serde_json::Value, Vec<u8>)>, BTreeSet<String>) {
    let mut clips = Vec::new();
    let mut covered = BTreeSet::new();
    for record in cloud.on("/clip") {
        let manifest = record.json()["fields"]["clip"].clone();
        let Some(bytes) = cloud.clip(&manifest) else {
            continue;
        };
        if sha256_hex(&bytes) != manifest["sha256"] {
            continue;
        }
        let ids = manifest["event_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        covered.extend(ids.iter().filter_map(|id| id.as_str().map(str::to_owned)));
        clips.push((manifest, bytes));
    }
    (clips, covered)
}

/// Runs the agent on `config` (its directory `agent_dir`; a camera whose events come every few seconds) and SIGKILLs
/// it `kills` times, each at a random moment 2.5–5 s after an event's start alert reached
/// `cloud` (inside the event or its clip's post-roll), restarting it each time; then waits
/// until every event that started has its footage and its end at the cloud, or gives up.
pub fn kill_during_events(
    bin: &str,
    config: &Path,
    agent_dir: &Path,
    cloud: &Subscriber,
    kills: usize,
    seed: u64,
) -> KillRun {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut agent = Agent::start(bin, config);
    let mut logs = String::new();
    for kill in 0..kills {
        let seen = events(cloud, "start").len();
        if wait_for(PATIENCE, || {
            (events(cloud, "start").len() > seen).then_some(())
        })
        .is_none()
        {
            panic!("no event before kill {kill}; agent log:\n{}", agent.log());
        }
        std::thread::sleep(Duration::from_millis(rng.u64(2500..5000)));
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();
        logs.push_str(&agent.log());
        agent = Agent::start(bin, config);
    }
    let started = events(cloud, "start");
    let settled = || {
        let (_, covered) = verified(cloud);
        (started.is_subset(&covered) && started.is_subset(&events(cloud, "end"))).then_some(())
    };
    let _ = wait_for(PATIENCE * 3, settled);
    logs.push_str(&agent.log());
    let (clips, covered) = verified(cloud);
    // Every record the agent's disclosure log shows as sent by now must reach the cloud; the
    // newest may still be on their way (the agent runs on).
    let seqs = |lines: Vec<serde_json::Value>| -> BTreeSet<u64> {
        lines.iter().filter_map(|l| l["seq"].as_u64()).collect()
    };
    let log = camagent::state_dir::StateDir::new(agent_dir.join("state")).disclosure_log();
    let disclosed = seqs(
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
    );
    let missing = || {
        let received = seqs(
            cloud
                .snapshot()
                .iter()
                .filter_map(|m| serde_json::from_slice(&m.payload).ok())
                .collect(),
        );
        disclosed.difference(&received).count()
    };
    let _ = wait_for(PATIENCE, || (missing() == 0).then_some(()));
    KillRun {
        without_footage: started.difference(&covered).cloned().collect(),
        ended: events(cloud, "end"),
        started,
        clips,
        records_sent: disclosed.len(),
        records_missing: missing(),
        logs,
    }
}
