//! What the session says about the device and itself: the retained online status (with the
//! agent's state, where the policy lets it), the local status for `camagent status`, and the
//! usage counters.

use tracing::debug;

use super::link::Link;
use super::session::Session;
use super::window::Sent;
use crate::policy::{Field, Flow};
use crate::record::{Record, WrongKind};
use crate::wire::payload::UsageStatistics;

/// The retained status is republished when the agent's state changes, at most this often.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl<L: Link> Session<L> {
    /// The uplink's part of the status; the agent adds the camera's.
    pub fn status(&self) -> crate::status::Status {
        crate::status::Status {
            connected: self.connected,
            outbox_records: self.outbox.len(),
            outbox_bytes: self.outbox.bytes(),
            uploads: self
                .stores
                .uploads
                .iter()
                .map(|p| crate::status::UploadStatus {
                    clip_id: p.manifest.clip_id.clone(),
                    bytes: p.manifest.bytes,
                    chunks: p.manifest.chunks,
                    acknowledged: p.acked.len() as u32,
                })
                .collect(),
            delivered: self.stats.delivered,
            clips_delivered: self.stats.clips_delivered,
            clips_evicted: self.stats.clips_evicted,
            refused: self.stats.refused,
            quarantined: self.outbox.quarantined() + self.stores.uploads.damaged(),
            reconnects: self.stats.reconnects,
            ..Default::default()
        }
    }

    /// Counters of the agent's own activity, for the usage-statistics flow.
    pub fn usage(&self) -> Result<Record, WrongKind> {
        Record::json(
            Flow::UsageStatistics,
            Field::UsageStatistics,
            &UsageStatistics {
                records_delivered: self.stats.delivered,
                records_refused: self.stats.refused,
                reconnects: self.stats.reconnects,
                outbox_depth: self.outbox.len() as u64,
            },
        )
    }

    /// Takes the agent's current state; the retained status carries it (where the policy
    /// lets it) when it changed, at most every [`STATUS_EVERY`].
    pub fn report_status(&mut self, state: serde_json::Value) {
        let permitted = self
            .gate
            .policy()
            .purpose_for_flow(Flow::Status)
            .is_some_and(|p| p.fields.contains(&Field::AgentStatus));
        self.agent_status = Some(state.clone());
        let due = match &self.agent_status_sent {
            Some((sent, at)) => *sent != state && at.elapsed() >= STATUS_EVERY,
            None => true,
        };
        if permitted && due && self.connected {
            self.publish_status(true);
        }
    }

    pub(super) fn publish_status(&mut self, online: bool) {
        let mut record = Record::status(online);
        if let (true, Some(state)) = (online, &self.agent_status) {
            record.fields.insert(
                Field::AgentStatus,
                crate::record::Value::Json(state.clone()),
            );
            self.agent_status_sent = Some((state.clone(), std::time::Instant::now()));
        }
        match self.gate.admit(&record, None) {
            Ok(admitted) => {
                if self.hand_over(&admitted) {
                    self.window.handed(Sent::Status);
                }
            }
            Err(refusal) => debug!("no status published: {refusal}"),
        }
    }
}
