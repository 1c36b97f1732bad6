//! Scoring detected events against a clip's truth: which events were found, how early or
//! late they started and ended, which were raised for nothing. Pure: times in, a score out.
//! `camagent eval DIR` runs the detector over a corpus and prints these.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How early a found start may be and still belong to a true event (decoding and the
/// analysis rate can place the first moving frame a little before the truth's onset).
const EARLY: f64 = 1.0;
/// How long after a true event's end a found event may start and still belong to it.
const LATE: f64 = 4.0;

/// A clip's truth file (`NAME.truth.json` beside `NAME.mp4`).
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    /// The clip's file name, relative to the truth file.
    pub clip: String,
    #[serde(default)]
    pub what: String,
    /// Expected events; none for a nuisance clip.
    pub events: Vec<Span>,
}

/// An event's start and end, in media seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start: f64,
    pub end: f64,
}

/// One true event that a found event matched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Found start − true start, seconds.
    pub onset_error: f64,
    /// Found end (the last moving frame) − true end, seconds.
    pub end_error: f64,
}

/// What the detector did on one clip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipScore {
    pub clip: String,
    pub what: String,
    pub truth: usize,
    pub found: usize,
    pub hits: Vec<Hit>,
    /// Found events overlapping no true event.
    pub false_events: usize,
    /// True events no found event started in.
    pub missed: usize,
    /// Further found events inside a true event already matched (one presence cut in two).
    pub splits: usize,
}

/// Matches found events to true ones: a true event takes the first unmatched found event
/// that starts between `EARLY` before its start and `LATE` after its end.
pub fn score(clip: &str, truth: &Truth, found: &[Span]) -> ClipScore {
    let mut taken = vec![false; found.len()];
    let mut hits = Vec::new();
    for t in &truth.events {
        let window = (t.start - EARLY)..=(t.end + LATE);
        if let Some(i) = (0..found.len()).find(|&i| !taken[i] && window.contains(&found[i].start)) {
            taken[i] = true;
            hits.push(Hit {
                onset_error: found[i].start - t.start,
                end_error: found[i].end - t.end,
            });
        }
    }
    let overlaps_truth = |f: &Span| {
        truth
            .events
            .iter()
            .any(|t| f.start <= t.end + LATE && f.end >= t.start - EARLY)
    };
    let (mut false_events, mut splits) = (0, 0);
    for (f, _) in found.iter().zip(&taken).filter(|(_, taken)| !**taken) {
        if overlaps_truth(f) {
            splits += 1;
        } else {
            false_events += 1;
        }
    }
    ClipScore {
        clip: clip.to_owned(),
        what: truth.what.clone(),
        truth: truth.events.len(),
        found: found.len(),
        missed: truth.events.len() - hits.len(),
        hits,
        false_events,
        splits,
    }
}

/// Totals over a corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    pub clips: usize,
    pub truth: usize,
    pub found: usize,
    pub false_events: usize,
    pub missed: usize,
    pub splits: usize,
    /// Absolute onset error, seconds: median, 90th percentile, worst.
    pub onset_p50: f64,
    pub onset_p90: f64,
    pub onset_max: f64,
    /// End error, seconds (positive: the event ran on after motion stopped).
    pub end_p50: f64,
    pub end_p90: f64,
    pub end_max: f64,
}

pub fn totals(scores: &[ClipScore]) -> Totals {
    let hits = || scores.iter().flat_map(|s| &s.hits);
    let onsets: Vec<f64> = hits().map(|h| h.onset_error.abs()).collect();
    let ends: Vec<f64> = hits().map(|h| h.end_error).collect();
    let sum = |f: fn(&ClipScore) -> usize| scores.iter().map(f).sum();
    Totals {
        clips: scores.len(),
        truth: sum(|s| s.truth),
        found: sum(|s| s.found),
        false_events: sum(|s| s.false_events),
        missed: sum(|s| s.missed),
        splits: sum(|s| s.splits),
        onset_p50: percentile(&onsets, 0.5),
        onset_p90: percentile(&onsets, 0.9),
        onset_max: percentile(&onsets, 1.0),
        end_p50: percentile(&ends, 0.5),
        end_p90: percentile(&ends, 0.9),
        end_max: percentile(&ends, 1.0),
    }
}

