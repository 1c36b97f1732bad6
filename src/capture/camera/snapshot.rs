//! The camera's snapshots: the picture the detector saw move, or, with a detection stream and
//! `snapshot.stream = "main"`, the main stream's picture of that moment.

use std::time::Duration;

use gstreamer as gst;

use super::input::running_time;
use super::Camera;
use crate::capture::pipeline::Graph;
use crate::capture::snapshot::{JpegEncoder, MainPicture};
use crate::capture::CaptureError;
use crate::config::capture::SnapshotStream;

impl Camera {
    /// The picture at `at` (camera time), as a JPEG at the snapshot size.
    pub(super) fn snapshot(
        &mut self,
        graph: &Graph,
        at: Duration,
    ) -> Result<Vec<u8>, CaptureError> {
        let picture = if self.snapshots_main_stream() {
            self.main_picture(at)?
        } else {
            graph
                .newest
                .try_pull_sample(gst::ClockTime::ZERO)
                .ok_or_else(|| CaptureError::Pipeline("no picture to take".into()))?
        };
        let jpeg = match &mut self.jpeg {
            Some(jpeg) => jpeg,
            jpeg => jpeg.insert(JpegEncoder::new(&self.capture.snapshot)?),
        };
        jpeg.encode(&picture)
    }

    /// Whether snapshots come from the main stream: only when another stream is analysed.
    fn snapshots_main_stream(&self) -> bool {
        self.capture.snapshot.stream == SnapshotStream::Main
            && self.capture.source.has_detection_stream()
    }

    /// The main stream's picture at `at`, decoded from the pre-roll ring.
    fn main_picture(&mut self, at: Duration) -> Result<gst::Sample, CaptureError> {
        let decoder = match &mut self.main_picture {
            Some(decoder) => decoder,
            decoder => decoder.insert(MainPicture::new()?),
        };
        let offset = self.offset;
        let started = std::time::Instant::now();
        let units: Vec<_> = self.recorder.group_at(at).collect();
        let count = units.len();
        let picture = decoder.at(units, at, |picture| {
            offset + running_time(picture, picture.buffer().and_then(|b| b.pts()))
        })?;
        tracing::debug!(units = count, took = ?started.elapsed(), "the main stream's picture decoded");
        Ok(picture)
    }
}
