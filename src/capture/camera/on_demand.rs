//! The camera's side of decoding on demand: each unit goes through the planner, and what it
//! picks goes to the detector's decoder.

use std::time::Duration;

use gstreamer as gst;

use super::Camera;
use crate::capture::elements::unit_cue;
use crate::capture::on_demand::{Mode, SliceKind, UnitCue};
use crate::capture::pipeline::Graph;

impl Camera {
    /// Hands the detector's decoder what the planner picks, when it decodes on demand.
    pub(super) fn feed_decoder(&mut self, graph: &Graph, sample: &gst::Sample) {
        let (Some(feed), Some(buffer)) = (graph.decoder.get(), sample.buffer()) else {
            return;
        };
        // A stream's own idea of a keyframe counts too (an I-frame with a recovery point).
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let cue = match unit_cue(buffer, sample.caps()) {
            Some(cue) => UnitCue {
                keyframe: cue.keyframe || keyframe,
                ..cue
            },
            // Unreadable: weighed as a unit of no kind, decoded if anything is.
            None => UnitCue {
                keyframe,
                kind: SliceKind::Other,
                reference: true,
                bytes: buffer.size(),
            },
        };
        let mode = self.planner.mode();
        let time = buffer.pts().map(Duration::from);
        let picked = self.planner.push(cue, time, sample.clone()).decode;
        if self.planner.mode() != mode {
            self.log_decoding(&format!(
                "a cue of motion, {} units to catch up",
                picked.len()
            ));
        }
        for unit in picked {
            if let Err(e) = feed.push_sample(&unit) {
                // Only while the pipeline stops.
                tracing::debug!("the decoder took no unit: {e:?}");
                return;
            }
        }
    }

    /// Tells the planner what the detector made of the frame at `time`, when it decodes on
    /// demand.
    pub(super) fn scene(&mut self, graph: &Graph, time: Duration, busy: bool) {
        if graph.decoder.get().is_none() {
            return;
        }
        let mode = self.planner.mode();
        self.planner.scene(time, busy);
        if self.planner.mode() != mode {
            self.log_decoding(if busy {
                "motion on a keyframe"
            } else {
                "the scene is still"
            });
        }
    }

    fn log_decoding(&self, why: &str) {
        let (units, decoded) = self.planner.counts();
        let decoding = match self.planner.mode() {
            Mode::Idle => "keyframes only",
            Mode::Active => "every unit",
        };
        tracing::debug!(units, decoded, "{why}: decoding {decoding}");
    }

    /// The source's units ended: so does what the decoder gets.
    pub(super) fn end_decoder(&self, graph: &Graph) {
        if let Some(feed) = graph.decoder.get() {
            let (units, decoded) = self.planner.counts();
            tracing::debug!(units, decoded, "the source's units ended");
            let _ = feed.end_of_stream();
        }
    }
}
