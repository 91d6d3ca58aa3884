//! Event-time arithmetic: panes, hours, watermarks and calendar dates.
//!
//! Time in the dataflow is the *pane*: event time in milliseconds since the
//! Unix epoch divided by the slide. With the default 1-minute slide a pane is
//! a minute, and the 1-hour window ending at pane `p` covers panes
//! `p - 59 ..= p`. Panes and hours are integer arithmetic, so the same input
//! gives the same panes on every machine; calendar dates (RFC 3339, the
//! `dt=` of a snapshot's hour) come from `chrono`, in UTC only.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC).
pub type Millis = i64;
/// Event time divided by the slide: the logical time of the dataflow.
pub type Pane = u64;

/// One hour in milliseconds.
pub const HOUR_MS: Millis = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: Millis = 86_400_000;

/// The geometry of the sliding window: how wide it is and how often it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Distance between window ends, in ms (the pane length).
    pub slide_ms: Millis,
    /// Width of the window, in ms; a whole multiple of the slide.
    pub size_ms: Millis,
}

impl WindowSpec {
    /// A window of `size_ms` sliding every `slide_ms`; both must be positive,
    /// the size a multiple of the slide, and an hour a multiple of the slide
    /// (so that every hour ends on a pane boundary).
    pub fn new(size_ms: Millis, slide_ms: Millis) -> Result<Self, String> {
        if slide_ms <= 0 || size_ms <= 0 {
            return Err(format!(
                "window size ({size_ms} ms) and slide ({slide_ms} ms) must be positive"
            ));
        }
        if size_ms % slide_ms != 0 {
            return Err(format!(
                "window size ({size_ms} ms) must be a multiple of the slide ({slide_ms} ms)"
            ));
        }
        if HOUR_MS % slide_ms != 0 {
            return Err(format!(
                "the slide ({slide_ms} ms) must divide an hour evenly"
            ));
        }
        Ok(WindowSpec { slide_ms, size_ms })
    }

    /// The standard window: one hour, sliding every minute.
    pub fn hourly() -> Self {
        WindowSpec {
            slide_ms: 60_000,
            size_ms: HOUR_MS,
        }
    }

    /// Number of panes in one window.
    pub fn panes(&self) -> u64 {
        (self.size_ms / self.slide_ms) as u64
    }

    /// Number of panes in one hour.
    pub fn panes_per_hour(&self) -> u64 {
        (HOUR_MS / self.slide_ms) as u64
    }

    /// The pane holding event time `ms`, or `None` before the epoch.
    pub fn pane_of(&self, ms: Millis) -> Option<Pane> {
        if ms < 0 {
            None
        } else {
            Some((ms / self.slide_ms) as Pane)
        }
    }

    /// First millisecond of `pane`.
    pub fn pane_start(&self, pane: Pane) -> Millis {
        pane as Millis * self.slide_ms
    }

    /// The hour (hours since the epoch) that `pane` lies in.
    pub fn hour_of(&self, pane: Pane) -> u64 {
        pane / self.panes_per_hour()
    }

    /// The last pane of `hour`: the window ending there covers the hour when
    /// the window is one hour wide.
    pub fn last_pane_of_hour(&self, hour: u64) -> Pane {
        (hour + 1) * self.panes_per_hour() - 1
    }

    /// True if `pane` is the last pane of its hour.
    pub fn ends_hour(&self, pane: Pane) -> bool {
        (pane + 1).is_multiple_of(self.panes_per_hour())
    }

    /// The event-time interval `[start, end)` in ms of the window that ends with `pane`.
    pub fn window_bounds(&self, pane: Pane) -> (Millis, Millis) {
        let end = self.pane_start(pane + 1);
        (end - self.size_ms, end)
    }
}

/// Wall-clock now, ms since the epoch.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// The Hive-style partition of an hour since the epoch: `("2026-01-31", "07")`.
pub fn hour_partition(hour: u64) -> (String, String) {
    let day = i64::try_from(hour / 24)
        .ok()
        .and_then(|d| chrono::DateTime::from_timestamp(d.checked_mul(86_400)?, 0));
    let dt = day.map_or_else(
        || format!("day-{}", hour / 24),
        |d| d.format("%Y-%m-%d").to_string(),
    );
    (dt, format!("{:02}", hour % 24))
}

