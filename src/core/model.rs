//! The popularity model: what is measured per title, how titles roll up the
//! hierarchy, how scores and trends are computed and how titles are ranked.
//!
//! The model's input is keyed by title and breakdown [`Cell`] with an
//! [`Obs`] difference (views, watch time): one record per kind of viewer,
//! title and pane, none for the cells nobody watched from. Every title, show
//! and channel accumulates a [`Measures`] value (views, watch time, 24-hour
//! views, views by tier, device and region), changed by [`Delta`]s.
//!
//! The formulas (also in the README):
//!
//! - `views`, `watch_ms` and the breakdowns: sums over the sliding window
//!   (1 hour) ending at the pane.
//! - `views_24h`: views over the score window (24 hours) ending at the pane.
//! - Episode score: `1e6 · views_24h(e) / Σ views_24h(all episodes)`, its
//!   share of the last 24 hours' episode viewing in parts per million. A
//!   show's score is the same share of its episodes' 24-hour views (the sum
//!   of its episodes' scores), a channel's that of its shows' episodes.
//! - Trend: `views · d`, where `d = 2^(−(t − end) / half_life)` for a clip
//!   whose live event ended at `end` before the window's end `t`, and `1`
//!   for everything else.
//! - Rollups: a show's measures are the sums over its episodes; a channel's
//!   over every title below it (`views_24h` only over episodes, so that the
//!   channel score comes from its shows).
//! - Rankings, per category: episodes and shows by score, movies, live
//!   events, clips and `all` (every title and show) by trend; per region,
//!   every category by the region's views times `d`. Ties go to the
//!   smaller id.

use serde::{Deserialize, Serialize};

use crate::core::catalog::{Kind, Title};
use crate::core::event::{ContentId, Device, EventType, Tier, WatchEvent, REGIONS};
use crate::core::time::Millis;

/// Number of regions, tiers and devices.
pub const N_REGIONS: usize = REGIONS.len();
/// Number of tiers.
pub const N_TIERS: usize = 2;
/// Number of devices.
pub const N_DEVICES: usize = 4;

/// A node's measures (and the difference type of measures carried over a restore).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Measures {
    /// Views (`started_video`) in the window.
    pub views: i64,
    /// Milliseconds watched in the window.
    pub watch_ms: i64,
    /// Views in the score window.
    pub views_24h: i64,
    /// Views by tier (free, paid).
    pub tier: [i64; N_TIERS],
    /// Views by device (mobile, tv, web, tablet).
    pub device: [i64; N_DEVICES],
    /// Views by region, in [`REGIONS`] order.
    pub region: [i64; N_REGIONS],
}

impl Measures {
    /// The contribution of one event, to the window and the score window.
    pub fn of_event(e: &WatchEvent) -> Measures {
        let mut m = Measures {
            watch_ms: e.watched_ms as i64,
            ..Measures::default()
        };
        if e.event_type == EventType::StartedVideo {
            m.views = 1;
            m.views_24h = 1;
            m.tier[tier_index(e.tier)] = 1;
            m.device[device_index(e.device)] = 1;
            if let Some(r) = m.region.get_mut(e.region.0 as usize) {
                *r = 1;
            }
        }
        m
    }

    /// Applies `f` to every component, pairwise with `other`.
    fn zip_with(&mut self, other: &Measures, f: impl Fn(&mut i64, i64)) {
        f(&mut self.views, other.views);
        f(&mut self.watch_ms, other.watch_ms);
        f(&mut self.views_24h, other.views_24h);
        for (a, b) in self.tier.iter_mut().zip(other.tier) {
            f(a, b);
        }
        for (a, b) in self.device.iter_mut().zip(other.device) {
            f(a, b);
        }
        for (a, b) in self.region.iter_mut().zip(other.region) {
            f(a, b);
        }
    }

    /// Adds `other`.
    pub fn add(&mut self, other: &Measures) {
        self.zip_with(other, |a, b| *a += b);
    }

    /// The part that leaves the window one window later (everything but `views_24h`).
    pub fn window_part(&self) -> Measures {
        Measures {
            views_24h: 0,
            ..*self
        }
    }

    /// The part that leaves with the score window.
    pub fn score_part(&self) -> Measures {
        Measures {
            views_24h: self.views_24h,
            ..Measures::default()
        }
    }

