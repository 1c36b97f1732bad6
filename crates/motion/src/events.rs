//! Motion events from per-frame verdicts: a start after enough consecutive motion frames, an
//! end after a quiet gap or at the maximum length, and a cooldown before the next start.
//! Pure: media time in, boundaries out.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::config::Rect;
use super::detector::Analysis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConfig {
    /// Consecutive motion frames before an event starts (filters one-frame flickers).
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
    /// Time without motion that ends an event.
    #[serde(default = "default_gap", with = "crate::human_duration")]
    pub gap: Duration,
    /// Time after an end before another event may start.
    #[serde(default = "default_cooldown", with = "crate::human_duration")]
    pub cooldown: Duration,
    /// Longest event; a longer one ends here (and a new one may start after the cooldown).
    #[serde(default = "default_max_length", with = "crate::human_duration")]
    pub max_length: Duration,
}

fn default_min_frames() -> u32 {
    2
}
fn default_gap() -> Duration {
    Duration::from_secs(3)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(2)
}
fn default_max_length() -> Duration {
    Duration::from_secs(120)
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            min_frames: default_min_frames(),
            gap: default_gap(),
            cooldown: default_cooldown(),
            max_length: default_max_length(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Quiet,
    MaxLength,
    /// The agent stopped without ending it (a crash or a power cut); sent at the next start.
    CutShort,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Boundary {
    /// `pts` is the first of the motion frames that started it.
    Start {
        id: u64,
        pts: Duration,
        score: f32,
        regions: Vec<Rect>,
    },
    /// `pts` is the last frame with motion (or the frame at the maximum length).
    End {
        id: u64,
        pts: Duration,
        reason: EndReason,
        peak_score: f32,
    },
}

#[derive(Debug, Clone)]
enum State {
    Idle {
        streak: u32,
        first: Duration,
    },
    Active {
        id: u64,
        started: Duration,
        last_motion: Duration,
        peak: f32,
    },
    Cooldown {
        until: Duration,
    },
}

pub struct EventMachine {
    config: EventConfig,
    state: State,
    next_id: u64,
}

impl EventMachine {
    pub fn new(config: EventConfig) -> Self {
        Self {
            config,
            state: State::Idle {
                streak: 0,
                first: Duration::ZERO,
            },
            next_id: 1,
        }
    }

    pub fn active(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    /// Feeds one analysed frame at media time `pts`; returns a boundary if one falls here.
    pub fn step(&mut self, pts: Duration, analysis: &Analysis) -> Option<Boundary> {
        match &mut self.state {
            State::Cooldown { until } => {
                if pts >= *until {
                    self.state = State::Idle {
                        streak: 0,
                        first: pts,
                    };
                    return self.step(pts, analysis);
                }
                None
            }
            State::Idle { streak, first } => {
                if !analysis.motion {
                    *streak = 0;
                    return None;
                }
                if *streak == 0 {
                    *first = pts;
                }
                *streak += 1;
                if *streak < self.config.min_frames.max(1) {
                    return None;
                }
                let (id, started) = (self.next_id, *first);
                self.next_id += 1;
                self.state = State::Active {
                    id,
                    started,
                    last_motion: pts,
                    peak: analysis.score,
                };
                Some(Boundary::Start {
                    id,
                    pts: started,
                    score: analysis.score,
                    regions: analysis.regions.clone(),
                })
            }
            State::Active {
                id,
                started,
                last_motion,
                peak,
            } => {
                if analysis.motion {
                    *last_motion = pts;
                    *peak = peak.max(analysis.score);
                }
                let (id, peak, last) = (*id, *peak, *last_motion);
                let reason = if pts.saturating_sub(*started) >= self.config.max_length {
                    Some((EndReason::MaxLength, pts))
                } else if pts.saturating_sub(last) >= self.config.gap {
                    Some((EndReason::Quiet, last))
                } else {
                    None
                };
                let (reason, end) = reason?;
                self.state = State::Cooldown {
                    until: pts + self.config.cooldown,
                };
                Some(Boundary::End {
                    id,
                    pts: end,
                    reason,
                    peak_score: peak,
                })
            }
        }
    }

    /// Ends an event still running when the input ends.
    pub fn finish(&mut self, pts: Duration) -> Option<Boundary> {
        match std::mem::replace(
            &mut self.state,
            State::Idle {
                streak: 0,
                first: pts,
            },
        ) {
            State::Active {
                id,
                last_motion,
                peak,
                ..
            } => Some(Boundary::End {
                id,
                pts: last_motion,
                reason: EndReason::Quiet,
                peak_score: peak,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(motion: bool) -> Analysis {
        Analysis {
            score: if motion { 0.1 } else { 0.0 },
            motion,
            regions: Vec::new(),
            lighting: 1.0,
        }
    }

    /// Runs a motion pattern at 10 fps; returns (frame index, boundary) pairs.
    fn run(config: EventConfig, pattern: &[bool]) -> Vec<(usize, Boundary)> {
        let mut m = EventMachine::new(config);
        let mut out: Vec<(usize, Boundary)> = pattern
            .iter()
            .enumerate()
            .filter_map(|(i, &motion)| {
                m.step(Duration::from_millis(i as u64 * 100), &frame(motion))
                    .map(|b| (i, b))
            })
            .collect();
        if let Some(b) = m.finish(Duration::from_millis(pattern.len() as u64 * 100)) {
            out.push((pattern.len(), b));
        }
        out
    }

    fn config() -> EventConfig {
        EventConfig {
            min_frames: 3,
            gap: Duration::from_millis(500),
            cooldown: Duration::from_millis(300),
            max_length: Duration::from_secs(10),
        }
    }

    #[test]
    fn flickers_shorter_than_min_frames_start_nothing() {
        let p = [false, true, true, false, true, false, false];
        assert!(run(config(), &p).is_empty());
    }

    #[test]
    fn start_is_dated_at_the_first_motion_frame_and_end_at_the_last() {
        let mut p = vec![false; 3];
        p.extend([true; 8]);
        p.extend([false; 10]);
        let out = run(config(), &p);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(
            matches!(out[0], (5, Boundary::Start { id: 1, pts, .. }) if pts == Duration::from_millis(300))
        );
        assert!(
            matches!(out[1].1, Boundary::End { id: 1, pts, reason: EndReason::Quiet, .. } if pts == Duration::from_millis(1000))
        );
    }

    #[test]
    fn short_gaps_do_not_split_an_event_and_cooldown_holds_off_the_next() {
        let mut p = vec![true; 5];
        p.extend([false; 3]); // 300 ms < gap
        p.extend([true; 5]);
        p.extend([false; 6]); // ends; cooldown runs
        p.extend([true; 3]); // within cooldown: ignored
        p.extend([false; 5]);
        p.extend([true; 4]); // after cooldown: a second event
        let starts = run(config(), &p)
            .iter()
            .filter(|(_, b)| matches!(b, Boundary::Start { .. }))
            .count();
        assert_eq!(starts, 2);
    }

    #[test]
    fn max_length_ends_an_endless_event() {
        let c = EventConfig {
            max_length: Duration::from_secs(2),
            ..config()
        };
        let out = run(c, &[true; 60]);
        assert!(
            matches!(
                out[1].1,
                Boundary::End {
                    reason: EndReason::MaxLength,
                    ..
                }
            ),
            "{out:?}"
        );
        // Motion goes on: after the cooldown a new event starts.
        assert!(
            out.iter()
                .filter(|(_, b)| matches!(b, Boundary::Start { .. }))
                .count()
                >= 2
        );
    }
}
