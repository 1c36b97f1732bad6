//! Turns what the camera saw into records: alerts carry their snapshot (one message, so the
//! cloud never sees an alert whose picture does not exist), clips their manifest.

use std::collections::BTreeMap;

use serde::Deserialize;
use tracing::error;

use crate::capture::camera::{CameraEvent, SourceState};
use crate::capture::clip::ClipFile;
use crate::config::Config;
use crate::motion::{EndReason, Rect};
use crate::open_event::OpenEvent;
use crate::policy::{Field, Flow};
use crate::record::{rfc3339, Record, Value, WrongKind};
use crate::status::{CameraState, LastEvent};
use crate::uplink::mqtt::Client;
use crate::uplink::session::Session;
use crate::vocabulary::ContentType;
use crate::wire::{AlertEvent, Manifest};

/// What the camera reported last, for the status.
#[derive(Debug, Clone, Default)]
pub(super) struct CameraView {
    pub state: CameraState,
    pub last_event: Option<LastEvent>,
}

impl CameraView {
    pub fn saw(&mut self, event: &CameraEvent) {
        match event {
            CameraEvent::Source(SourceState::Running) => self.state = CameraState::Running,
            CameraEvent::Source(SourceState::Failed { reason, .. }) => {
                self.state = CameraState::Failing {
                    reason: reason.clone(),
                };
            }
            CameraEvent::MotionStart {
                event_id,
                captured_ms,
                ..
            } => {
                self.last_event = Some(LastEvent {
                    event_id: event_id.clone(),
                    time: rfc3339(*captured_ms),
                });
            }
            _ => {}
        }
    }
}

/// Queues what `event` means for the cloud.
pub(super) fn on_camera(
    session: &mut Session<Client>,
    event: CameraEvent,
    config: &Config,
    open_event: &OpenEvent,
    notifier: Option<&crate::systemd::Notifier>,
) {
    let record = match event {
        CameraEvent::MotionStart {
            event_id,
            captured_ms,
            score,
            regions,
            snapshot,
        } => {
            open_event.started(&event_id);
            let snapshot = snapshot_value(session, config, &event_id, snapshot);
            start_alert(event_id, captured_ms, score, regions, snapshot)
        }
        CameraEvent::MotionEnd {
            event_id,
            captured_ms,
            reason,
            peak_score,
        } => {
            // The note goes only once the end is in the outbox. A kill between the two finds
            // the end queued at the next start (`Running::end_event_cut_short`); the other
            // order lost the end.
            session.accept_made(end_alert(&event_id, captured_ms, reason, Some(peak_score)));
            super::fault::die_at("end-queued");
            open_event.ended();
            return;
        }
        CameraEvent::ClipGrew {
            clip_id,
            event_ids,
            fragments,
        } => {
            // The part recorded so far: its whole fragments, no hash yet.
            let bytes = fragments.last().copied().unwrap_or(0);
            let chunk_bytes = config.outbox.chunk_bytes;
            session.stream_clip(Manifest::mp4(
                clip_id,
                event_ids,
                fragments,
                bytes,
                chunk_bytes,
            ));
            return;
        }
        CameraEvent::ClipReady { event_ids, clip } => {
            let manifest = clip_manifest(clip, event_ids, config.outbox.chunk_bytes);
            match Record::clip(&manifest) {
                Ok(record) => session.deliver_clip(record, manifest),
                Err(e) => error!(clip = %manifest.clip_id, "clip not queued: {e}"),
            }
            return;
        }
        CameraEvent::Source(state) => {
            if let Some(n) = notifier {
                n.notify(&match state {
                    SourceState::Running => "STATUS=running; camera running".to_owned(),
                    SourceState::Failed { reason, retry_in } => format!(
                        "STATUS=running; camera failing ({reason}); retry in {}",
                        humantime::format_duration(retry_in)
                    ),
                });
            }
            return;
        }
    };
    session.accept_made(record);
}

