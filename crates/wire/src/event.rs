//! `event_data`: what an alarm or clip record says about the motion event(s) it belongs to.

use serde::{Deserialize, Serialize};

use camagent_motion::{EndReason, Rect};

/// An alarm's event data: the event started or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum AlertEvent {
    Start {
        event_id: String,
        /// RFC 3339 time of the first moving frame.
        time: String,
        score: f32,
        /// Where the motion was, in fractions of the frame.
        regions: Vec<Rect>,
    },
    End {
        event_id: String,
        /// RFC 3339 time of the last moving frame (or of the restart that found it cut short).
        time: String,
        reason: EndReason,
        /// Unknown for an event cut short.
        peak_score: Option<f32>,
    },
}

/// A clip's event data: the events it covers (an event starting during the previous one's
/// post-roll extends its clip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipEvents {
    pub event_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_events_keep_the_contract_s_shape() {
        let start = AlertEvent::Start {
            event_id: "e1".into(),
            time: "2026-01-01T00:00:00.000Z".into(),
            score: 0.5,
            regions: vec![Rect::FULL],
        };
        assert_eq!(
            serde_json::to_value(&start).unwrap(),
            serde_json::json!({
                "event_id": "e1", "phase": "start", "time": "2026-01-01T00:00:00.000Z",
                "score": 0.5, "regions": [{"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0}],
            })
        );
        let end = AlertEvent::End {
            event_id: "e1".into(),
            time: "t".into(),
            reason: EndReason::CutShort,
            peak_score: None,
        };
        assert_eq!(
            serde_json::to_value(&end).unwrap(),
            serde_json::json!({
                "event_id": "e1", "phase": "end", "time": "t",
                "reason": "cut_short", "peak_score": null,
            })
        );
    }
}
