//! Log lines for events that a client can repeat thousands of times per second, such as
//! rejected calls. The first event of each interval is logged with the number of events
//! since the last logged one, and the rest are only counted.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Interval of the throttled log lines in this crate.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

pub struct LogThrottle {
    interval: Duration,
    state: Mutex<State>,
}

struct State {
    last_logged: Option<Instant>,
    /// Events since the last logged one, including it.
    count: u64,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> Self {
        Self { interval, state: Mutex::new(State { last_logged: None, count: 0 }) }
    }

    /// Counts one event. Returns `Some(count)` when it should be logged, with the number of
    /// events since the last logged one, this one included, and `None` while the interval runs.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        // A panic while the lock is held leaves only a counter behind, which stays usable.
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.count += 1;
        if state.last_logged.is_some_and(|at| now.duration_since(at) < self.interval) {
            return None;
        }
        state.last_logged = Some(now);
        Some(std::mem::take(&mut state.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_logs_first_event_per_interval() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.admit_at(start), Some(1));
        for offset in 1..=5 {
            assert_eq!(throttle.admit_at(start + Duration::from_secs(offset)), None);
        }
        assert_eq!(throttle.admit_at(start + Duration::from_secs(10)), Some(6));
        assert_eq!(throttle.admit_at(start + Duration::from_secs(11)), None);
        assert_eq!(throttle.admit_at(start + Duration::from_secs(25)), Some(2));
    }
}
