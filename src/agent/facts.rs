//! The device facts the agent reports: at start and every `agent.facts_interval` (activation,
//! location), and health with every telemetry tick.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::error;

use crate::device::FactSources;
use crate::policy::{Field, Flow};
use crate::record::{Record, Value, WrongKind};

/// Health: uptime, firmware and that the agent runs.
pub(super) fn telemetry_record(sources: &FactSources) -> Result<Record, WrongKind> {
    Record::new(
        Flow::Telemetry,
        BTreeMap::from([
            (Field::Uptime, sources.read_one(Field::Uptime)),
            (
                Field::FirmwareVersion,
                sources.read_one(Field::FirmwareVersion),
            ),
            (Field::OnlineStatus, Value::Text("online".into())),
        ]),
    )
}

/// Reports the device facts at start and then every `interval`.
pub(super) async fn report_facts(
    sources: FactSources,
    interval: Duration,
    records: mpsc::Sender<Record>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let facts = sources.read();
        let location: BTreeMap<Field, Value> = facts
            .iter()
            .filter(|(f, _)| matches!(f, Field::Location | Field::Country))
            .map(|(f, v)| (*f, v.clone()))
            .collect();
        for (flow, fields) in [(Flow::Activation, facts), (Flow::Location, location)] {
            if flow == Flow::Location && fields.is_empty() {
                continue;
            }
            match Record::new(flow, fields) {
                Ok(record) => {
                    if records.send(record).await.is_err() {
                        return;
                    }
                }
                Err(e) => error!("device facts not reported: {e}"),
            }
        }
    }
}
