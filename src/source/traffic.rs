//! Synthetic watch events: deterministic for a seed, realistic enough to demo.
//!
//! Event `i` is a pure function of `(seed, i)` ([`Generator::item`]), so any
//! worker can produce its share of the stream (`i ≡ worker (mod workers)`)
//! and the union is the same stream whatever the number of workers; the
//! `generate` command and the in-process source share this code.
//!
//! What it models: Zipf popularity over the catalog's watchable titles (or
//! uniform, for benchmarks), a daily rhythm of traffic, spikes on live events
//! while they are on and on their clips just after, regions, tiers, devices,
//! watch durations, and a configurable share of out-of-order, late and
//! malformed records.

use crate::core::catalog::{Catalog, Kind};
use crate::core::event::{ContentId, Device, EventType, Region, Tier, WatchEvent, REGIONS};
use crate::core::rng::{Alias, SplitMix64};
use crate::core::time::{Millis, DAY_MS, HOUR_MS};

pub use crate::config::{GeneratorConfig, Popularity};

/// One generated record: an event, or a malformed line.
#[derive(Clone, Debug, PartialEq)]
pub enum GenItem {
    /// A well-formed event (which may still be out of order or late).
    Event(WatchEvent),
    /// Bytes that must be rejected by the decoder.
    Malformed(String),
}

/// Hourly traffic weights, starting at midnight: low at night, peak at 21:00.
const RHYTHM: [f64; 24] = [
    0.30, 0.20, 0.15, 0.10, 0.10, 0.15, 0.30, 0.50, 0.60, 0.70, 0.75, 0.80, 0.85, 0.85, 0.80, 0.80,
    0.90, 1.00, 1.20, 1.50, 1.80, 1.90, 1.40, 0.80,
];

struct LiveEvent {
    id: ContentId,
    start: Millis,
    end: Millis,
    clips: Vec<ContentId>,
}

/// Produces events; see the module doc.
pub struct Generator {
    seed: u64,
    start: Millis,
    ms_per_event: f64,
    rhythm_cum: Option<[f64; 25]>,
    ids: Vec<ContentId>,
    popularity: Option<Alias>,
    /// Live events sorted by start, and for each hour since `start` the ones on then.
    lives: Vec<LiveEvent>,
    live_by_hour: Vec<Vec<u32>>,
    clips_by_hour: Vec<Vec<u32>>,
    live_share: f64,
    clip_share: f64,
    users: u64,
    mix: Alias,
    regions: Alias,
    devices: Alias,
    out_of_order: f64,
    max_disorder: Millis,
    late: f64,
    late_by: Millis,
    invalid: f64,
}

/// Checks the rates and shares of a generator's settings.
fn check_rates(cfg: &GeneratorConfig) -> Result<(), String> {
    if !(cfg.time_rate > 0.0 && cfg.time_rate.is_finite()) {
        return Err("generator time-rate must be positive".into());
    }
    for (name, v) in [
        ("out-of-order", cfg.out_of_order),
        ("late", cfg.late),
        ("invalid", cfg.invalid),
        ("live-share", cfg.live_share),
        ("clip-share", cfg.clip_share),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!(
                "generator {name} must be a share in 0..=1, got {v}"
            ));
        }
    }
    Ok(())
}

/// The catalog's live events in start order, each with its clips.
fn live_events(catalog: &Catalog) -> Vec<LiveEvent> {
    let mut lives = Vec::new();
    for t in catalog.titles.iter().filter(|t| t.kind == Kind::Live) {
        if let (Some(s), Some(e)) = (t.starts_at, t.ends_at) {
            lives.push(LiveEvent {
                id: t.id,
                start: s,
                end: e,
                clips: Vec::new(),
            });
        }
    }
    lives.sort_by_key(|l| (l.start, l.id));
    let pos: std::collections::HashMap<ContentId, usize> =
        lives.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
    for t in catalog.titles.iter().filter(|t| t.kind == Kind::Clip) {
        if let Some(&i) = t.parent.as_ref().and_then(|p| pos.get(p)) {
            lives[i].clips.push(t.id);
        }
    }
    lives
}

/// For each hour after `start`, the spans `(index, from, to)` that overlap it.
fn hour_index(
    start: Millis,
    spans: impl Iterator<Item = (usize, Millis, Millis)>,
) -> Vec<Vec<u32>> {
    let mut by_hour: Vec<Vec<u32>> = Vec::new();
    for (i, s, e) in spans {
        let first = ((s - start).max(0) / HOUR_MS) as usize;
        let last = ((e - start).max(0) / HOUR_MS) as usize;
        if e <= start || last > 24 * 366 {
            continue;
        }
        if by_hour.len() <= last {
            by_hour.resize(last + 1, Vec::new());
        }
        for h in by_hour.iter_mut().take(last + 1).skip(first) {
            h.push(i as u32);
        }
    }
    by_hour
}

/// The daily rhythm's cumulative shares by hour of the day.
fn rhythm_cum() -> [f64; 25] {
    let total: f64 = RHYTHM.iter().sum();
    let mut cum = [0.0; 25];
    for h in 0..24 {
        cum[h + 1] = cum[h] + RHYTHM[h] / total;
    }
    cum
}

