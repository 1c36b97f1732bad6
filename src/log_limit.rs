//! Log rate limiting per kind of message. A flood of one message (a bad command sent ten
//! thousand times, a reconnect loop) must not push the rest out of journald, which drops lines
//! past its own rate limit. Each call site has a token bucket; a line past its budget is dropped
//! and counted, and the next line of that kind says how many were suppressed.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;

/// Lines of one kind that may come at once.
const BURST: u32 = 10;
/// Then one line of that kind per this long.
const REFILL: Duration = Duration::from_secs(1);

/// What to do with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write it, saying how many of its kind were dropped since the last one written.
    Write {
        suppressed: u64,
    },
    Drop,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    suppressed: u64,
}

/// Token buckets by kind; pure, the caller gives the time.
#[derive(Debug)]
pub struct RateLimit<K> {
    burst: u32,
    refill: Duration,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> RateLimit<K> {
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst,
            refill,
            buckets: HashMap::new(),
        }
    }

    pub fn decide(&mut self, kind: K, now: Instant) -> Decision {
        let burst = self.burst;
        let bucket = self.buckets.entry(kind).or_insert(Bucket {
            tokens: burst,
            refilled: now,
            suppressed: 0,
        });
        let periods = now.saturating_duration_since(bucket.refilled).as_nanos()
            / self.refill.as_nanos().max(1);
        let earned = u32::try_from(periods).unwrap_or(u32::MAX);
        if earned > 0 {
            bucket.tokens = earned.saturating_add(bucket.tokens).min(burst);
            // Whole periods only: the rest of one counts towards the next token.
            bucket.refilled += self.refill * earned;
        }
        if bucket.tokens == 0 {
            bucket.suppressed += 1;
            return Decision::Drop;
        }
        bucket.tokens -= 1;
        Decision::Write {
            suppressed: std::mem::take(&mut bucket.suppressed),
        }
    }
}

/// Where the daemon's log lines go: stderr (journald under systemd), limited per call site.
pub struct LimitedStderr(Mutex<RateLimit<Identifier>>);

impl Default for LimitedStderr {
    fn default() -> Self {
        Self(Mutex::new(RateLimit::new(BURST, REFILL)))
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LimitedStderr {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine::Write {
            line: Vec::new(),
            suppressed: 0,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogLine {
        let decision = match self.0.lock() {
            Ok(mut limit) => limit.decide(meta.callsite(), Instant::now()),
            Err(_) => Decision::Write { suppressed: 0 },
        };
        match decision {
            Decision::Write { suppressed } => LogLine::Write {
                line: Vec::new(),
                suppressed,
            },
            Decision::Drop => LogLine::Dropped,
        }
    }
}

/// One formatted line, written to stderr whole when dropped.
pub enum LogLine {
    Write { line: Vec<u8>, suppressed: u64 },
    Dropped,
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Self::Write { line, .. } = self {
            line.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let Self::Write { line, suppressed } = self else {
            return;
        };
        if *suppressed > 0 {
            let end = line.strip_suffix(b"\n").map_or(line.len(), <[u8]>::len);
            line.truncate(end);
            line.extend_from_slice(
                format!(" ({suppressed} more like this suppressed)\n").as_bytes(),
            );
        }
        let _ = std::io::stderr().lock().write_all(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_its_burst_then_one_a_period_and_counted() {
        let mut limit = RateLimit::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let written = (0..1000)
            .filter(|i| limit.decide("flood", at(*i)) != Decision::Drop)
            .count();
        assert_eq!(
            written, 3,
            "the burst, nothing earned within the first second"
        );
        // Another kind is not held back by the flood.
        assert_eq!(
            limit.decide("other", at(999)),
            Decision::Write { suppressed: 0 }
        );
        // A second later one more line, saying what was dropped.
        assert_eq!(
            limit.decide("flood", at(1000)),
            Decision::Write { suppressed: 997 }
        );
        assert_eq!(limit.decide("flood", at(1500)), Decision::Drop);
        // Half a period is not lost: 2000 ms earns the next.
        assert_eq!(
            limit.decide("flood", at(2000)),
            Decision::Write { suppressed: 1 }
        );
        // A quiet spell refills to the burst, no more.
        let quiet = at(60_000);
        let after_quiet = (0..10)
            .filter(|_| limit.decide("flood", quiet) != Decision::Drop)
            .count();
        assert_eq!(after_quiet, 3);
    }
}
