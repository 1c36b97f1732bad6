//! The camera's recording side: every encoded unit goes through the pre-roll ring, and what
//! the recorder decides (open, write, close) is carried out on the clip writer.

use gstreamer as gst;
use tracing::{info, warn};

use super::input::running_time;
use super::Camera;
use crate::capture::clip::ClipWriter;
use crate::capture::recorder::{Output, Unit};
use crate::report::Chain;

impl Camera {
    pub(super) fn unit(&mut self, sample: gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        // Running time, not the buffer's own: encoders shift their timestamps (x264enc by
        // 1000 hours, to keep decode times positive) and say so in the segment.
        let time = running_time(&sample, buffer.dts_or_pts());
        let unit = Unit {
            time: self.offset + time,
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            payload: sample.clone(),
        };
        let out = self.recorder.push(unit);
        self.record(out);
    }

    /// Carries out what the recorder decided.
    pub(super) fn record(&mut self, outputs: Vec<Output<gst::Sample>>) {
        for output in outputs {
            match output {
                Output::Open => {
                    tracing::debug!(ring = ?self.recorder.span(), "clip opens");
                    self.writer = None;
                    self.clip_part = 0;
                }
                Output::Continue => {
                    // The clip before reached its maximum length: this one goes on with the
                    // event it ended in, under an id of its own.
                    self.writer = None;
                    if let Some(event) = self.last_clip_event.clone() {
                        self.clip_part += 1;
                        self.clip_events = vec![event];
                    }
                }
                Output::Write(unit) => {
                    if self.writer.is_none() {
                        tracing::debug!(first = ?unit.time, "clip's first unit");
                    }
                    self.write(&unit.payload)
                }
                Output::Close => self.close_clip(),
            }
        }
    }

    fn write(&mut self, sample: &gst::Sample) {
        let changed = |writer: &mut ClipWriter| sample.caps().is_some_and(|c| !writer.takes(c));
        if let Some(writer) = self.writer.take_if(changed) {
            info!(
                clip = writer.id(),
                "the camera changed its stream's parameters; the event goes on in a new clip"
            );
            self.finisher.finish(self.clip_events.clone(), writer);
            self.clip_part += 1;
        }
        if self.writer.is_none() {
            let Some(first) = self.clip_events.first() else {
                return;
            };
            let Some(caps) = sample.caps() else {
                return;
            };
            let id = match self.clip_part {
                0 => first.clone(),
                part => format!("{first}-{part}"),
            };
            match ClipWriter::open(&self.clips_dir, &id, &caps.to_owned(), &self.clip_events) {
                Ok(w) => self.writer = Some(w),
                Err(e) => {
                    warn!("cannot start the clip: {}", Chain(&e));
                    self.clip_events.clear();
                    return;
                }
            }
        }
        if let Some(writer) = &mut self.writer {
            if let Err(e) = writer.write(sample) {
                warn!("clip abandoned: {}", Chain(&e));
                self.writer = None;
                self.clip_events.clear();
            } else if writer.sync_due() {
                self.finisher.sync(writer, &self.clip_events);
            }
        }
    }

    /// Hands the clip to the finisher, off the camera thread.
    fn close_clip(&mut self) {
        let event_ids = std::mem::take(&mut self.clip_events);
        self.last_clip_event = event_ids.last().cloned();
        if let Some(writer) = self.writer.take() {
            self.finisher.finish(event_ids, writer);
        }
    }
}