/// Parses `YYYY-MM-DD` and an hour into hours since the epoch.
pub fn parse_hour(dt: &str, hour: u32) -> Option<u64> {
    let date = chrono::NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()?;
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let days = date.signed_duration_since(epoch).num_days();
    if hour > 23 || days < 0 {
        return None;
    }
    Some(days as u64 * 24 + hour as u64)
}

/// Formats ms since the epoch as RFC 3339 (`2026-01-31T07:05:00.000Z`).
pub fn rfc3339(ms: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        // Beyond the calendar's range (about 262 000 years): say what it is.
        None => format!("{ms} ms since the epoch"),
    }
}

/// Parses `2026-01-31T07:05:00Z` (UTC only: `Z`; a fraction of a second is
/// kept to the millisecond).
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    if !s.ends_with('Z') {
        return None;
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp_millis())
}

/// A configured duration in milliseconds (saturating: no setting is
/// anywhere near 292 million years).
pub fn millis(d: std::time::Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_at_hour_and_day_boundaries() {
        let w = WindowSpec::hourly();
        // 2026-01-01T00:00:00Z
        let midnight = parse_rfc3339("2026-01-01T00:00:00Z").expect("valid");
        let p = w.pane_of(midnight).expect("after epoch");
        assert_eq!(w.pane_start(p), midnight);
        assert!(
            w.ends_hour(p - 1),
            "the minute before midnight ends an hour"
        );
        assert!(!w.ends_hour(p));
        assert_eq!(w.hour_of(p - 1) + 1, w.hour_of(p));
        // last ms of the day is in the last pane of hour 23
        let last = w.pane_of(midnight - 1).expect("after epoch");
        assert_eq!(last, p - 1);
        let (dt, hh) = hour_partition(w.hour_of(last));
        assert_eq!((dt.as_str(), hh.as_str()), ("2025-12-31", "23"));
        let (dt, hh) = hour_partition(w.hour_of(p));
        assert_eq!((dt.as_str(), hh.as_str()), ("2026-01-01", "00"));
        // the window ending at the hour's last pane is exactly that hour
        let h = w.hour_of(p);
        let (start, end) = w.window_bounds(w.last_pane_of_hour(h));
        assert_eq!((start, end), (midnight, midnight + HOUR_MS));
        assert_eq!(w.panes(), 60);
    }

    #[test]
    fn leap_days_and_round_trips() {
        for hour in [0, 59 * 24, 365 * 24 + 5, 10_957 * 24 + 23, 47_482 * 24] {
            let (dt, hh) = hour_partition(hour);
            let hh: u32 = hh.parse().expect("an hour");
            assert_eq!(parse_hour(&dt, hh), Some(hour), "{dt} {hh}");
        }
        let feb29 = parse_rfc3339("2028-02-29T23:59:59.999Z").expect("leap day");
        assert_eq!(rfc3339(feb29), "2028-02-29T23:59:59.999Z");
        assert_eq!(
            hour_partition((feb29 / HOUR_MS) as u64),
            ("2028-02-29".to_string(), "23".to_string())
        );
        assert_eq!(parse_hour("2028-02-29", 23), Some((feb29 / HOUR_MS) as u64));
        assert_eq!(parse_hour("2027-02-29", 0), None);
        assert_eq!(parse_hour("2027-13-01", 0), None);
        assert_eq!(parse_rfc3339("2026-01-01T24:00:00Z"), None);
    }

    #[test]
    fn window_spec_validation_and_durations() {
        assert!(WindowSpec::new(HOUR_MS, 60_000).is_ok());
        assert!(WindowSpec::new(HOUR_MS, 7_000).is_err());
        assert!(WindowSpec::new(90_000, 60_000).is_err());
        assert!(WindowSpec::new(0, 60_000).is_err());
        let w = WindowSpec::new(24 * HOUR_MS, 60_000).expect("valid");
        assert_eq!(w.panes(), 1440);
    }
}