    /// True if every component is zero. Views, watch time and 24-hour views
    /// first: a title with any measure has one of them, so most answers
    /// take three comparisons.
    pub fn is_zero(&self) -> bool {
        self.views == 0
            && self.watch_ms == 0
            && self.views_24h == 0
            && self
                .tier
                .iter()
                .chain(&self.device)
                .chain(&self.region)
                .all(|v| *v == 0)
    }
}

/// Where a view falls in the breakdowns: its tier, device and region in one
/// number, `tier · 48 + device · 12 + region`. The model's input is keyed by
/// title and cell, so one record carries what one kind of viewer did with
/// one title in one pane, and no record carries the zeros of the others.
pub type Cell = u8;

/// Number of cells.
pub const N_CELLS: usize = N_TIERS * N_DEVICES * N_REGIONS;

/// The cell of an event.
pub fn cell_of(e: &WatchEvent) -> Cell {
    // Regions are checked when events are decoded; the bound keeps the cell in range regardless.
    let region = (e.region.0 as usize).min(N_REGIONS - 1);
    (tier_index(e.tier) * N_DEVICES * N_REGIONS + device_index(e.device) * N_REGIONS + region)
        as Cell
}

/// Tier, device and region index of a cell.
pub fn cell_parts(cell: Cell) -> (usize, usize, usize) {
    let c = cell as usize;
    (
        c / (N_DEVICES * N_REGIONS),
        (c / N_REGIONS) % N_DEVICES,
        c % N_REGIONS,
    )
}

/// Views and watch time of one title and cell in one pane: the difference
/// type of the model's input.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Obs {
    /// Views (`started_video` events).
    pub views: i64,
    /// Milliseconds watched.
    pub watch_ms: i64,
}

impl Obs {
    /// What one event adds.
    pub fn of_event(e: &WatchEvent) -> Obs {
        Obs {
            views: i64::from(e.event_type == EventType::StartedVideo),
            watch_ms: e.watched_ms as i64,
        }
    }
}

impl std::ops::AddAssign for Obs {
    fn add_assign(&mut self, rhs: Obs) {
        self.views += rhs.views;
        self.watch_ms += rhs.watch_ms;
    }
}

impl differential_dataflow::difference::IsZero for Obs {
    fn is_zero(&self) -> bool {
        self.views == 0 && self.watch_ms == 0
    }
}

impl differential_dataflow::difference::Semigroup for Obs {
    fn plus_equals(&mut self, rhs: &Self) {
        *self += *rhs;
    }
}

impl differential_dataflow::difference::Monoid for Obs {
    fn zero() -> Self {
        Obs::default()
    }
}

impl differential_dataflow::difference::Abelian for Obs {
    fn negate(&mut self) {
        self.views = -self.views;
        self.watch_ms = -self.watch_ms;
    }
}

/// A change to a node's measures, as the model applies and forwards it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Delta {
    /// Views and watch time of one cell entering or leaving the window;
    /// `score`: the views also enter the score window.
    Cell {
        /// The cell.
        cell: Cell,
        /// Its views and watch time.
        obs: Obs,
        /// Whether the views count in the score window too.
        score: bool,
    },
    /// Views leaving the score window.
    Score(i64),
    /// Whole measures: a title's measures moving with a catalog change, or
    /// windows carried over a restore.
    Whole(Measures),
}

impl Delta {
    /// Adds the change to `m`; `with_score`: `views_24h` too.
    pub fn apply(&self, m: &mut Measures, with_score: bool) {
        match *self {
            Delta::Cell { cell, obs, score } => {
                m.views += obs.views;
                m.watch_ms += obs.watch_ms;
                if obs.views != 0 {
                    if score && with_score {
                        m.views_24h += obs.views;
                    }
                    let (t, d, r) = cell_parts(cell);
                    m.tier[t] += obs.views;
                    m.device[d] += obs.views;
                    m.region[r] += obs.views;
                }
            }
            Delta::Score(v) => {
                if with_score {
                    m.views_24h += v;
                }
            }
            Delta::Whole(w) => {
                m.add(&w);
                if !with_score {
                    m.views_24h -= w.views_24h;
                }
            }
        }
    }

