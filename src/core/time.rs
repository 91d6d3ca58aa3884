//! Event-time arithmetic: panes, hours, watermarks and calendar dates.
//!
//! Time in the dataflow is the *pane*: event time in milliseconds since the
//! Unix epoch divided by the slide. With the default 1-minute slide a pane is
//! a minute, and the 1-hour window ending at pane `p` covers panes
//! `p - 59 ..= p`. Everything here is integer arithmetic so that the same
//! input gives the same panes on every machine.

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

/// A civil date (proleptic Gregorian, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of month, 1..=31.
    pub day: u32,
}

/// Converts days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
pub fn date_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    Date { year, month, day }
}

/// Converts a civil date to days since 1970-01-01.
pub fn days_from_date(date: Date) -> i64 {
    let y = if date.month <= 2 {
        date.year - 1
    } else {
        date.year
    };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = date.month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + date.day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The Hive-style partition of an hour since the epoch: `("2026-01-31", "07")`.
pub fn hour_partition(hour: u64) -> (String, String) {
    let days = (hour / 24) as i64;
    let d = date_from_days(days);
    (
        format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
        format!("{:02}", hour % 24),
    )
}

/// Parses `YYYY-MM-DD` and an hour into hours since the epoch.
pub fn parse_hour(dt: &str, hour: u32) -> Option<u64> {
    let mut it = dt.split('-');
    let year: i64 = it.next()?.parse().ok()?;
    let month: u32 = it.next()?.parse().ok()?;
    let day: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 {
        return None;
    }
    let days = days_from_date(Date { year, month, day });
    if date_from_days(days) != (Date { year, month, day }) || days < 0 {
        return None;
    }
    Some(days as u64 * 24 + hour as u64)
}

/// Formats ms since the epoch as RFC 3339 (`2026-01-31T07:05:00.000Z`).
pub fn rfc3339(ms: Millis) -> String {
    let days = ms.div_euclid(DAY_MS);
    let rem = ms.rem_euclid(DAY_MS);
    let d = date_from_days(days);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year,
        d.month,
        d.day,
        rem / HOUR_MS,
        (rem / 60_000) % 60,
        (rem / 1000) % 60,
        rem % 1000
    )
}

/// Parses `2026-01-31T07:05:00Z` (seconds, optional fraction, `Z` only).
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut it = date.split('-');
    let year: i64 = it.next()?.parse().ok()?;
    let month: u32 = it.next()?.parse().ok()?;
    let day: u32 = it.next()?.parse().ok()?;
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    if h > 23 || m > 59 || sec > 60 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let ms: i64 = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<i64>().ok()? * 10_i64.pow(3 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let days = days_from_date(Date { year, month, day });
    Some(days * DAY_MS + h * HOUR_MS + m * 60_000 + sec * 1000 + ms)
}

/// Parses a duration such as `250ms`, `30s`, `1m`, `1h`, `7d`, or a bare number of ms.
pub fn parse_duration(s: &str) -> Result<Millis, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 500ms, 30s, 1m, 1h, 1d)"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        other => {
            return Err(format!(
                "unknown unit `{other}` in duration `{s}` (use ms, s, m, h or d)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("duration `{s}` is too large"))
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
        for days in [-1, 0, 59, 365, 10_957, 19_782, 20_454, 20_513, 47_482] {
            assert_eq!(days_from_date(date_from_days(days)), days);
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
        assert_eq!(parse_duration("1h"), Ok(HOUR_MS));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
