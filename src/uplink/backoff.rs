//! Reconnect delays: exponential, capped, with jitter so a fleet that lost its broker at the
//! same moment does not come back at the same moment.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay. `unit` is a random fraction in `[0, 1)`: the delay is the capped
    /// exponential step's upper half, scaled by it ("equal jitter").
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let step = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        step / 2 + step.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
    }

    pub fn next_delay(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let uppers: Vec<_> = (0..6).map(|_| b.next_with(1.0)).collect();
        let ms: Vec<u128> = uppers.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_with(0.0), Duration::from_millis(50));
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(60));
        for _ in 0..40 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(60) && d >= Duration::from_millis(50));
        }
    }
}
