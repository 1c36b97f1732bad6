//! The pre-roll ring and clip cutting, over encoded access units. Pure: units and event
//! boundaries in, what to write out.
//!
//! The ring always starts at a keyframe and holds at least `preroll + hold` behind the
//! detector's progress: the newest frame it has analysed, or the newest unit until it has
//! analysed one. A detector that lags (catching up from a keyframe after a cue, or on a loaded
//! board) still finds its pre-roll in the ring; one that stalls is followed no further than
//! `max_lag` behind the newest unit, so the ring stays bounded.
//!
//! A clip starts at the last keyframe at or before `event start − preroll` and ends at
//! `event end + postroll`. The end is only known `gap` after the last motion (the event
//! machine needs a quiet gap to declare it), so while recording, units are written only once
//! the detector is `hold` past them: when the end comes, nothing past `end + postroll` has
//! been written. Memory stays at about `preroll + hold` of video, plus the detector's lag,
//! however long the event runs.
//!
//! However events chain (each starting in the last one's post-roll extends its clip), a clip
//! ends before it would pass `max_clip`, and the next one goes on from that keyframe: the
//! recording stays whole, cut into clips that can each be delivered.

use std::collections::VecDeque;
use std::time::Duration;

/// One encoded access unit. `time` is its decode time (monotonic in stream order).
#[derive(Debug, Clone, PartialEq)]
pub struct Unit<T> {
    pub time: Duration,
    pub keyframe: bool,
    pub payload: T,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Output<T> {
    /// Start a clip; the writes that follow belong to it, the first is a keyframe.
    Open,
    /// Start a clip that goes on from the one just closed at its maximum length.
    Continue,
    Write(Unit<T>),
    /// The clip is complete.
    Close,
}

#[derive(Debug, Clone, Copy)]
pub struct RecorderConfig {
    pub preroll: Duration,
    pub postroll: Duration,
    /// How late an event's end can be declared after its last motion (the event gap).
    pub hold: Duration,
    /// The longest a clip may run, from its first unit to its last.
    pub max_clip: Duration,
    /// How far behind the newest unit the detector's progress is still waited for.
    pub max_lag: Duration,
}

#[derive(Debug)]
struct Recording {
    /// Index in the ring of the next unit to write.
    next: usize,
    /// Set when the event ended: the last media time the clip includes.
    until: Option<Duration>,
    /// The time of the clip's first unit, and of the last keyframe written.
    first: Option<Duration>,
    last_key: Option<Duration>,
}

impl Recording {
    fn new(next: usize) -> Self {
        Self {
            next,
            until: None,
            first: None,
            last_key: None,
        }
    }

    /// Writes `unit` (the one at `next`). At a keyframe, the clip closes first if taking
    /// this group of pictures, as long as the one before, would pass `max`; the next clip
    /// goes on from the keyframe.
    fn write<T: Clone>(&mut self, unit: &Unit<T>, max: Duration, out: &mut Vec<Output<T>>) {
        if unit.keyframe {
            if let (Some(first), Some(last_key)) = (self.first, self.last_key) {
                if unit.time.saturating_sub(first) + unit.time.saturating_sub(last_key) > max {
                    out.push(Output::Close);
                    out.push(Output::Continue);
                    self.first = None;
                }
            }
            self.last_key = Some(unit.time);
        }
        self.first.get_or_insert(unit.time);
        out.push(Output::Write(unit.clone()));
        self.next += 1;
    }
}

#[derive(Debug)]
pub struct Recorder<T> {
    config: RecorderConfig,
    ring: VecDeque<Unit<T>>,
    recording: Option<Recording>,
    /// The media time of the newest frame the detector has analysed.
    analysed: Option<Duration>,
}

impl<T: Clone> Recorder<T> {
    pub fn new(config: RecorderConfig) -> Self {
        Self {
            config,
            ring: VecDeque::new(),
            recording: None,
            analysed: None,
        }
    }

    pub fn recording(&self) -> bool {
        self.recording.is_some()
    }

    /// The media time the ring covers, oldest to newest.
    pub fn span(&self) -> Option<(Duration, Duration)> {
        Some((self.ring.front()?.time, self.ring.back()?.time))
    }

    /// The units a decoder needs for the pictures up to `at`, in decode order: from the last
    /// keyframe at or before it (the ring's first unit when none is) to the last unit decoded
    /// by then. A picture is decoded no later than it is shown, so no unit after that is
    /// needed.
    pub fn group_at(&self, at: Duration) -> impl Iterator<Item = &T> {
        let start = self
            .ring
            .iter()
            .rposition(|u| u.keyframe && u.time <= at)
            .unwrap_or(0);
        self.ring
            .range(start..)
            .enumerate()
            .take_while(move |(i, u)| *i == 0 || u.time <= at)
            .map(|(_, u)| &u.payload)
    }