/// Clips stay boosted this long after their live event ends.
const CLIP_AFTERGLOW: Millis = 6 * HOUR_MS;

impl Generator {
    /// Builds a generator over `catalog` (ignored when `cfg.ids` is set).
    pub fn new(cfg: &GeneratorConfig, catalog: &Catalog) -> Result<Generator, String> {
        let start = crate::core::time::parse_rfc3339(&cfg.start)
            .ok_or_else(|| format!("generator start `{}` is not RFC 3339", cfg.start))?;
        check_rates(cfg)?;
        let max_disorder = crate::core::time::millis(cfg.max_disorder);
        let late_by = crate::core::time::millis(cfg.late_by);
        let mut lives = Vec::new();
        let ids: Vec<ContentId> = match cfg.ids {
            Some(0) => return Err("generator ids must be at least 1".into()),
            Some(n) => (1..=n).collect(),
            None => {
                // Live events and clips get their traffic from the spike logic;
                // the base distribution covers episodes and movies.
                lives = live_events(catalog);
                catalog
                    .titles
                    .iter()
                    .filter(|t| matches!(t.kind, Kind::Episode | Kind::Movie))
                    .map(|t| t.id)
                    .collect()
            }
        };
        if ids.is_empty() {
            return Err("the catalog has no episodes or movies to generate views for".into());
        }
        // Shuffle so that popularity rank is not id order.
        let mut ids = ids;
        let mut rng = SplitMix64::new(cfg.seed ^ 0x5eed_0001);
        for i in (1..ids.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        let popularity = match cfg.popularity {
            Popularity::Uniform => None,
            Popularity::Zipf => {
                Some(Alias::zipf(ids.len(), cfg.zipf_exponent).ok_or("bad zipf exponent")?)
            }
        };
        let live_by_hour = hour_index(
            start,
            lives.iter().enumerate().map(|(i, l)| (i, l.start, l.end)),
        );
        let clips_by_hour = hour_index(
            start,
            lives
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.clips.is_empty())
                .map(|(i, l)| (i, l.end, l.end + CLIP_AFTERGLOW)),
        );
        let rhythm_cum = cfg.daily_rhythm.then(rhythm_cum);
        let region_weights: Vec<f64> = (0..REGIONS.len()).map(|i| 1.0 / (i as f64 + 2.0)).collect();
        Ok(Generator {
            seed: cfg.seed,
            start,
            ms_per_event: 1000.0 / cfg.time_rate,
            rhythm_cum,
            ids,
            popularity,
            lives,
            live_by_hour,
            clips_by_hour,
            live_share: cfg.live_share,
            clip_share: cfg.clip_share,
            users: cfg.users.max(1),
            mix: Alias::new(&cfg.mix)
                .ok_or("generator mix needs non-negative weights, one positive")?,
            regions: Alias::new(&region_weights).ok_or("region weights")?,
            devices: Alias::new(&[0.55, 0.25, 0.12, 0.08]).ok_or("device weights")?,
            out_of_order: cfg.out_of_order,
            max_disorder: max_disorder.max(1),
            late: cfg.late,
            late_by,
            invalid: cfg.invalid,
        })
    }

    /// The in-order event time of event `i`, before disorder.
    pub fn base_time(&self, i: u64) -> Millis {
        let x = i as f64 * self.ms_per_event;
        match &self.rhythm_cum {
            None => self.start + x as Millis,
            Some(cum) => {
                let day = (x / DAY_MS as f64).floor();
                let frac = x / DAY_MS as f64 - day;
                let h = cum[1..].partition_point(|c| *c <= frac).min(23);
                let within = (frac - cum[h]) / (cum[h + 1] - cum[h]);
                self.start
                    + day as Millis * DAY_MS
                    + h as Millis * HOUR_MS
                    + (within * HOUR_MS as f64) as Millis
            }
        }
    }

    fn pick_content(&self, rng: &mut SplitMix64, t: Millis) -> ContentId {
        let hour = ((t - self.start).max(0) / HOUR_MS) as usize;
        if let Some(on) = self.live_by_hour.get(hour) {
            if rng.chance(self.live_share) {
                let live: Vec<&LiveEvent> = on
                    .iter()
                    .map(|&i| &self.lives[i as usize])
                    .filter(|l| l.start <= t && t < l.end)
                    .collect();
                if !live.is_empty() {
                    return live[rng.below(live.len() as u64) as usize].id;
                }
            }
        }
        if let Some(after) = self.clips_by_hour.get(hour) {
            if rng.chance(self.clip_share) {
                let ended: Vec<(&LiveEvent, f64)> = after
                    .iter()
                    .map(|&i| &self.lives[i as usize])
                    .filter(|l| l.end <= t && t < l.end + CLIP_AFTERGLOW)
                    .map(|l| (l, 0.5f64.powf((t - l.end) as f64 / HOUR_MS as f64)))
                    .collect();
                if !ended.is_empty() {
                    let (l, decay) = ended[rng.below(ended.len() as u64) as usize];
                    if rng.chance(decay) {
                        return l.clips[rng.below(l.clips.len() as u64) as usize];
                    }
                }
            }
        }
        let rank = match &self.popularity {
            Some(alias) => alias.sample(rng),
            None => rng.below(self.ids.len() as u64) as usize,
        };
        self.ids[rank]
    }