    /// The change to `views_24h`.
    pub fn views_24h(&self) -> i64 {
        match *self {
            Delta::Cell { obs, score, .. } => {
                if score {
                    obs.views
                } else {
                    0
                }
            }
            Delta::Score(v) => v,
            Delta::Whole(w) => w.views_24h,
        }
    }
}

impl differential_dataflow::difference::IsZero for Measures {
    fn is_zero(&self) -> bool {
        Measures::is_zero(self)
    }
}

impl differential_dataflow::difference::Semigroup for Measures {
    fn plus_equals(&mut self, rhs: &Self) {
        self.add(rhs);
    }
}

impl differential_dataflow::difference::Monoid for Measures {
    fn zero() -> Self {
        Measures::default()
    }
}

impl differential_dataflow::difference::Abelian for Measures {
    fn negate(&mut self) {
        let zero = Measures::default();
        self.zip_with(&zero, |a, _| *a = -*a);
    }
}

impl differential_dataflow::difference::Multiply<i64> for Measures {
    type Output = Measures;
    fn multiply(mut self, rhs: &i64) -> Measures {
        let zero = Measures::default();
        self.zip_with(&zero, |a, _| *a *= *rhs);
        self
    }
}

/// Index of a tier in [`Measures::tier`].
pub fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Free => 0,
        Tier::Paid => 1,
    }
}

/// Index of a device in [`Measures::device`].
pub fn device_index(d: Device) -> usize {
    match d {
        Device::Mobile => 0,
        Device::Tv => 1,
        Device::Web => 2,
        Device::Tablet => 3,
    }
}

/// Where a title sits, resolved from the catalog: the nodes its measures
/// roll up to and the end of its live event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Info {
    /// What it is.
    pub kind: Kind,
    /// Its parent.
    pub parent: Option<ContentId>,
    /// The show it rolls up to (episodes).
    pub show: Option<ContentId>,
    /// The channel it rolls up to.
    pub channel: Option<ContentId>,
    /// Clips: when their live event ends; live events: their own end.
    pub event_end: Option<Millis>,
}

/// A catalog entry as the dataflow holds it: `(id, (kind, parent, ends_at))`.
pub type CatalogEntry = (ContentId, (Kind, Option<ContentId>, Option<Millis>));

/// The catalog entry of a title.
pub fn entry(t: &Title) -> CatalogEntry {
    (t.id, (t.kind, t.parent, t.ends_at))
}

/// Resolves a title's [`Info`] from its entry and its parent's entry.
pub fn resolve(
    kind: Kind,
    parent: Option<ContentId>,
    ends_at: Option<Millis>,
    parents: Option<(Kind, Option<ContentId>, Option<Millis>)>,
) -> Info {
    let grand = parents.and_then(|(_, g, _)| g);
    let (show, channel, event_end) = match kind {
        Kind::Channel => (None, None, None),
        Kind::Show | Kind::Movie => (None, parent, None),
        Kind::Live => (None, parent, ends_at),
        Kind::Episode => (parent, grand, None),
        Kind::Clip => (None, grand, parents.and_then(|(_, _, e)| e)),
    };
    Info {
        kind,
        parent,
        show,
        channel,
        event_end,
    }
}

/// The nodes a title's measures roll up to, and whether `views_24h` goes too.
pub fn ancestors(info: &Info) -> impl Iterator<Item = (ContentId, bool)> {
    let episode = info.kind == Kind::Episode;
    info.show
        .map(|s| (s, episode))
        .into_iter()
        .chain(info.channel.map(|c| (c, episode)))
}

/// Model settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct ModelConfig {
    /// Maintain the model (rollups, scores, breakdowns, rankings) beside the window counts.
    pub enabled: bool,
    /// Entries per ranking.
    pub top_k: usize,
    /// Width of the score window.
    pub score_window: String,
    /// Half-life of a clip's trend after its live event ends.
    pub clip_half_life: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            enabled: true,
            top_k: 10,
            score_window: "24h".into(),
            clip_half_life: "30m".into(),
        }
    }
}

/// The model settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelSpec {
    /// Entries per ranking.
    pub top_k: usize,
    /// Score window width, in panes.
    pub score_panes: u64,
    /// Half-life, ms.
    pub half_life_ms: Millis,
}