/// The value at fraction `p` of the sorted values (nearest rank); 0 for none.
fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A corpus report as a plain table: one row per clip, then the totals.
pub struct Report<'a>(pub &'a [ClipScore]);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>5} {:>5} {:>5} {:>6} {:>6}  {:<18} {:<18}",
            "clip", "truth", "found", "false", "missed", "splits", "onset error s", "end error s"
        )?;
        let list = |v: Vec<f64>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.iter()
                    .map(|e| format!("{e:+.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        for s in self.0 {
            writeln!(
                f,
                "{:<24} {:>5} {:>5} {:>5} {:>6} {:>6}  {:<18} {:<18}",
                s.clip,
                s.truth,
                s.found,
                s.false_events,
                s.missed,
                s.splits,
                list(s.hits.iter().map(|h| h.onset_error).collect()),
                list(s.hits.iter().map(|h| h.end_error).collect()),
            )?;
        }
        let t = totals(self.0);
        writeln!(
            f,
            "\n{} clips, {} true events, {} found: {} false events, {} missed, {} splits",
            t.clips, t.truth, t.found, t.false_events, t.missed, t.splits
        )?;
        write!(
            f,
            "onset error |s| p50 {:.2} p90 {:.2} max {:.2}; end error s p50 {:+.2} p90 {:+.2} max {:+.2}",
            t.onset_p50, t.onset_p90, t.onset_max, t.end_p50, t.end_p90, t.end_max
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: f64, end: f64) -> Span {
        Span { start, end }
    }

    fn truth(events: Vec<Span>) -> Truth {
        Truth {
            clip: "c.mp4".into(),
            what: String::new(),
            events,
        }
    }

    #[test]
    fn matches_hits_and_counts_false_missed_and_splits() {
        let t = truth(vec![span(5.0, 10.0), span(20.0, 24.0), span(40.0, 45.0)]);
        let found = [
            span(5.4, 12.0),  // hit: +0.4 onset, +2 end
            span(11.0, 13.0), // inside the first one's window: a split
            span(21.0, 26.0), // hit
            span(30.0, 31.0), // nothing there: false
        ];
        let s = score("c", &t, &found);
        assert_eq!((s.false_events, s.missed, s.splits), (1, 1, 1));
        assert_eq!(s.hits.len(), 2);
        assert!((s.hits[0].onset_error - 0.4).abs() < 1e-9);
        assert!((s.hits[0].end_error - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_nuisance_clip_counts_every_event_as_false() {
        let s = score("c", &truth(vec![]), &[span(3.0, 9.0), span(12.0, 30.0)]);
        assert_eq!((s.false_events, s.missed, s.splits), (2, 0, 0));
    }

    #[test]
    fn a_start_long_before_the_truth_is_not_a_hit() {
        let s = score("c", &truth(vec![span(10.0, 12.0)]), &[span(7.0, 12.0)]);
        assert_eq!((s.missed, s.hits.len()), (1, 0));
        // It overlaps the true event, so it is a split rather than a false alarm.
        assert_eq!(s.splits, 1);
    }

    #[test]
    fn totals_take_percentiles_of_absolute_onsets() {
        let t = truth(vec![span(1.0, 2.0), span(10.0, 11.0)]);
        let a = score("a", &t, &[span(0.8, 3.0), span(10.6, 12.0)]);
        let totals = totals(&[a]);
        assert!((totals.onset_max - 0.6).abs() < 1e-9);
        assert!((totals.onset_p50 - 0.6).abs() < 1e-9 || (totals.onset_p50 - 0.2).abs() < 1e-9);
        assert!((totals.end_max - 1.0).abs() < 1e-9);
    }
}