    /// Record number `i` of the stream.
    pub fn item(&self, i: u64) -> GenItem {
        let mut rng = SplitMix64::for_item(self.seed, i);
        let base = self.base_time(i);
        let mut t = base;
        if rng.chance(self.late) {
            t -= self.late_by;
        } else if rng.chance(self.out_of_order) {
            t -= 1 + rng.below(self.max_disorder as u64) as Millis;
        }
        let content_id = self.pick_content(&mut rng, base);
        let event_type = match self.mix.sample(&mut rng) {
            0 => EventType::StartedVideo,
            1 => EventType::Heartbeat,
            _ => EventType::StoppedVideo,
        };
        let watched_ms = match event_type {
            EventType::StartedVideo => 0,
            EventType::Heartbeat => 25_000 + rng.below(10_000) as u32,
            EventType::StoppedVideo => rng.below(30_000) as u32,
        };
        let event = WatchEvent {
            event_id: i,
            user_id: 1 + rng.below(self.users),
            content_id,
            event_type,
            event_time: t,
            watched_ms,
            region: Region(self.regions.sample(&mut rng) as u8),
            tier: if rng.chance(0.3) {
                Tier::Paid
            } else {
                Tier::Free
            },
            device: Device::ALL[self.devices.sample(&mut rng)],
        };
        if rng.chance(self.invalid) {
            let good = event.to_json();
            let bad = match rng.below(7) {
                0 => good[..good.len() / 2].to_string(),
                1 => good.replace(event_type.as_str(), "paused_video"),
                2 => good.replacen("\"watched_ms\":", "\"watched_ms\":-", 1),
                3 => good.replace(
                    &format!("\"event_time\":{t}"),
                    &format!("\"event_time\":{}", t + 400 * DAY_MS * 100),
                ),
                4 => good.replace(&format!("\"user_id\":{},", event.user_id), ""),
                5 => format!("garbage #{i}"),
                _ => good.replace(
                    &format!("\"region\":\"{}\"", event.region.as_str()),
                    "\"region\":\"ZZ\"",
                ),
            };
            return GenItem::Malformed(bad);
        }
        GenItem::Event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Validation;

    fn cfg() -> GeneratorConfig {
        GeneratorConfig {
            invalid: 0.05,
            late: 0.01,
            ..GeneratorConfig::default()
        }
    }

    #[test]
    fn deterministic_and_worker_independent() {
        let cat = Catalog::synthesize(
            2_000,
            1,
            crate::core::time::parse_rfc3339("2026-01-01T00:00:00Z").expect("valid"),
        )
        .expect("valid catalog");
        let g = Generator::new(&cfg(), &cat).expect("valid config");
        let h = Generator::new(&cfg(), &cat).expect("valid config");
        for i in [0, 1, 17, 99_999] {
            assert_eq!(g.item(i), h.item(i));
        }
    }

    #[test]
    fn invalid_records_are_rejected_and_times_advance() {
        let cat = Catalog::synthesize(
            2_000,
            1,
            crate::core::time::parse_rfc3339("2026-01-01T00:00:00Z").expect("valid"),
        )
        .expect("valid catalog");
        let g = Generator::new(&cfg(), &cat).expect("valid config");
        let limits = Validation {
            now_ms: crate::core::time::parse_rfc3339("2026-06-01T00:00:00Z").expect("valid"),
            max_future_ms: DAY_MS,
        };
        let (mut bad, mut live) = (0, 0);
        let lives: std::collections::HashSet<ContentId> = cat
            .titles
            .iter()
            .filter(|t| t.kind == Kind::Live)
            .map(|t| t.id)
            .collect();
        for i in 0..20_000 {
            match g.item(i) {
                GenItem::Malformed(line) => {
                    bad += 1;
                    assert!(
                        WatchEvent::decode(line.as_bytes(), &limits).is_err(),
                        "accepted {line}"
                    );
                }
                GenItem::Event(e) => assert_eq!(
                    WatchEvent::decode(e.to_json().as_bytes(), &limits),
                    Ok(e.clone())
                ),
            }
            assert!(g.base_time(i + 1) >= g.base_time(i));
        }
        assert!(
            (700..1300).contains(&bad),
            "{bad} malformed of 20000 at 5 %"
        );
        // Over two days (sampled), live events get a real share of traffic.
        for i in (0..20_000u64).map(|k| k * 1_300) {
            if let GenItem::Event(e) = g.item(i) {
                live += lives.contains(&e.content_id) as u32;
            }
        }
        assert!(live > 200, "live events get traffic: {live}");
        // 20 000 events at 150/s of event time span about 2.2 minutes
        let span = g.base_time(20_000) - g.base_time(0);
        assert!(span > 0 && span < 20 * 60_000, "{span}");
    }
}
