//! Log lines that something outside the server can make it repeat many times a second (accept
//! failing at the file-descriptor limit: twenty a second) are written at most once per interval,
//! with the count of those left out since the last one written. Time is handed in, so the rule
//! is tested without waiting.

use std::time::{Duration, Instant};

/// One kind of log line, written at most once per `every`.
#[derive(Debug)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    pub fn new(every: Duration) -> Self {
        RateLimited { every, last: None, suppressed: 0 }
    }

    /// Whether the line that happened at `now` is written: `Some(n)` (write it, saying that `n`
    /// were left out since the last one), or `None` (left out, and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let t0 = Instant::now();
        let mut log = RateLimited::new(Duration::from_secs(10));
        assert_eq!(log.allow(t0), Some(0), "the first is written");
        // Twenty a second for ten seconds: none written...
        for i in 1..200 {
            assert_eq!(log.allow(t0 + Duration::from_millis(50 * i)), None, "at {} ms", 50 * i);
        }
        // ...until the interval is over; that line says how many were left out.
        assert_eq!(log.allow(t0 + Duration::from_secs(10)), Some(199));
        assert_eq!(log.allow(t0 + Duration::from_millis(10_001)), None);
        assert_eq!(log.allow(t0 + Duration::from_secs(60)), Some(1), "a quiet spell starts afresh");
        // A clock that seems to go back (another thread's earlier instant) counts as no time.
        assert_eq!(log.allow(t0), None);
    }
}