    /// Takes the next unit. Units before the first keyframe are dropped: a clip cannot start
    /// with them.
    pub fn push(&mut self, unit: Unit<T>) -> Vec<Output<T>> {
        if self.ring.is_empty() && !unit.keyframe {
            return Vec::new();
        }
        self.ring.push_back(unit);
        let out = self.flush();
        self.trim();
        out
    }

    /// The detector has analysed the frame at `at`: what is `hold` behind it may be written,
    /// and what is more than `preroll + hold` behind it may go.
    pub fn analysed(&mut self, at: Duration) -> Vec<Output<T>> {
        self.analysed = Some(at);
        let out = self.flush();
        self.trim();
        out
    }

    /// The moment the ring's keeping and the clip's writing are measured from: the detector's
    /// progress, bounded by the newest unit and by `max_lag` behind it.
    fn reference(&self) -> Option<Duration> {
        let newest = self.ring.back()?.time;
        Some(self.analysed.map_or(newest, |at| {
            at.clamp(newest.saturating_sub(self.config.max_lag), newest)
        }))
    }

    /// Motion started at `at`: open a clip with the pre-roll — or, if the last event's clip
    /// is still taking its post-roll, extend that clip to cover this event too.
    pub fn start(&mut self, at: Duration) -> Vec<Output<T>> {
        if let Some(r) = &mut self.recording {
            r.until = None;
            return Vec::new();
        }
        let from = at.saturating_sub(self.config.preroll);
        let next = self
            .ring
            .iter()
            .rposition(|u| u.keyframe && u.time <= from)
            .unwrap_or(0);
        self.recording = Some(Recording::new(next));
        let mut out = vec![Output::Open];
        out.extend(self.flush());
        out
    }

    /// Motion ended at `at`: the clip takes the post-roll and closes.
    pub fn end(&mut self, at: Duration) -> Vec<Output<T>> {
        match &mut self.recording {
            Some(r) => r.until = Some(at + self.config.postroll),
            None => return Vec::new(),
        }
        self.flush()
    }

    /// The source stopped: write what the clip has and close it.
    pub fn finish(&mut self) -> Vec<Output<T>> {
        let mut out = Vec::new();
        if let Some(mut r) = self.recording.take() {
            while let Some(unit) = self.ring.get(r.next) {
                if r.until.is_some_and(|t| unit.time > t) {
                    break;
                }
                r.write(unit, self.config.max_clip, &mut out);
            }
            out.push(Output::Close);
        }
        self.ring.clear();
        self.analysed = None;
        out
    }

    /// Writes what the recording may write now, and closes it once past its end.
    fn flush(&mut self) -> Vec<Output<T>> {
        let mut out = Vec::new();
        let Some(reference) = self.reference() else {
            return out;
        };
        let Some(r) = &mut self.recording else {
            return out;
        };
        while let Some(unit) = self.ring.get(r.next) {
            match r.until {
                Some(until) if unit.time > until => {
                    self.recording = None;
                    out.push(Output::Close);
                    return out;
                }
                Some(_) => {}
                None if reference.saturating_sub(unit.time) < self.config.hold => break,
                None => {}
            }
            r.write(unit, self.config.max_clip, &mut out);
        }
        out
    }

