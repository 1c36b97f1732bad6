//! Decoding on demand: which H.264 access units the detector's decoder needs. Pure: unit
//! cues and the detector's verdicts in, units to decode out.
//!
//! A still scene needs no pixels. While it is still ([`Mode::Idle`]) only keyframes are
//! decoded: they decode without references and keep the detector's background fresh. Every
//! other unit is held back, and its encoded size is compared with what units of its kind
//! (P or B, reference or not: a P-frame weighs many B-frames) weigh in a still scene, the
//! median over the last group of pictures or two. Motion costs bits, in VBR at once and in
//! CBR as the rate control catches up: units over their baseline add up to a cue, and then
//! the units held back since the last one decoded — all from the group's keyframe on, so
//! the decoder has every reference — are decoded at once (the catch-up), and every unit
//! after them ([`Mode::Active`]), until the detector has reported a still scene for `hold`.
//!
//! Even then the detector looks at a few pictures a second, fewer than most streams carry:
//! a unit no other picture refers to (a plain B-frame) is thinned out, not decoded, when a
//! picture already decoded lies within half an analysis period of it. Nothing else depends
//! on it, and the analysis rate still finds a picture near each of its instants. On an x264
//! stream at three times the analysis rate that is nearly half the units, and a quarter of
//! the decoding.
//!
//! Nothing depends on the cue being right: a cue that fires on noise costs a few seconds of
//! decoding; one that misses leaves motion to the next keyframe, which the detector sees.
//! An event starts at most a group of pictures later than with every unit decoded.
//!
//! The slice QP is not weighed. Sizes taken at a common quantiser (ln 2 / 6 a step) decoded
//! 37 % of the bench's 720p mostly-still stream instead of 23 % when it was measured (with a
//! baseline of 15 units): x264's QP differs by picture kind and reference depth, not only
//! with its rate control.

use std::time::Duration;

/// What a unit's encoding tells without decoding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitCue {
    pub keyframe: bool,
    pub kind: SliceKind,
    /// Whether other pictures may refer to it (`nal_ref_idc` ≠ 0): P-frames, reference
    /// B-frames in a pyramid; plain B-frames are not.
    pub reference: bool,
    /// The bytes of its slices.
    pub bytes: usize,
}

/// The kind of a unit's first slice: units of one kind (and reference or not) weigh alike
/// in a still scene; a P-frame weighs many B-frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceKind {
    P,
    B,
    /// I, SI, SP, or a slice header that cannot be read.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keyframes only; other units wait for a cue.
    Idle,
    /// Every unit is decoded.
    Active,
}

impl UnitCue {
    /// The cue of an access unit in AVC form (each NAL unit behind its length, in
    /// `length_size` bytes, as `codec_data` says). `None` if the unit is malformed.
    pub fn from_avc(unit: &[u8], length_size: usize) -> Option<Self> {
        let mut cue = UnitCue {
            keyframe: false,
            kind: SliceKind::Other,
            reference: false,
            bytes: 0,
        };
        let mut first = true;
        let mut rest = unit;
        while !rest.is_empty() {
            let (len, body) = rest.split_at_checked(length_size)?;
            let len = len.iter().fold(0usize, |n, b| n << 8 | usize::from(*b));
            let (nal, next) = body.split_at_checked(len)?;
            rest = next;
            let Some(header) = nal.first() else { continue };
            // Coded slices: 1 (non-IDR) and 5 (IDR); parameter sets, SEI and the rest
            // carry no picture.
            let kind = header & 0x1f;
            if kind == 1 || kind == 5 {
                cue.keyframe |= kind == 5;
                cue.reference |= header & 0x60 != 0;
                cue.bytes += nal.len();
                if std::mem::take(&mut first) {
                    cue.kind = slice_kind(&nal[1..]);
                }
            }
        }
        Some(cue)
    }
}

