//! The agent's status as the owner or a support tool sees it locally (`camagent status`):
//! connection, what waits to go up, uploads in progress, evictions, the camera, the last event.
//! The daemon rewrites `status.json` in its state directory when something changed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::report::Chain;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub connected: bool,
    pub outbox_records: usize,
    pub outbox_bytes: u64,
    pub uploads: Vec<UploadStatus>,
    pub delivered: u64,
    pub clips_delivered: u64,
    pub clips_evicted: u64,
    pub refused: u64,
    /// Damaged outbox entries (`outbox/quarantine/`) and upload manifests (`clips/*.damaged`)
    /// kept aside, never sent.
    #[serde(default)]
    pub quarantined: u64,
    pub reconnects: u64,
    pub camera: CameraState,
    pub last_event: Option<LastEvent>,
}

/// What the camera is doing. Written `starting`, `running`, `failing: <reason>`, `stopped`,
/// or `none` without `[capture]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum CameraState {
    #[default]
    None,
    Starting,
    Running,
    Failing {
        reason: String,
    },
    Stopped,
}

impl CameraState {
    /// The state without its reason, which may name local paths.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Failing { .. } => "failing",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for CameraState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failing { reason } => write!(f, "failing: {reason}"),
            other => f.write_str(other.kind()),
        }
    }
}

impl From<CameraState> for String {
    fn from(state: CameraState) -> Self {
        state.to_string()
    }
}

impl From<String> for CameraState {
    fn from(text: String) -> Self {
        match text.as_str() {
            "starting" => Self::Starting,
            "running" => Self::Running,
            "stopped" => Self::Stopped,
            _ => match text.strip_prefix("failing") {
                Some(reason) => Self::Failing {
                    reason: reason.trim_start_matches(':').trim().to_owned(),
                },
                None => Self::None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadStatus {
    pub clip_id: String,
    pub bytes: u64,
    pub chunks: u32,
    pub acknowledged: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastEvent {
    pub event_id: String,
    /// RFC 3339 time of its first moving frame.
    pub time: String,
}

impl Status {
    /// What the retained status message carries: the same, without the connection (the
    /// message's own `online_status` says it) and with the camera's state but not its reason
    /// (which may name local paths).
    pub fn for_cloud(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.remove("connected");
            map.insert("camera".into(), self.camera.kind().into());
        }
        value
    }
}

/// The status file is rewritten at most this often while the agent runs.
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Writes the status when it differs from the last one written, at most every
/// [`WRITE_EVERY`] and without fsync: it is a view of the present, not a record.
pub struct StatusFile {
    path: PathBuf,
    last: Option<(Status, Instant)>,
}

impl StatusFile {
    /// The status at `path` (`StateDir::status`).
    pub fn new(path: PathBuf) -> Self {
        Self { path, last: None }
    }

    /// Writes `status` if it changed and the last write is old enough.
    pub fn update(&mut self, status: Status) {
        match &self.last {
            Some((last, _)) if *last == status => {}
            Some((_, at)) if at.elapsed() < WRITE_EVERY => {}
            _ => self.write(status),
        }
    }

    /// Writes `status` now (the last one, at shutdown).
    pub fn write(&mut self, status: Status) {
        let bytes = serde_json::to_vec_pretty(&status).unwrap_or_default();
        if let Err(e) = crate::durable::write_sealed_unsynced(&self.path, &bytes) {
            tracing::warn!(file = %self.path.display(), "cannot write the status: {}", Chain(&e));
        }
        self.last = Some((status, Instant::now()));
    }
}

/// The status a running (or the last) agent wrote at `path`.
pub fn read(path: &Path) -> std::io::Result<Status> {
    let bytes = crate::durable::read_sealed(path).map_err(|e| match e {
        crate::durable::SealedError::Io(e) => e,
        damaged => std::io::Error::other(damaged),
    })?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_camera_state_reads_back_as_written() {
        for state in [
            CameraState::None,
            CameraState::Starting,
            CameraState::Running,
            CameraState::Failing {
                reason: "rtsp://cam: 404: not found".into(),
            },
            CameraState::Stopped,
        ] {
            assert_eq!(CameraState::from(String::from(state.clone())), state);
        }
    }

    #[test]
    fn the_cloud_sees_the_camera_failing_but_not_why() {
        let status = Status {
            connected: true,
            camera: CameraState::Failing {
                reason: "/dev/video0: no such device".into(),
            },
            ..Status::default()
        };
        let cloud = status.for_cloud();
        assert_eq!(cloud["camera"], "failing");
        assert!(cloud.get("connected").is_none());
        assert!(!cloud.to_string().contains("video0"));
    }
}