impl ModelConfig {
    /// Checks and resolves the settings against a pane width.
    pub fn spec(&self, slide_ms: Millis, window_panes: u64) -> Result<ModelSpec, String> {
        let score = crate::core::time::parse_duration(&self.score_window)
            .map_err(|e| format!("model.score-window: {e}"))?;
        let half = crate::core::time::parse_duration(&self.clip_half_life)
            .map_err(|e| format!("model.clip-half-life: {e}"))?;
        if score <= 0 || score % slide_ms != 0 {
            return Err(format!(
                "model.score-window must be a positive multiple of the slide ({slide_ms} ms)"
            ));
        }
        let score_panes = (score / slide_ms) as u64;
        if score_panes < window_panes {
            return Err("model.score-window must be at least the window".into());
        }
        if half <= 0 {
            return Err("model.clip-half-life must be positive".into());
        }
        if self.top_k == 0 || self.top_k > 1000 {
            return Err("model.top-k must be within 1..=1000".into());
        }
        Ok(ModelSpec {
            top_k: self.top_k,
            score_panes,
            half_life_ms: half,
        })
    }
}

/// The decay factor of a title at window end `t` (exclusive, ms).
pub fn decay(info: Option<&Info>, t: Millis, half_life_ms: Millis) -> f64 {
    match info {
        Some(Info {
            kind: Kind::Clip,
            event_end: Some(end),
            ..
        }) if t > *end => (-((t - end) as f64) / half_life_ms as f64).exp2(),
        _ => 1.0,
    }
}

/// Score in parts per million of the score window's episode views.
pub fn score_ppm(views_24h: i64, total: i64) -> i64 {
    if total <= 0 {
        0
    } else {
        ((views_24h as i128 * 1_000_000) / total as i128) as i64
    }
}

/// One node (title, show or channel) as the snapshot and the API show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    /// The node.
    pub id: ContentId,
    /// From the catalog; `None` for ids the catalog does not know.
    pub info: Option<Info>,
    /// Its measures (rolled up for shows and channels).
    pub m: Measures,
    /// Score, parts per million.
    pub score_ppm: i64,
    /// Decay factor at the window's end.
    pub decay: f64,
}

impl NodeRow {
    /// Views times decay.
    pub fn trend(&self) -> f64 {
        self.m.views as f64 * self.decay
    }
}

/// Ranking categories: the catalog's watchable kinds, shows, and `all`.
pub const CATEGORIES: [&str; 6] = ["episode", "show", "movie", "live", "clip", "all"];

/// The categories a node is ranked in.
pub fn categories_of(kind: Option<Kind>) -> &'static [&'static str] {
    match kind {
        Some(Kind::Episode) => &["episode", "all"],
        Some(Kind::Show) => &["show", "all"],
        Some(Kind::Movie) => &["movie", "all"],
        Some(Kind::Live) => &["live", "all"],
        Some(Kind::Clip) => &["clip", "all"],
        Some(Kind::Channel) | None => &[],
    }
}

/// The value a node is ranked by in `category` and `region` (`None`: global).
pub fn rank_value(row: &NodeRow, category: &str, region: Option<usize>) -> f64 {
    match region {
        Some(r) => row.m.region.get(r).copied().unwrap_or(0) as f64 * row.decay,
        None => match category {
            "episode" | "show" => row.score_ppm as f64,
            _ => row.trend(),
        },
    }
}

/// The best `k` of `rows` in one ranking (`region` `None`: global), with the
/// value each is ranked by; ties go to the smaller id.
pub fn top<'a>(
    rows: impl IntoIterator<Item = &'a NodeRow>,
    category: &str,
    region: Option<usize>,
    k: usize,
) -> Vec<(f64, &'a NodeRow)> {
    let mut ranked: Vec<(f64, &NodeRow)> = rows
        .into_iter()
        .filter(|r| categories_of(r.info.map(|i| i.kind)).contains(&category))
        .map(|r| (rank_value(r, category, region), r))
        .filter(|(v, _)| *v > 0.0)
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    ranked.truncate(k);
    ranked
}

