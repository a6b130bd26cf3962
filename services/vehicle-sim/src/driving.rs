//! Continuous driving time, the way a fatigue warning counts it: time spent moving since
//! the last break of at least `min_break`. Shorter stops (a traffic light, a queue) pause
//! the count but do not reset it.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone)]
pub struct DrivingTimer {
    min_break: Duration,
    driving: Duration,
    last: Option<(DateTime<Utc>, bool)>,
    stopped_since: Option<DateTime<Utc>>,
}

impl DrivingTimer {
    pub fn new(min_break: Duration) -> Self {
        Self {
            min_break,
            driving: Duration::zero(),
            last: None,
            stopped_since: None,
        }
    }

    /// Records that at `now` the car is `moving` (or not); returns the driving seconds.
    pub fn observe(&mut self, now: DateTime<Utc>, moving: bool) -> u64 {
        if let Some((last, true)) = self.last
            && now > last
        {
            self.driving += now - last;
        }
        if moving {
            self.stopped_since = None;
        } else {
            let since = *self.stopped_since.get_or_insert(now);
            if now - since >= self.min_break {
                self.driving = Duration::zero();
            }
        }
        self.last = Some((now, moving));
        self.seconds()
    }

    /// Forgets the last observation, so a jump of the clock is not counted as driving.
    pub fn rebase(&mut self, now: DateTime<Utc>) {
        if let Some((_, moving)) = self.last {
            self.last = Some((now, moving));
            if self.stopped_since.is_some() {
                self.stopped_since = Some(now);
            }
        }
    }

    /// Sets the count, e.g. for a scripted scenario that starts two hours into a drive.
    pub fn set_seconds(&mut self, secs: u64) {
        self.driving = Duration::seconds(secs.min(i64::MAX as u64 / 1000) as i64);
    }

    pub fn seconds(&self) -> u64 {
        self.driving.num_seconds().max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 8, 0, 0).unwrap() + Duration::minutes(min)
    }

    #[test]
    fn counts_moving_time_only() {
        let mut d = DrivingTimer::new(Duration::minutes(15));
        d.observe(t(0), true);
        assert_eq!(d.observe(t(60), true), 3600);
        d.observe(t(60), false);
        // A 5-minute stop pauses the count.
        assert_eq!(d.observe(t(65), true), 3600);
        assert_eq!(d.observe(t(125), true), 7200);
    }

    #[test]
    fn a_real_break_resets() {
        let mut d = DrivingTimer::new(Duration::minutes(15));
        d.observe(t(0), true);
        d.observe(t(130), false);
        assert_eq!(d.observe(t(140), false), 130 * 60);
        assert_eq!(d.observe(t(145), false), 0);
        d.observe(t(146), true);
        assert_eq!(d.observe(t(156), true), 600);
    }

    #[test]
    fn a_clock_jump_is_not_driving() {
        let mut d = DrivingTimer::new(Duration::minutes(15));
        d.observe(t(0), true);
        d.observe(t(10), true);
        d.rebase(t(600));
        assert_eq!(d.observe(t(601), true), 11 * 60);
        // Backwards jumps never subtract.
        assert_eq!(d.observe(t(500), true), 11 * 60);
    }
}
