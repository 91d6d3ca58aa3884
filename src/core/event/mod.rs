//! The watch event, its JSON wire form and strict decoding.
//!
//! Decoding never panics: every record either becomes a [`WatchEvent`] or a
//! [`DecodeError`] that names the reason, so the caller can count it and
//! write it to the dead-letter sink. Fields beyond the known ones are
//! ignored, so newer clients that add fields do not turn into dead letters.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

mod scan;

use crate::core::time::Millis;

/// Identifies a title (episode, movie, show, live event, clip).
pub type ContentId = u64;

/// Regions known to the pipeline; breakdowns are per region, so the set is
/// closed and small on purpose.
pub const REGIONS: [&str; 12] = [
    "IN-MH", "IN-DL", "IN-KA", "IN-TN", "IN-WB", "IN-UP", "IN-GJ", "IN-TG", "IN-KL", "IN-RJ", "US",
    "GB",
];

/// Largest content id accepted: ids share a 64-bit checkpoint key with the
/// model's cell and measure tag, which leaves them 55 bits.
pub const MAX_CONTENT_ID: ContentId = (1 << 55) - 1;

/// Longest watch time one event may report: a day.
pub const MAX_WATCHED_MS: i64 = 86_400_000;

/// Earliest event time accepted (2000-01-01T00:00:00Z); older is a broken clock.
pub const MIN_EVENT_TIME: Millis = 946_684_800_000;

/// What the viewer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Playback started: this is a *view*.
    StartedVideo,
    /// Periodic progress while watching.
    Heartbeat,
    /// Playback stopped.
    StoppedVideo,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::StartedVideo => "started_video",
            EventType::Heartbeat => "heartbeat",
            EventType::StoppedVideo => "stopped_video",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::from_bytes(s.as_bytes())
    }
    fn from_bytes(s: &[u8]) -> Option<Self> {
        match s {
            b"started_video" => Some(EventType::StartedVideo),
            b"heartbeat" => Some(EventType::Heartbeat),
            b"stopped_video" => Some(EventType::StoppedVideo),
            _ => None,
        }
    }
}

/// Subscription tier of the viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Ad-supported.
    Free,
    /// Subscriber.
    Paid,
}

impl Tier {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Paid => "paid",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::from_bytes(s.as_bytes())
    }
    fn from_bytes(s: &[u8]) -> Option<Self> {
        match s {
            b"free" => Some(Tier::Free),
            b"paid" => Some(Tier::Paid),
            _ => None,
        }
    }
}

/// Kind of device playing the title.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// Phone app.
    Mobile,
    /// Living-room TV or stick.
    Tv,
    /// Browser.
    Web,
    /// Tablet app.
    Tablet,
}

impl Device {
    /// All devices, in wire order.
    pub const ALL: [Device; 4] = [Device::Mobile, Device::Tv, Device::Web, Device::Tablet];
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Mobile => "mobile",
            Device::Tv => "tv",
            Device::Web => "web",
            Device::Tablet => "tablet",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::from_bytes(s.as_bytes())
    }
    fn from_bytes(s: &[u8]) -> Option<Self> {
        Device::ALL.into_iter().find(|d| d.as_str().as_bytes() == s)
    }
}

/// Index into [`REGIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Region(pub u8);

impl Region {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        REGIONS.get(self.0 as usize).copied().unwrap_or("??")
    }
    /// Looks a region code up.
    pub fn parse(s: &str) -> Option<Self> {
        Self::from_bytes(s.as_bytes())
    }
    fn from_bytes(s: &[u8]) -> Option<Self> {
        REGIONS
            .iter()
            .position(|r| r.as_bytes() == s)
            .map(|i| Region(i as u8))
    }
}

/// One watch event, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// Unique per event; used to trace dead letters back to their source.
    pub event_id: u64,
    /// The viewer; Kafka records are keyed by it.
    pub user_id: u64,
    /// The title watched.
    pub content_id: ContentId,
    /// What happened.
    pub event_type: EventType,
    /// When it happened on the client, ms since the epoch.
    pub event_time: Millis,
    /// Milliseconds watched since the previous event of this playback.
    pub watched_ms: u32,
    /// Where the viewer is.
    pub region: Region,
    /// Free or paid.
    pub tier: Tier,
    /// What it played on.
    pub device: Device,
}