/// One entry of a ranking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopEntry {
    /// Category.
    pub category: String,
    /// Region code, or empty for the global ranking.
    pub region: String,
    /// 1-based rank.
    pub rank: usize,
    /// The node.
    pub id: ContentId,
    /// The value ranked by.
    pub value: f64,
}

/// Ranks `rows` in every category, globally and per region: the best `k`
/// with a positive value, ties to the smaller id. Ranking the merged
/// per-worker top-k lists gives the global top-k, because each worker
/// contributes its own best `k`.
pub fn rank_all<'a>(rows: impl IntoIterator<Item = &'a NodeRow>, k: usize) -> Vec<TopEntry> {
    // One list per (category, scope), scope 0 global and r + 1 region r.
    let scopes = N_REGIONS + 1;
    let mut lists: Vec<Vec<(f64, ContentId)>> = vec![Vec::new(); CATEGORIES.len() * scopes];
    for row in rows {
        for cat in categories_of(row.info.map(|i| i.kind)) {
            let c = CATEGORIES.iter().position(|x| x == cat).unwrap_or(0);
            let global = rank_value(row, cat, None);
            if global > 0.0 {
                lists[c * scopes].push((global, row.id));
            }
            if row.m.views == 0 {
                continue; // no views, no region has any
            }
            for r in 0..N_REGIONS {
                let v = rank_value(row, cat, Some(r));
                if v > 0.0 {
                    lists[c * scopes + r + 1].push((v, row.id));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (at, mut list) in lists.into_iter().enumerate() {
        let (c, r) = (at / scopes, at % scopes);
        let by =
            |a: &(f64, ContentId), b: &(f64, ContentId)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if list.len() > k {
            list.select_nth_unstable_by(k - 1, by);
            list.truncate(k);
        }
        list.sort_unstable_by(by);
        for (i, (value, id)) in list.into_iter().enumerate() {
            out.push(TopEntry {
                category: CATEGORIES[c].to_string(),
                region: if r == 0 {
                    String::new()
                } else {
                    REGIONS[r - 1].to_string()
                },
                rank: i + 1,
                id,
                value,
            });
        }
    }
    out
}

/// Builds the node rows of one shard: scores from the score window's
/// episode total, decay at window end `t`.
pub fn node_rows<'a, S: std::hash::BuildHasher>(
    measures: impl IntoIterator<Item = (&'a ContentId, &'a Measures)>,
    info: &std::collections::HashMap<ContentId, Info, S>,
    total_24h: i64,
    t: Millis,
    half_life_ms: Millis,
) -> Vec<NodeRow> {
    // Sort the keys, not the rows: a row is a few hundred bytes, and moving
    // them through a sort cost more than building them.
    let mut shown: Vec<(ContentId, &Measures)> = measures
        .into_iter()
        .filter(|(_, m)| !m.is_zero())
        .map(|(&id, m)| (id, m))
        .collect();
    shown.sort_unstable_by_key(|(id, _)| *id);
    let mut rows = Vec::with_capacity(shown.len());
    rows.extend(
        shown.into_iter().map(|(id, m)| {
            NodeRow::new(id, info.get(&id).copied(), *m, total_24h, t, half_life_ms)
        }),
    );
    rows
}

impl NodeRow {
    /// The row of node `id`: its score from the score window's episode
    /// total, its decay at window end `t`.
    pub fn new(
        id: ContentId,
        info: Option<Info>,
        m: Measures,
        total_24h: i64,
        t: Millis,
        half_life_ms: Millis,
    ) -> NodeRow {
        let scored = matches!(
            info.map(|i| i.kind),
            Some(Kind::Episode | Kind::Show | Kind::Channel)
        );
        NodeRow {
            id,
            info,
            m,
            score_ppm: if scored {
                score_ppm(m.views_24h, total_24h)
            } else {
                0
            },
            decay: decay(info.as_ref(), t, half_life_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_negate_and_split_into_their_window_parts() {
        let m = Measures {
            views: 1,
            watch_ms: 2,
            views_24h: 3,
            tier: [4, 5],
            device: [6, 7, 8, 9],
            region: std::array::from_fn(|i| 10 + i as i64),
        };
        let mut n = m;
        differential_dataflow::difference::Abelian::negate(&mut n);
        n.add(&m);
        assert!(n.is_zero());
        let mut w = m.window_part();
        w.add(&m.score_part());
        assert_eq!(w, m);
    }

    #[test]
    fn cells_and_deltas_add_up_to_the_measures_of_events() {
        use crate::core::event::{Region, WatchEvent};
        let mut from_events = Measures::default();
        let mut from_cells = Measures::default();
        let mut cells = std::collections::HashSet::new();
        for (i, tier) in [Tier::Free, Tier::Paid].into_iter().enumerate() {
            for (j, device) in [Device::Mobile, Device::Tv, Device::Web, Device::Tablet]
                .into_iter()
                .enumerate()
            {
                for r in 0..N_REGIONS {
                    let e = WatchEvent {
                        event_type: if (i + j + r) % 3 == 0 {
                            EventType::Heartbeat
                        } else {
                            EventType::StartedVideo
                        },
                        watched_ms: (i * 100 + j * 10 + r) as u32,
                        region: Region(r as u8),
                        tier,
                        device,
                        event_id: 1,
                        user_id: 2,
                        content_id: 3,
                        event_time: 1_767_225_600_000,
                    };
                    let cell = cell_of(&e);
                    assert!((cell as usize) < N_CELLS);
                    assert_eq!(cell_parts(cell), (i, j, r));
                    cells.insert(cell);
                    from_events.add(&Measures::of_event(&e));
                    Delta::Cell {
                        cell,
                        obs: Obs::of_event(&e),
                        score: true,
                    }
                    .apply(&mut from_cells, true);
                }
            }
        }
        assert_eq!(cells.len(), N_CELLS);
        assert_eq!(from_cells, from_events);
        // Leaving the window takes all but the score window's views; leaving that takes the rest.
        let mut left = from_cells;
        let mut gone = from_events.window_part();
        differential_dataflow::difference::Abelian::negate(&mut gone);
        Delta::Whole(gone).apply(&mut left, true);
        Delta::Score(-from_events.views_24h).apply(&mut left, true);
        assert!(left.is_zero());
    }

    #[test]
    fn decay_halves_per_half_life_and_scores_are_shares() {
        let clip = Info {
            kind: Kind::Clip,
            parent: Some(1),
            show: None,
            channel: Some(2),
            event_end: Some(1_000_000),
        };
        assert_eq!(decay(Some(&clip), 1_000_000, 60_000), 1.0);
        assert_eq!(decay(Some(&clip), 1_060_000, 60_000), 0.5);
        assert_eq!(decay(Some(&clip), 1_120_000, 60_000), 0.25);
        let live = Info {
            kind: Kind::Live,
            ..clip
        };
        assert_eq!(decay(Some(&live), 9_000_000, 60_000), 1.0);
        assert_eq!(score_ppm(1, 3), 333_333);
        assert_eq!(score_ppm(5, 0), 0);
    }

    #[test]
    fn rankings_break_ties_by_id_and_merge_exactly() {
        let row = |id, views, kind| NodeRow {
            id,
            info: Some(Info {
                kind,
                parent: None,
                show: None,
                channel: None,
                event_end: None,
            }),
            m: Measures {
                views,
                ..Measures::default()
            },
            score_ppm: 0,
            decay: 1.0,
        };
        let rows: Vec<NodeRow> = (0..50)
            .map(|i| row(i, (i % 7) as i64, Kind::Movie))
            .collect();
        let all = rank_all(&rows, 3);
        let movies: Vec<_> = all
            .iter()
            .filter(|e| e.category == "movie" && e.region.is_empty())
            .map(|e| e.id)
            .collect();
        assert_eq!(movies, vec![6, 13, 20]);
        // Two shards' top-3 lists, merged and re-ranked, give the same answer.
        let (a, b): (Vec<_>, Vec<_>) = rows.iter().cloned().partition(|r| r.id % 2 == 0);
        let pick = |part: &[NodeRow]| -> Vec<NodeRow> {
            let top = rank_all(part, 3);
            part.iter()
                .filter(|r| top.iter().any(|e| e.id == r.id))
                .cloned()
                .collect()
        };
        let mut merged = pick(&a);
        merged.extend(pick(&b));
        assert_eq!(rank_all(&merged, 3), all);
    }
}