    /// Drops what neither the pre-roll nor the running clip needs, keyframe by keyframe.
    fn trim(&mut self) {
        let Some(reference) = self.reference() else {
            return;
        };
        let keep_from = reference.saturating_sub(self.config.preroll + self.config.hold);
        let limit = self.recording.as_ref().map_or(usize::MAX, |r| r.next);
        let cut = self
            .ring
            .iter()
            .enumerate()
            .skip(1)
            .take_while(|(i, u)| *i <= limit && u.time <= keep_from)
            .filter(|(_, u)| u.keyframe)
            .map(|(i, _)| i)
            .last();
        if let Some(cut) = cut {
            self.ring.drain(..cut);
            if let Some(r) = &mut self.recording {
                r.next -= cut;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPS: u64 = 10;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Frame `n` at 10 fps, a keyframe every second.
    fn unit(n: u64) -> Unit<u64> {
        Unit {
            time: ms(n * 1000 / FPS),
            keyframe: n.is_multiple_of(FPS),
            payload: n,
        }
    }

    fn recorder() -> Recorder<u64> {
        Recorder::new(RecorderConfig {
            preroll: ms(2000),
            postroll: ms(1500),
            hold: ms(3000),
            max_clip: ms(60_000),
            max_lag: ms(5000),
        })
    }

    /// Feeds frames `range`, calling `at(frame)` before each for boundaries.
    fn run(
        r: &mut Recorder<u64>,
        range: std::ops::Range<u64>,
        mut at: impl FnMut(&mut Recorder<u64>, u64) -> Vec<Output<u64>>,
    ) -> Vec<Output<u64>> {
        let mut out = Vec::new();
        for n in range {
            out.extend(at(r, n));
            out.extend(r.push(unit(n)));
        }
        out
    }

    #[test]
    fn the_group_at_a_moment_runs_from_its_keyframe_to_the_last_unit_decoded_by_then() {
        let mut r = recorder();
        run(&mut r, 0..35, |_, _| Vec::new());
        let group = |r: &Recorder<u64>, at| r.group_at(at).copied().collect::<Vec<_>>();
        // Frame 25 (2.5 s) is in the group of keyframe 20.
        assert_eq!(group(&r, ms(2500)), (20..=25).collect::<Vec<_>>());
        // A keyframe's own moment is the keyframe alone.
        assert_eq!(group(&r, ms(3000)), vec![30]);
        // Past the newest unit: up to it.
        assert_eq!(group(&r, ms(9000)), (30..35).collect::<Vec<_>>());
        // Before anything the ring holds: its first unit, a keyframe.
        let first = r.span().unwrap().0;
        let oldest = group(&r, Duration::ZERO);
        assert_eq!(oldest.len(), 1);
        assert_eq!(Duration::from_millis(oldest[0] * 100), first);
    }

    fn written(out: &[Output<u64>]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                Output::Write(u) => Some(u.payload),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn clip_is_preroll_event_postroll_from_a_keyframe() {
        let mut r = recorder();
        // Motion from frame 100 (10.0 s) to 150 (15.0 s), declared ended 3 s later.
        let out = run(&mut r, 0..300, |r, n| match n {
            101 => r.start(ms(10_000)),
            181 => r.end(ms(15_000)),
            _ => Vec::new(),
        });
        assert_eq!(out.first(), Some(&Output::Open));
        assert_eq!(out.last(), Some(&Output::Close));
        let frames = written(&out);
        // Pre-roll reaches back to the keyframe at 8.0 s; post-roll ends at 16.5 s.
        assert_eq!(frames, (80..=165).collect::<Vec<_>>());
        assert_eq!(out.iter().filter(|o| **o == Output::Open).count(), 1);
    }

    #[test]
    fn preroll_starts_at_the_keyframe_before_it_when_none_is_exactly_there() {
        let mut r = recorder();
        let out = run(&mut r, 0..200, |r, n| match n {
            126 => r.start(ms(12_500)),
            127 => r.end(ms(12_600)),
            _ => Vec::new(),
        });
        // 12.5 s − 2 s = 10.5 s: the keyframe before it is frame 100.
        assert_eq!(written(&out).first(), Some(&100));
        assert_eq!(written(&out).last(), Some(&141));
    }

    #[test]
    fn an_event_in_the_last_ones_postroll_extends_its_clip() {
        let mut r = Recorder::new(RecorderConfig {
            preroll: ms(2000),
            postroll: ms(5000),
            hold: ms(3000),
            max_clip: ms(60_000),
            max_lag: ms(5000),
        });
        let out = run(&mut r, 0..400, |r, n| match n {
            101 => r.start(ms(10_000)),
            // Ends at 15 s, so the clip runs to 20 s; the next event starts at 19 s.
            181 => r.end(ms(15_000)),
            191 => r.start(ms(19_000)),
            241 => r.end(ms(21_000)),
            _ => Vec::new(),
        });
        assert_eq!(out.iter().filter(|o| **o == Output::Open).count(), 1);
        assert_eq!(out.iter().filter(|o| **o == Output::Close).count(), 1);
        assert_eq!(written(&out), (80..=260).collect::<Vec<_>>());
    }

    #[test]
    fn ring_stays_bounded_while_idle_and_while_recording() {
        let mut r = recorder();
        let mut longest = Duration::ZERO;
        run(&mut r, 0..2000, |r, n| {
            if let Some((a, b)) = r.span() {
                longest = longest.max(b - a);
            }
            if n == 500 {
                r.start(ms(50_000))
            } else {
                Vec::new()
            }
        });
        // preroll + hold + one keyframe interval.
        assert!(longest <= ms(6000), "{longest:?}");
        assert!(r.recording());
    }

    /// Feeds frames `range` with the detector `lag` frames behind: after each unit, the
    /// frame `lag` older is analysed, and `at(frame)` gives the boundaries found on it.
    fn run_lagging(
        r: &mut Recorder<u64>,
        range: std::ops::Range<u64>,
        lag: u64,
        mut at: impl FnMut(&mut Recorder<u64>, u64) -> Vec<Output<u64>>,
    ) -> Vec<Output<u64>> {
        let mut out = Vec::new();
        for n in range {
            out.extend(r.push(unit(n)));
            if let Some(seen) = n.checked_sub(lag) {
                out.extend(at(r, seen));
                out.extend(r.analysed(unit(seen).time));
            }
        }
        out
    }

    #[test]
    fn a_lagging_detector_gets_its_whole_preroll_and_an_exact_end() {
        // The agent's hold: the event gap (1 s) and one analysis frame.
        let mut r = Recorder::new(RecorderConfig {
            preroll: ms(2000),
            postroll: ms(1500),
            hold: ms(1200),
            max_clip: ms(60_000),
            max_lag: ms(5000),
        });
        // The detector runs 3 s behind the newest unit, more than `preroll + hold` leaves
        // spare. Motion from 10.0 s to 15.0 s, its end declared at 16.2 s.
        let out = run_lagging(&mut r, 0..300, 30, |r, seen| match seen {
            100 => r.start(ms(10_000)),
            162 => r.end(ms(15_000)),
            _ => Vec::new(),
        });
        assert_eq!(out.first(), Some(&Output::Open));
        assert_eq!(out.last(), Some(&Output::Close));
        assert_eq!(written(&out), (80..=165).collect::<Vec<_>>());
    }

    #[test]
    fn a_stalled_detector_is_waited_for_no_further_than_max_lag() {
        let mut r = recorder();
        r.push(unit(0));
        r.analysed(ms(0));
        let mut longest = Duration::ZERO;
        run(&mut r, 1..1000, |r, _| {
            if let Some((a, b)) = r.span() {
                longest = longest.max(b - a);
            }
            Vec::new()
        });
        // preroll + hold + max_lag + one keyframe interval, and the lag was waited for.
        assert!(longest <= ms(11_000), "{longest:?}");
        assert!(longest > ms(9000), "{longest:?}");
    }

    #[test]
    fn units_before_the_first_keyframe_are_dropped_and_finish_closes() {
        let mut r = recorder();
        assert!(r.push(unit(5)).is_empty());
        assert_eq!(r.span(), None);
        let mut out = run(&mut r, 10..40, |r, n| {
            if n == 20 {
                r.start(ms(2000))
            } else {
                Vec::new()
            }
        });
        out.extend(r.finish());
        assert_eq!(written(&out), (10..40).collect::<Vec<_>>());
        assert_eq!(out.last(), Some(&Output::Close));
        assert!(!r.recording());
    }

    #[test]
    fn chained_events_are_cut_into_clips_of_at_most_max_clip_from_keyframes() {
        let mut r = Recorder::new(RecorderConfig {
            preroll: ms(2000),
            postroll: ms(5000),
            hold: ms(3000),
            max_clip: ms(10_000),
            max_lag: ms(5000),
        });
        // An event every 4 s, each starting in the last one's post-roll, for 40 s.
        let out = run(&mut r, 0..700, |r, n| match n {
            n if (100..520).contains(&n) && n % 40 == 1 => r.start(ms(n * 100)),
            n if (100..520).contains(&n) && n % 40 == 21 => r.end(ms(n * 100)),
            _ => Vec::new(),
        });
        // Split the writes into clips.
        let mut clips: Vec<Vec<u64>> = Vec::new();
        for o in &out {
            match o {
                Output::Open | Output::Continue => clips.push(Vec::new()),
                Output::Write(u) => clips.last_mut().unwrap().push(u.payload),
                Output::Close => {}
            }
        }
        assert_eq!(out.first(), Some(&Output::Open));
        assert_eq!(out.last(), Some(&Output::Close));
        assert!(clips.len() >= 4, "{} clips", clips.len());
        for clip in &clips {
            assert!(
                unit(clip[0]).keyframe,
                "a clip starts on a keyframe: {clip:?}"
            );
            let span = ms((clip[clip.len() - 1] - clip[0]) * 100);
            assert!(span <= ms(10_000), "{span:?}");
        }
        // Nothing lost, nothing twice: the clips together are the recording.
        let all: Vec<u64> = clips.concat();
        assert_eq!(all, (all[0]..=all[all.len() - 1]).collect::<Vec<_>>());
    }
}