/// Why a record was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON, not an object, a field of the wrong type, or a field missing.
    Malformed(String),
    /// A field holds a value outside its closed set (event type, region, tier, device).
    UnknownValue {
        /// Field name.
        field: &'static str,
        /// What it held.
        value: String,
    },
    /// A number outside its allowed range (negative duration, time far in the future).
    OutOfRange {
        /// Field name.
        field: &'static str,
        /// What it held.
        value: i64,
        /// The rule it broke.
        rule: String,
    },
}

impl DecodeError {
    /// A short stable code, used as the dead-letter reason and metric label.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnknownValue { .. } => "unknown_value",
            DecodeError::OutOfRange { .. } => "out_of_range",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(m) => write!(f, "malformed record: {m}"),
            DecodeError::UnknownValue { field, value } => write!(f, "unknown {field} `{value}`"),
            DecodeError::OutOfRange { field, value, rule } => {
                write!(f, "{field} {value} out of range: {rule}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct Validation {
    /// Wall-clock now, ms since the epoch.
    pub now_ms: Millis,
    /// How far past `now_ms` an event time may lie (client clock skew).
    pub max_future_ms: Millis,
}

#[derive(Deserialize)]
struct Wire<'a> {
    event_id: u64,
    user_id: u64,
    content_id: u64,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    event_time: i64,
    watched_ms: i64,
    #[serde(borrow)]
    region: Cow<'a, str>,
    #[serde(borrow)]
    tier: Cow<'a, str>,
    #[serde(borrow)]
    device: Cow<'a, str>,
}

/// A record's fields as read, before the range checks: what both decoders give.
struct Raw {
    event_id: u64,
    user_id: u64,
    content_id: u64,
    event_type: EventType,
    event_time: i64,
    watched_ms: i64,
    region: Region,
    tier: Tier,
    device: Device,
}

impl Raw {
    /// The event, if its numbers are in range.
    fn validate(self, limits: &Validation) -> Result<WatchEvent, DecodeError> {
        check_ranges(self.content_id, self.watched_ms, self.event_time, limits)?;
        Ok(WatchEvent {
            event_id: self.event_id,
            user_id: self.user_id,
            content_id: self.content_id,
            event_type: self.event_type,
            event_time: self.event_time,
            watched_ms: self.watched_ms as u32,
            region: self.region,
            tier: self.tier,
            device: self.device,
        })
    }
}

impl WatchEvent {
    /// Decodes and validates one JSON record: records in the plain form go
    /// through a single-pass scan ([`scan`]), the rest through the general
    /// decoder, which decides every rejection.
    pub fn decode(bytes: &[u8], limits: &Validation) -> Result<WatchEvent, DecodeError> {
        match scan::scan(bytes) {
            Some(raw) => raw.validate(limits),
            None => Self::decode_general(bytes, limits),
        }
    }

    /// Decodes and validates one JSON record with the general decoder
    /// (`serde_json`), whatever its form: what [`WatchEvent::decode`]
    /// gives, slower.
    pub fn decode_general(bytes: &[u8], limits: &Validation) -> Result<WatchEvent, DecodeError> {
        let w: Wire =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        let unknown = |field: &'static str, value: &str| DecodeError::UnknownValue {
            field,
            value: value.to_string(),
        };
        Raw {
            event_id: w.event_id,
            user_id: w.user_id,
            content_id: w.content_id,
            event_type: EventType::parse(&w.event_type)
                .ok_or_else(|| unknown("event_type", &w.event_type))?,
            event_time: w.event_time,
            watched_ms: w.watched_ms,
            region: Region::parse(&w.region).ok_or_else(|| unknown("region", &w.region))?,
            tier: Tier::parse(&w.tier).ok_or_else(|| unknown("tier", &w.tier))?,
            device: Device::parse(&w.device).ok_or_else(|| unknown("device", &w.device))?,
        }
        .validate(limits)
    }

    /// Applies the range checks of [`WatchEvent::decode`] to an event built in process.
    pub fn check(&self, limits: &Validation) -> Result<(), DecodeError> {
        check_ranges(
            self.content_id,
            self.watched_ms as i64,
            self.event_time,
            limits,
        )
    }