/// The slice type in a slice header: its second Exp-Golomb number, after
/// `first_mb_in_slice`. Emulation prevention bytes (`00 00 03`) are left out first.
fn slice_kind(header: &[u8]) -> SliceKind {
    let mut bytes = Vec::with_capacity(8);
    let mut zeros = 0;
    for &b in header.iter().take(16) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        bytes.push(b);
    }
    let mut bits = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1));
    let mut exp_golomb = || {
        let zeros = bits.by_ref().take_while(|bit| !bit).count();
        if zeros > 31 {
            return None;
        }
        let mut value = 1u64;
        for _ in 0..zeros {
            value = value << 1 | u64::from(bits.next()?);
        }
        Some(value - 1)
    };
    let slice_type = exp_golomb().and_then(|_| exp_golomb());
    match slice_type.map(|t| t % 5) {
        Some(0) => SliceKind::P,
        Some(1) => SliceKind::B,
        _ => SliceKind::Other,
    }
}

/// How long the detector must call the scene still before decoding goes back to keyframes:
/// long enough for an event's end and a passing lull not to cost a catch-up each.
pub const HOLD: Duration = Duration::from_secs(2);

/// Cues add up: each unit adds how far it is over its baseline, as a log ratio, less
/// `DRIFT` (the noise a still scene shows: about ±11 % per group of pictures); motion is
/// cued when the sum passes `FIRE` (a CUSUM). One unit at 2.5× its baseline fires alone;
/// units at 1.6× fire by the third; noise drifts back to zero.
const DRIFT: f64 = 0.223; // ln 1.25
const FIRE: f64 = std::f64::consts::LN_2;
/// Added to both sides of the ratio: a unit of a few bytes (skipped macroblocks only)
/// doubling is nothing.
const MARGIN: f64 = 48.0;
/// How far a still scene's units of a kind stray from their median (the median of the
/// log ratios) before the excess is scaled down by it.
const SPREAD: f64 = 0.15;
/// Units of a kind the baseline holds, and how many it needs before it counts. It holds a
/// group of pictures or two, so it knows how sizes vary across one: at a constant bit rate
/// the rate control starts each group frugal and spends more as it goes on, and plain
/// B-frames grow twentyfold across a group of a still scene. Half a group (15 units) cued
/// on that about once every ten seconds.
const BASELINE_UNITS: usize = 30;
const BASELINE_MIN: usize = 4;

/// The sizes of one kind of unit in a still scene.
#[derive(Debug, Default)]
struct Baseline {
    sizes: Vec<usize>,
    next: usize,
}

impl Baseline {
    fn learn(&mut self, bytes: usize) {
        if self.sizes.len() < BASELINE_UNITS {
            self.sizes.push(bytes);
        } else {
            self.sizes[self.next] = bytes;
        }
        self.next = (self.next + 1) % BASELINE_UNITS;
    }