/// The snapshot as the alert carries it: inline, or the manifest of its chunks.
fn snapshot_value(
    session: &mut Session<Client>,
    config: &Config,
    event_id: &str,
    snapshot: Result<Vec<u8>, String>,
) -> (Value, Option<String>) {
    match snapshot {
        Err(reason) => (Value::Unavailable(reason), None),
        // Base64 (4/3) in one message with the alert and its envelope.
        Ok(jpeg) if jpeg.len() / 3 * 4 + 4096 <= config.broker.max_packet_bytes => {
            (Value::jpeg(jpeg), None)
        }
        // Too large for one message: it goes in chunks, ahead of its alert, which carries its
        // manifest.
        Ok(jpeg) => match chunked_snapshot(session, config, event_id, &jpeg) {
            Ok(manifest) => (Value::structured(&manifest), Some(manifest.clip_id)),
            Err(e) => (
                Value::Unavailable(format!("snapshot not stored: {e}")),
                None,
            ),
        },
    }
}

/// The alert that starts event `event_id`, with its snapshot and the upload it awaits.
fn start_alert(
    event_id: String,
    captured_ms: u64,
    score: f32,
    regions: Vec<Rect>,
    (snapshot, awaits): (Value, Option<String>),
) -> Result<Record, WrongKind> {
    let event = AlertEvent::Start {
        event_id,
        time: rfc3339(captured_ms),
        score,
        regions,
    };
    let mut record = Record::new(
        Flow::Alarm,
        BTreeMap::from([
            (Field::EventData, Value::structured(&event)),
            (Field::Snapshot, snapshot),
        ]),
    )?;
    record.awaits = awaits;
    Ok(record)
}

/// Whether `record` is the alert that ends event `event_id`.
pub(super) fn ends(record: &Record, event_id: &str) -> bool {
    let Some(Value::Json(data)) = record.fields.get(&Field::EventData) else {
        return false;
    };
    matches!(
        AlertEvent::deserialize(data),
        Ok(AlertEvent::End { event_id: id, .. }) if id == event_id
    )
}

/// The alert that ends event `event_id`.
pub(super) fn end_alert(
    event_id: &str,
    captured_ms: u64,
    reason: EndReason,
    peak_score: Option<f32>,
) -> Result<Record, WrongKind> {
    let event = AlertEvent::End {
        event_id: event_id.to_owned(),
        time: rfc3339(captured_ms),
        reason,
        peak_score,
    };
    Record::new(
        Flow::Alarm,
        BTreeMap::from([(Field::EventData, Value::structured(&event))]),
    )
}

fn clip_manifest(clip: ClipFile, event_ids: Vec<String>, chunk_bytes: u32) -> Manifest {
    Manifest {
        duration_ms: clip.duration.as_millis() as u64,
        sha256: clip.sha256,
        cut_short: clip.cut_short,
        ..Manifest::mp4(clip.id, event_ids, clip.fragments, clip.bytes, chunk_bytes)
    }
}

/// Stores a snapshot too large for one message beside the clips and starts its upload.
fn chunked_snapshot(
    session: &mut Session<Client>,
    config: &Config,
    event_id: &str,
    jpeg: &[u8],
) -> std::io::Result<Manifest> {
    let chunk_bytes = config.outbox.chunk_bytes;
    let digest = ring::digest::digest(&ring::digest::SHA256, jpeg);
    let manifest = Manifest {
        clip_id: format!("{event_id}-snapshot"),
        content_type: ContentType::Jpeg,
        bytes: jpeg.len() as u64,
        duration_ms: 0,
        sha256: crate::hex::encode(digest.as_ref()),
        chunk_bytes,
        chunks: Manifest::chunk_count(jpeg.len() as u64, chunk_bytes),
        event_ids: vec![event_id.to_owned()],
        fragments: Vec::new(),
        cut_short: false,
    };
    let dir = config.agent.state().clips();
    std::fs::create_dir_all(&dir)?;
    crate::durable::write_atomic(&manifest.path_in(&dir), jpeg)?;
    session.upload(manifest.clone());
    Ok(manifest)
}