    /// Encodes the event as one line of JSON (no newline), appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        // Hand-rolled: field order is fixed and every value is a number or a
        // known identifier, so no escaping is needed and output is stable.
        let _ = write!(
            out,
            "{{\"event_id\":{},\"user_id\":{},\"content_id\":{},\"event_type\":\"{}\",\"event_time\":{},\"watched_ms\":{},\"region\":\"{}\",\"tier\":\"{}\",\"device\":\"{}\"}}",
            self.event_id,
            self.user_id,
            self.content_id,
            self.event_type.as_str(),
            self.event_time,
            self.watched_ms,
            self.region.as_str(),
            self.tier.as_str(),
            self.device.as_str()
        );
    }

    /// The event as a JSON string.
    pub fn to_json(&self) -> String {
        let mut v = Vec::with_capacity(200);
        self.encode_into(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

fn check_ranges(
    content_id: ContentId,
    watched_ms: i64,
    event_time: Millis,
    limits: &Validation,
) -> Result<(), DecodeError> {
    if content_id > MAX_CONTENT_ID {
        return Err(DecodeError::OutOfRange {
            field: "content_id",
            value: content_id.min(i64::MAX as u64) as i64,
            rule: format!("must be at most {MAX_CONTENT_ID}"),
        });
    }
    if !(0..=MAX_WATCHED_MS).contains(&watched_ms) {
        return Err(DecodeError::OutOfRange {
            field: "watched_ms",
            value: watched_ms,
            rule: format!("must be within 0..={MAX_WATCHED_MS}"),
        });
    }
    if event_time < MIN_EVENT_TIME {
        return Err(DecodeError::OutOfRange {
            field: "event_time",
            value: event_time,
            rule: "before 2000-01-01".into(),
        });
    }
    if event_time > limits.now_ms.saturating_add(limits.max_future_ms) {
        return Err(DecodeError::OutOfRange {
            field: "event_time",
            value: event_time,
            rule: format!("more than {} ms in the future", limits.max_future_ms),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits for the tests here and in [`super::scan`]'s.
    pub(super) fn limits() -> Validation {
        Validation {
            now_ms: 1_800_000_000_000,
            max_future_ms: 86_400_000,
        }
    }

    fn sample() -> WatchEvent {
        WatchEvent {
            event_id: 7,
            user_id: 99,
            content_id: 1234,
            event_type: EventType::StartedVideo,
            event_time: 1_767_225_600_000,
            watched_ms: 0,
            region: Region(3),
            tier: Tier::Paid,
            device: Device::Tv,
        }
    }

    #[test]
    fn round_trip() {
        let e = sample();
        assert_eq!(WatchEvent::decode(e.to_json().as_bytes(), &limits()), Ok(e));
    }

    #[test]
    fn rejects_with_reasons() {
        let good = sample().to_json();
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "malformed"),
            (good[..good.len() - 5].to_string(), "malformed"),
            (good.replace("\"user_id\":99,", ""), "malformed"),
            (good.replace("started_video", "paused"), "unknown_value"),
            (
                good.replace("\"tier\":\"paid\"", "\"tier\":\"gold\""),
                "unknown_value",
            ),
            (
                good.replace("\"region\":\"IN-TN\"", "\"region\":\"XX\""),
                "unknown_value",
            ),
            (
                good.replace("\"watched_ms\":0", "\"watched_ms\":-5"),
                "out_of_range",
            ),
            (
                good.replace("1767225600000", "1900000000000"),
                "out_of_range",
            ),
            (good.replace("1767225600000", "12"), "out_of_range"),
            (
                good.replace("\"content_id\":1234", "\"content_id\":-1"),
                "malformed",
            ),
            (
                good.replace("\"content_id\":1234", "\"content_id\":\"1234\""),
                "malformed",
            ),
            ("[1,2,3]".into(), "malformed"),
            (String::new(), "malformed"),
        ];
        for (line, code) in cases {
            match WatchEvent::decode(line.as_bytes(), &limits()) {
                Err(e) => assert_eq!(e.code(), code, "{line}: {e}"),
                Ok(e) => panic!("accepted {line}: {e:?}"),
            }
        }
    }

    #[test]
    fn tolerates_extra_fields_and_escapes() {
        let line = sample()
            .to_json()
            .replace("{\"event_id\"", "{\"app_version\":\"9.1\\n\",\"event_id\"");
        assert_eq!(WatchEvent::decode(line.as_bytes(), &limits()), Ok(sample()));
    }
}
