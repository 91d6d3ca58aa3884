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
//! - `views`, `watch_ms` and the breakdowns: sums over the 1-hour window.
//! - `views_24h`: views over the 24-hour score window.
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
//!   every category by the region's views times `d`. Ties: smaller id.

mod ranking;
mod spare;
mod tally;

use serde::{Deserialize, Serialize};

use crate::core::catalog::{Kind, Title};
use crate::core::event::{ContentId, Device, EventType, Tier, WatchEvent, REGIONS};
use crate::core::time::Millis;

pub use ranking::{
    categories_of, decay, node_rows, rank_all, rank_picked, rank_value, score_ppm, top, Best,
    NodeRow, TopEntry, CATEGORIES,
};
pub use spare::{give_back, spare_rows};
pub use tally::Tally;

/// Number of regions, tiers and devices.
pub const N_REGIONS: usize = REGIONS.len();
/// Number of tiers.
pub const N_TIERS: usize = 2;
/// Number of devices.
pub const N_DEVICES: usize = 4;
/// Breakdown counts in one array: tiers, then devices, then regions.
pub const N_BREAKDOWN: usize = N_TIERS + N_DEVICES + N_REGIONS;
/// Tier names, in [`Measures::tier`] order.
pub const TIER_NAMES: [&str; N_TIERS] = ["free", "paid"];
/// Device names, in [`Measures::device`] order.
pub const DEVICE_NAMES: [&str; N_DEVICES] = ["mobile", "tv", "web", "tablet"];

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

    /// The breakdown counts: tiers, then devices, then regions.
    pub fn breakdown(&self) -> [i64; N_BREAKDOWN] {
        let mut out = [0; N_BREAKDOWN];
        for (o, v) in out
            .iter_mut()
            .zip(self.tier.iter().chain(&self.device).chain(&self.region))
        {
            *o = *v;
        }
        out
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

/// What a [`Delta`] changes: [`Measures`], or a [`Tally`] holding them in
/// less room. [`Delta::apply`] says what a change adds; this, how it is held.
pub trait Counts {
    /// Adds to views, watch time and 24-hour views.
    fn add_totals(&mut self, views: i64, watch_ms: i64, views_24h: i64);
    /// Adds `v` views to the tier, device and region of [`cell_parts`].
    fn add_cell(&mut self, parts: (usize, usize, usize), v: i64);
    /// Adds breakdown counts (tiers, then devices, then regions).
    fn add_breakdown(&mut self, add: &[i64; N_BREAKDOWN]);
}

impl Counts for Measures {
    fn add_totals(&mut self, views: i64, watch_ms: i64, views_24h: i64) {
        self.views += views;
        self.watch_ms += watch_ms;
        self.views_24h += views_24h;
    }

    fn add_cell(&mut self, (t, d, r): (usize, usize, usize), v: i64) {
        self.tier[t] += v;
        self.device[d] += v;
        self.region[r] += v;
    }

    fn add_breakdown(&mut self, add: &[i64; N_BREAKDOWN]) {
        let all = self
            .tier
            .iter_mut()
            .chain(&mut self.device)
            .chain(&mut self.region);
        for (x, v) in all.zip(add) {
            *x += v;
        }
    }
}

impl Delta {
    /// Adds the change to `m`; `with_score`: `views_24h` too.
    pub fn apply(&self, m: &mut impl Counts, with_score: bool) {
        match *self {
            Delta::Cell { cell, obs, score } => {
                debug_assert!((cell as usize) < N_CELLS, "cell {cell} (a bug)");
                let counted = obs.views != 0;
                let in_score = if counted && score && with_score {
                    obs.views
                } else {
                    0
                };
                m.add_totals(obs.views, obs.watch_ms, in_score);
                if counted {
                    m.add_cell(cell_parts(cell), obs.views);
                }
            }
            Delta::Score(v) => {
                if with_score {
                    m.add_totals(0, 0, v);
                }
            }
            Delta::Whole(w) => {
                let in_score = if with_score { w.views_24h } else { 0 };
                m.add_totals(w.views, w.watch_ms, in_score);
                m.add_breakdown(&w.breakdown());
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
    #[serde(with = "humantime_serde")]
    pub score_window: std::time::Duration,
    /// How far the score window moves at a time: views leave it together,
    /// a step after the step they entered in. At every step's end (every
    /// hour's, with the default of an hour) `views_24h` is exactly the views
    /// of the last `score_window`; between ends it also holds the current
    /// step's earlier panes. The slide itself makes a window exact at every
    /// pane, at a cost of one exit per title and pane instead of per step.
    #[serde(with = "humantime_serde")]
    pub score_slide: std::time::Duration,
    /// Half-life of a clip's trend after its live event ends.
    #[serde(with = "humantime_serde")]
    pub clip_half_life: std::time::Duration,
    /// How a title's changes reach its show, channel and the episode total.
    pub rollup: Rollup,
    /// Titles outside the catalog (ids only clients chose) each worker's
    /// title shard keeps one by one; past it, facts of further such ids are
    /// counted together under [`OVERFLOW_TITLE`].
    pub uncataloged_limit: usize,
}

/// How a title's changes reach its ancestors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rollup {
    /// The title stage keeps each title's route (resolved when its catalog
    /// info changes) and sends each change along it, summed per ancestor.
    #[default]
    Routes,
    /// The title stage sends each title's own change; differential's
    /// `join` with the arranged routes rolls it up: the same model, about
    /// 7× the time and 3× the memory (README, the model's speed); kept as
    /// the reference the routes are tested against.
    Differential,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            enabled: true,
            top_k: 10,
            score_window: std::time::Duration::from_secs(24 * 3600),
            score_slide: std::time::Duration::from_secs(3600),
            clip_half_life: std::time::Duration::from_secs(30 * 60),
            rollup: Rollup::Routes,
            uncataloged_limit: 250_000,
        }
    }
}

/// Counts the facts of ids outside the catalog past a shard's
/// [`ModelConfig::uncataloged_limit`]; no event can carry this id.
pub const OVERFLOW_TITLE: ContentId = crate::core::event::MAX_CONTENT_ID + 1;

/// The model settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelSpec {
    /// Entries per ranking.
    pub top_k: usize,
    /// Score window width, in panes.
    pub score_panes: u64,
    /// How far the score window moves at a time, in panes.
    pub score_step: u64,
    /// Half-life, ms.
    pub half_life_ms: Millis,
    /// How titles' changes reach their ancestors.
    pub rollup: Rollup,
    /// Titles outside the catalog a title shard keeps one by one.
    pub uncataloged_limit: usize,
    /// Panes a title shard sums its sends to ancestors over (job: ≤ lead).
    pub block_panes: u64,
    /// Panes this near the clock (job: plus lateness) are a block each.
    pub near_ms: Millis,
    /// The pane a restore started at (job), where a block ends too.
    pub restored_at: Option<u64>,
}