    /// How far `bytes` is over what this kind weighs in a still scene, as a log ratio, in
    /// units of the scene's own spread where that is wider than [`SPREAD`]: an encoder
    /// spending a constant bit rate on a still scene's noise makes units of one kind vary
    /// tenfold, and only a unit far out of that is a cue. Nothing before the baseline has
    /// seen enough.
    fn excess(&self, bytes: usize) -> f64 {
        if self.sizes.len() < BASELINE_MIN {
            return 0.0;
        }
        let log = |b: usize| (b as f64 + MARGIN).ln();
        let median = |mut v: Vec<f64>| {
            v.sort_unstable_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let middle = median(self.sizes.iter().map(|&b| log(b)).collect());
        let spread = median(
            self.sizes
                .iter()
                .map(|&b| (log(b) - middle).abs())
                .collect(),
        );
        (log(bytes) - middle) / (spread / SPREAD).max(1.0)
    }
}

/// What the planner made of a unit: units to decode now, in decode order, and units it
/// passed over for good.
#[derive(Debug, PartialEq, Eq)]
pub struct Picked<T> {
    pub decode: Vec<T>,
    /// Plain units with a decoded picture within half an analysis period, which the
    /// analysis takes instead.
    pub thinned: Vec<T>,
    /// Units whose group ended without them: no picture stands for them.
    pub dropped: Vec<T>,
}

/// A unit held back, with what thinning needs to know of it.
#[derive(Debug)]
struct Held<T> {
    time: Option<Duration>,
    reference: bool,
    unit: T,
}

/// How many of the latest decoded pictures' times thinning compares with: more than a
/// group of B-frames and the references around it.
const RECENT: usize = 8;

/// Decides, unit by unit, what the decoder gets. `T` is the unit itself.
#[derive(Debug)]
pub struct DecodePlanner<T> {
    hold: Duration,
    /// The detector's analysis period: the spacing of the pictures it looks at.
    period: Duration,
    mode: Mode,
    /// Units held back since the last one decoded, in this group of pictures.
    held: Vec<Held<T>>,
    /// The presentation times of the latest pictures decoded, newest last.
    recent: Vec<Duration>,
    /// Whether the group in progress started with a keyframe the decoder got: without it,
    /// held units cannot be decoded.
    group_decodable: bool,
    /// The detector's latest verdict, and the last time it saw motion (or an event).
    busy: bool,
    last_busy: Option<Duration>,
    /// By kind, and reference or not.
    baselines: [[Baseline; 2]; 3],
    /// The cue's running sum.
    evidence: f64,
    decoded: u64,
    units: u64,
}

impl<T> DecodePlanner<T> {
    /// Starts active: the detector learns its background from the first frames, and the
    /// baselines from a scene it has called still. It goes idle after `hold` of stillness.
    /// `period` is the detector's analysis period.
    pub fn new(hold: Duration, period: Duration) -> Self {
        Self {
            hold,
            period,
            mode: Mode::Active,
            held: Vec::new(),
            recent: Vec::with_capacity(RECENT),
            group_decodable: false,
            busy: true,
            last_busy: None,
            baselines: Default::default(),
            evidence: 0.0,
            decoded: 0,
            units: 0,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Units seen, and units handed to the decoder.
    pub fn counts(&self) -> (u64, u64) {
        (self.units, self.decoded)
    }

    /// The next unit in decode order, presented at `time` (if the stream says).
    pub fn push(&mut self, cue: UnitCue, time: Option<Duration>, unit: T) -> Picked<T> {
        self.units += 1;
        let unit = Held {
            time,
            reference: cue.reference,
            unit,
        };
        if cue.keyframe {
            // The group before it is over: what it still held will never be decoded.
            let dropped = std::mem::take(&mut self.held);
            self.group_decodable = true;
            return self.decode(vec![unit], dropped);
        }
        let baseline = &mut self.baselines[cue.kind as usize][usize::from(cue.reference)];
        let excess = baseline.excess(cue.bytes) - DRIFT;
        self.evidence = (self.evidence + excess).max(0.0);
        let fires = self.evidence > FIRE;
        match self.mode {
            // Units before the first keyframe cannot be decoded.
            _ if !self.group_decodable => self.decode(Vec::new(), vec![unit]),
            Mode::Active => {
                if !self.busy {
                    baseline.learn(cue.bytes);
                }
                // Units held since a keyframe whose picture then showed motion come first:
                // they are references of this one.
                let mut units = std::mem::take(&mut self.held);
                units.push(unit);
                self.decode(units, Vec::new())
            }
            Mode::Idle if fires => {
                self.evidence = 0.0;
                self.mode = Mode::Active;
                self.busy = true;
                self.last_busy = None;
                let mut catch_up = std::mem::take(&mut self.held);
                catch_up.push(unit);
                self.decode(catch_up, Vec::new())
            }
            Mode::Idle => {
                // A unit well over its baseline (over 1.56×: more than noise) does not
                // raise the bar it is measured by; a slow walk-in cannot creep under it.
                if excess <= DRIFT {
                    baseline.learn(cue.bytes);
                }
                self.held.push(unit);
                self.decode(Vec::new(), Vec::new())
            }
        }
    }

    /// What the detector made of the frame at `time`: `busy` when it saw motion or an event
    /// is in progress. After `hold` without, decoding goes back to keyframes.
    pub fn scene(&mut self, time: Duration, busy: bool) {
        self.busy = busy;
        if busy {
            self.last_busy = Some(time);
            self.mode = Mode::Active;
            return;
        }
        let since = *self.last_busy.get_or_insert(time);
        if self.mode == Mode::Active && time.saturating_sub(since) >= self.hold {
            // Nothing is held while active: the units decoded so far are the decoder's
            // references, and the group goes on from them.
            self.mode = Mode::Idle;
        }
    }

    /// Decodes `units` in order but for those the analysis rate does without, and drops
    /// `dropped`.
    fn decode(&mut self, units: Vec<Held<T>>, dropped: Vec<Held<T>>) -> Picked<T> {
        let mut picked = Picked {
            decode: Vec::with_capacity(units.len()),
            thinned: Vec::new(),
            dropped: dropped.into_iter().map(|h| h.unit).collect(),
        };
        for held in units {
            if !held.reference && held.time.is_some_and(|t| self.near_a_decoded_picture(t)) {
                picked.thinned.push(held.unit);
                continue;
            }
            if let Some(time) = held.time {
                if self.recent.len() == RECENT {
                    self.recent.remove(0);
                }
                self.recent.push(time);
            }
            picked.decode.push(held.unit);
        }
        self.decoded += picked.decode.len() as u64;
        picked
    }

    /// Whether a picture decoded lately lies within half an analysis period of `time`.
    fn near_a_decoded_picture(&self, time: Duration) -> bool {
        self.recent
            .iter()
            .any(|&t| t.abs_diff(time) <= self.period / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOLD: Duration = Duration::from_secs(3);
    /// Units come every 100 ms, and the detector looks at each.
    const PERIOD: Duration = Duration::from_millis(100);

    /// Pushes unit `n`, presented at `n` × 100 ms; returns what to decode.
    fn push(planner: &mut DecodePlanner<u32>, cue: UnitCue, n: u32) -> Vec<u32> {
        planner.push(cue, Some(at(u64::from(n) * 100)), n).decode
    }

    fn key(bytes: usize) -> UnitCue {
        UnitCue {
            keyframe: true,
            kind: SliceKind::Other,
            reference: true,
            bytes,
        }
    }

    fn delta(bytes: usize) -> UnitCue {
        UnitCue {
            keyframe: false,
            kind: SliceKind::P,
            reference: true,
            bytes,
        }
    }

    /// A B-frame no other picture refers to.
    fn plain_b(bytes: usize) -> UnitCue {
        UnitCue {
            keyframe: false,
            kind: SliceKind::B,
            reference: false,
            bytes,
        }
    }

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A planner gone idle after a still start: units 0..=40 at 100 ms, a keyframe every 10.
    fn idle_planner() -> (DecodePlanner<u32>, u32) {
        let mut planner = DecodePlanner::new(HOLD, PERIOD);
        for n in 0..=40u32 {
            let cue = if n % 10 == 0 { key(5000) } else { delta(20) };
            for decoded in push(&mut planner, cue, n) {
                planner.scene(at(u64::from(decoded) * 100), false);
            }
        }
        assert_eq!(planner.mode(), Mode::Idle);
        (planner, 41)
    }

    #[test]
    fn a_still_scene_decodes_only_keyframes() {
        let (mut planner, next) = idle_planner();
        let mut decoded = Vec::new();
        for n in next..next + 50 {
            let cue = if n % 10 == 0 { key(5000) } else { delta(22) };
            decoded.extend(push(&mut planner, cue, n));
        }
        assert_eq!(decoded, vec![50, 60, 70, 80, 90]);
    }

    #[test]
    fn a_heavy_unit_catches_up_from_the_groups_keyframe() {
        let (mut planner, _) = idle_planner();
        assert!(push(&mut planner, delta(21), 41).is_empty());
        assert!(push(&mut planner, delta(19), 42).is_empty());
        // The keyframe 40 was decoded; 41 and 42 were held: all come now, in order.
        assert_eq!(push(&mut planner, delta(400), 43), vec![41, 42, 43]);
        assert_eq!(planner.mode(), Mode::Active);
        assert_eq!(push(&mut planner, delta(20), 44), vec![44]);
    }

    #[test]
    fn units_modestly_over_their_baseline_add_up_to_a_cue_and_noise_does_not() {
        let (mut planner, _) = idle_planner();
        // ±10 % around the baseline (20 bytes, 68 with the margin) for a long while: nothing.
        for n in 41..60 {
            let bytes = if n % 2 == 0 { 27 } else { 14 };
            assert!(push(&mut planner, delta(bytes), n).is_empty(), "unit {n}");
        }
        // 1.6× the baseline (with the margin): no single unit is enough; the third fires.
        let heavier = (68.0 * 1.6) as usize - 48;
        assert!(push(&mut planner, delta(heavier), 60).is_empty());
        assert!(push(&mut planner, delta(heavier), 61).is_empty());
        assert_eq!(push(&mut planner, delta(heavier), 62).len(), 22);
    }

    #[test]
    fn a_scene_whose_units_vary_tenfold_needs_units_far_out_of_that_to_cue() {
        let mut planner = DecodePlanner::new(HOLD, PERIOD);
        // A constant bit rate spent on a still scene's noise: P-units of 150 to 9000 bytes.
        let noisy = |n: u32| delta([150, 9000, 600, 3000, 1200][n as usize % 5]);
        for n in 0..=40u32 {
            let cue = if n % 10 == 0 { key(50_000) } else { noisy(n) };
            for decoded in push(&mut planner, cue, n) {
                planner.scene(at(u64::from(decoded) * 100), false);
            }
        }
        assert_eq!(planner.mode(), Mode::Idle);
        // Three units at 2.5× the median would fire in a steady scene; not here.
        for n in 41..44 {
            assert!(push(&mut planner, delta(3000), n).is_empty(), "unit {n}");
        }
        // Thirty times the median is out of any noise: six such units in a row cue.
        let cued = (44..60).find(|&n| !push(&mut planner, delta(36_000), n).is_empty());
        assert_eq!(cued, Some(49));
    }

    #[test]
    fn stillness_for_hold_returns_to_keyframes_and_keeps_the_group() {
        let (mut planner, _) = idle_planner();
        push(&mut planner, delta(400), 41);
        planner.scene(at(4100), true);
        for n in 42..=49 {
            assert_eq!(push(&mut planner, delta(20), n), vec![n]);
            planner.scene(at(u64::from(n) * 100), false);
        }
        // Still from 4.2 s; 3 s later, idle again.
        for n in 50..=72 {
            let cue = if n % 10 == 0 { key(5000) } else { delta(20) };
            for d in push(&mut planner, cue, n) {
                planner.scene(at(u64::from(d) * 100), false);
            }
        }
        assert_eq!(planner.mode(), Mode::Idle);
        // Idle from unit 71's verdict: 72 and 73 are held when a cue comes, not the units
        // the decoder already had.
        assert_eq!(push(&mut planner, delta(20), 73), Vec::<u32>::new());
        assert_eq!(push(&mut planner, delta(900), 74), vec![72, 73, 74]);
    }

    #[test]
    fn without_a_keyframe_nothing_is_decodable_so_nothing_catches_up() {
        let mut planner = DecodePlanner::new(Duration::ZERO, PERIOD);
        planner.scene(at(0), false);
        planner.scene(at(1), false);
        for n in 0..10 {
            push(&mut planner, delta(20), n);
        }
        assert!(push(&mut planner, delta(5000), 10).is_empty());
    }

    #[test]
    fn plain_b_frames_have_a_baseline_of_their_own() {
        let (mut planner, _) = idle_planner();
        for n in 41..46 {
            assert!(push(&mut planner, plain_b(0), n).is_empty());
        }
        // 60 bytes is nothing for a P-frame (baseline 20: fires over 88) but a lot for a
        // B-frame that weighs nothing.
        assert!(push(&mut planner, delta(60), 46).is_empty());
        assert_eq!(
            push(&mut planner, plain_b(60), 47),
            (41..=47).collect::<Vec<_>>()
        );
    }

    #[test]
    fn plain_b_frames_growing_through_each_group_of_a_still_scene_cue_nothing() {
        // A constant bit rate spent on a still scene's noise: after each keyframe the rate
        // control starts frugal and spends more as the group goes on. Plain B-frames grow
        // sevenfold across a group, with noise on top; their references by two thirds. A
        // minute of groups of 30 units (3 s), P b P b ... A baseline of the last 15 units of
        // a kind, half a group of such B-frames, cued 9 times.
        let mut planner = DecodePlanner::new(HOLD, PERIOD);
        let mut cues = 0;
        for n in 0..600u32 {
            let cue = match n % 30 {
                0 => key(20_000),
                k if k % 2 == 1 => delta(3000 + 70 * k as usize),
                k => {
                    // Sensor noise: a factor of ½ to 2, the same in every run.
                    let noise = f64::from(n.wrapping_mul(2_654_435_761) >> 16 & 0xff) / 255.0;
                    let bytes = 40.0 * 1.15f64.powi(k as i32 / 2) * 2f64.powf(2.0 * noise - 1.0);
                    plain_b(bytes as usize)
                }
            };
            let mode = planner.mode();
            for decoded in push(&mut planner, cue, n) {
                planner.scene(at(u64::from(decoded) * 100), false);
            }
            if mode == Mode::Idle && planner.mode() == Mode::Active {
                cues += 1;
            }
        }
        assert_eq!(cues, 0);
    }

    #[test]
    fn cues_come_from_the_slices_nal_headers_and_sizes() {
        // SPS (7), then an IDR slice (5, ref_idc 3) of 6 bytes, 4-byte lengths; its header
        // starts with first_mb_in_slice 0 ("1") and slice_type 7 ("0001000").
        let idr = [0, 0, 0, 2, 0x67, 1, 0, 0, 0, 6, 0x65, 0x88, 2, 3, 4, 5];
        assert_eq!(
            UnitCue::from_avc(&idr, 4),
            Some(UnitCue {
                keyframe: true,
                kind: SliceKind::Other,
                reference: true,
                bytes: 6
            })
        );
        // Two slices of a non-reference B picture (NAL type 1, ref_idc 0; slice_type 6,
        // "00111"), 2-byte lengths.
        let b = [0, 3, 0x01, 0x9c, 9, 0, 2, 0x01, 9];
        assert_eq!(
            UnitCue::from_avc(&b, 2),
            Some(UnitCue {
                keyframe: false,
                kind: SliceKind::B,
                reference: false,
                bytes: 5
            })
        );
        // A P slice (slice_type 0, "1") behind an emulation prevention byte: a
        // first_mb_in_slice of 22 zeros, a one and 22 ones starts 00 00 03, which the stream
        // spells 00 00 03 03.
        let p = [0, 0, 0, 8, 0x41, 0, 0, 3, 3, 0xff, 0xff, 0xff];
        assert_eq!(UnitCue::from_avc(&p, 4).map(|c| c.kind), Some(SliceKind::P));
        // A length past the end is malformed.
        assert_eq!(UnitCue::from_avc(&[0, 0, 0, 9, 0x41], 4), None);
    }

    /// A unit of an x264 stream with B-frames: `kind` is the slice type, `reference` its
    /// `nal_ref_idc` ≠ 0.
    fn coded(kind: SliceKind, reference: bool) -> UnitCue {
        UnitCue {
            keyframe: false,
            kind,
            reference,
            bytes: 500,
        }
    }

    #[test]
    fn plain_b_frames_near_a_decoded_picture_are_passed_over() {
        // 15 fps, a 5 fps analysis: I b B b P b B b P in display order, where the middle B is
        // a reference (a B-pyramid); decode order I P B b b P B b b.
        let mut planner = DecodePlanner::new(HOLD, Duration::from_millis(200));
        let frame = Duration::from_secs(1) / 15;
        let order = [0u32, 4, 2, 1, 3, 8, 6, 5, 7];
        let mut picked = Vec::new();
        for &n in &order {
            let cue = match n {
                0 => key(5000),
                n if n % 4 == 0 => coded(SliceKind::P, true),
                n if n % 2 == 0 => coded(SliceKind::B, true),
                _ => coded(SliceKind::B, false),
            };
            let p = planner.push(cue, Some(frame * n), n);
            assert!(p.dropped.is_empty());
            picked.push((p.decode, p.thinned));
        }
        let decoded: Vec<u32> = picked.iter().flat_map(|p| p.0.clone()).collect();
        let thinned: Vec<u32> = picked.iter().flat_map(|p| p.1.clone()).collect();
        // Every reference, one every 133 ms: the analysis has a picture within 67 ms of
        // each of its instants without the plain B-frames.
        assert_eq!(decoded, vec![0, 4, 2, 8, 6]);
        assert_eq!(thinned, vec![1, 3, 5, 7]);
    }

    #[test]
    fn without_references_near_enough_plain_units_keep_the_analysis_rate() {
        // 30 fps where only the keyframe is a reference (temporal layers at their extreme),
        // a 5 fps analysis: the first picture over 100 ms from the last decoded one is
        // decoded, every fourth (133 ms apart), so each analysis instant has one within 67 ms.
        let mut planner = DecodePlanner::new(HOLD, Duration::from_millis(200));
        let frame = Duration::from_secs(1) / 30;
        let mut times = Vec::new();
        for n in 0..60u32 {
            let cue = if n == 0 {
                key(5000)
            } else {
                coded(SliceKind::P, false)
            };
            for d in planner.push(cue, Some(frame * n), n).decode {
                times.push(frame * d);
            }
        }
        assert_eq!(times.len(), 15);
        assert!(times.windows(2).all(|w| w[1] - w[0] == frame * 4));
        // Without presentation times, nothing can be judged near: every unit is decoded.
        let mut planner = DecodePlanner::new(HOLD, Duration::from_millis(200));
        let untimed = (0..10u32)
            .map(|n| {
                let cue = if n == 0 {
                    key(5000)
                } else {
                    coded(SliceKind::P, false)
                };
                planner.push(cue, None, n).decode.len()
            })
            .sum::<usize>();
        assert_eq!(untimed, 10);
    }

    #[test]
    fn units_held_after_a_keyframe_that_showed_motion_are_decoded_before_the_next() {
        let (mut planner, _) = idle_planner();
        // Units 41 and 42 wait while keyframe 40's picture is being analysed; it shows
        // motion, and the next unit needs them as references.
        assert!(push(&mut planner, delta(20), 41).is_empty());
        assert!(push(&mut planner, delta(20), 42).is_empty());
        planner.scene(at(4000), true);
        assert_eq!(push(&mut planner, delta(20), 43), vec![41, 42, 43]);
    }

    proptest! {
        /// Whatever the stream and the verdicts: units are decoded in order, never twice,
        /// every keyframe is decoded, and so is every reference from a decoded unit's
        /// keyframe up to it; a unit is decoded or passed over, never both.
        #[test]
        fn decoding_order_is_the_streams_and_never_skips_a_reference(
            units in proptest::collection::vec((0u8..12, 0usize..2000, any::<bool>(), any::<bool>()), 1..300),
            period in 0u64..300,
        ) {
            let mut planner = DecodePlanner::new(Duration::from_millis(500), Duration::from_millis(period));
            let mut decoded: Vec<u32> = Vec::new();
            let mut passed: Vec<u32> = Vec::new();
            let mut keyframes = Vec::new();
            let mut references = Vec::new();
            for (n, (kind, bytes, reference, busy)) in units.into_iter().enumerate() {
                let n = n as u32;
                let keyframe = kind == 0;
                if keyframe {
                    keyframes.push(n);
                }
                if reference || keyframe {
                    references.push(n);
                }
                let kind = if keyframe { SliceKind::Other } else if reference { SliceKind::P } else { SliceKind::B };
                let cue = UnitCue { keyframe, kind, reference: reference || keyframe, bytes };
                let picked = planner.push(cue, Some(Duration::from_millis(u64::from(n) * 67)), n);
                passed.extend(picked.thinned);
                passed.extend(picked.dropped);
                for d in picked.decode {
                    planner.scene(Duration::from_millis(u64::from(d) * 67), busy);
                    decoded.push(d);
                }
            }
            prop_assert!(decoded.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(decoded.iter().all(|d| !passed.contains(d)));
            for k in &keyframes {
                prop_assert!(decoded.contains(k));
            }
            for d in &decoded {
                let group = keyframes.iter().rev().find(|k| *k <= d);
                prop_assert!(group.is_some(), "unit {d} decoded before any keyframe");
                if let Some(k) = group {
                    for r in references.iter().filter(|r| (*k..*d).contains(*r)) {
                        prop_assert!(decoded.contains(r), "{d} decoded without its reference {r}");
                    }
                }
            }
        }
    }
}