impl ModelSpec {
    /// The pane at which views that entered in `pane` leave the score
    /// window: one score window after the start of their step.
    ///
    /// ```
    /// use popularity::core::model::ModelConfig;
    ///
    /// let spec = ModelConfig::default().spec(60_000, 60).expect("valid");
    /// // Minute panes, a 24-hour window moving by the hour: every view of
    /// // the hour from pane 120 leaves together, at pane 120 + 1440.
    /// assert_eq!(spec.score_exit(120), 1560);
    /// assert_eq!(spec.score_exit(179), 1560);
    /// assert_eq!(spec.score_exit(180), 1620);
    /// ```
    pub fn score_exit(&self, pane: u64) -> u64 {
        pane - pane % self.score_step + self.score_panes
    }
}

impl ModelConfig {
    /// Checks and resolves the settings against a pane width.
    pub fn spec(&self, slide_ms: Millis, window_panes: u64) -> Result<ModelSpec, String> {
        let score = crate::core::time::millis(self.score_window);
        let half = crate::core::time::millis(self.clip_half_life);
        if score <= 0 || score % slide_ms != 0 {
            return Err(format!(
                "model.score-window must be a positive multiple of the slide ({slide_ms} ms)"
            ));
        }
        let score_panes = (score / slide_ms) as u64;
        let step = crate::core::time::millis(self.score_slide);
        if step <= 0 || step % slide_ms != 0 || 3_600_000 % step != 0 || score % step != 0 {
            return Err(format!(
                "model.score-slide must be a multiple of the slide ({slide_ms} ms) that divides \
                 an hour and the score window"
            ));
        }
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
            score_step: (step / slide_ms) as u64,
            half_life_ms: half,
            rollup: self.rollup,
            uncataloged_limit: self.uncataloged_limit,
            block_panes: 10,
            near_ms: 15 * 60_000,
            restored_at: None,
        })
    }
}

#[cfg(test)]
mod tests;
