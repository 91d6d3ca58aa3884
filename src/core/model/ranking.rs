//! Scores, trends and rankings: the decay of a clip, an episode's share of
//! the score window, and the top titles of a category and region.

use serde::{Deserialize, Serialize};

use super::*;
use crate::core::catalog::Kind;
use crate::core::event::ContentId;
use crate::core::time::Millis;

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
    /// Its kind from the catalog; `None` for ids the catalog does not know.
    pub kind: Option<Kind>,
    /// Its parent in the catalog. Only the kind and the parent of a node's
    /// catalog info are shown: a row is 48 bytes smaller than with all of
    /// it, and an hour holds a row per title.
    pub parent: Option<ContentId>,
    /// Its measures (rolled up for shows and channels), with 32-bit
    /// breakdown counts where they fit: an hour holds a row per title.
    pub m: Tally,
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
        Some(r) => row.m.region(r) as f64 * row.decay,
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
    let mut best = Best::new(k);
    for r in rows {
        if categories_of(r.kind).contains(&category) {
            best.offer(rank_value(r, category, region), r.id, r);
        }
    }
    best.into_sorted()
        .into_iter()
        .map(|(v, _, r)| (v, r))
        .collect()
}

/// The best `k` entries offered, by value (larger first), ties to the
/// smaller id; entries whose value is not positive are not ranked. It holds
/// at most `2k` entries whatever it is offered: when full it keeps the best
/// `k` and from then on refuses anything that would not beat the worst of
/// them, so ranking a million rows costs no list of a million.
///
/// ```
/// use popularity::core::model::Best;
///
/// let mut best = Best::new(2);
/// for (value, id) in [(1.0, 7), (3.0, 9), (0.0, 1), (3.0, 4), (2.0, 2)] {
///     best.offer(value, id, ());
/// }
/// let ids: Vec<u64> = best.into_sorted().into_iter().map(|(_, id, ())| id).collect();
/// assert_eq!(ids, [4, 9]);
/// ```
pub struct Best<T> {
    k: usize,
    held: Vec<(f64, ContentId, T)>,
    /// The worst of the best `k` once the list was first cut to them.
    floor: Option<(f64, ContentId)>,
}

impl<T> Best<T> {
    /// Keeps the best `k`.
    pub fn new(k: usize) -> Best<T> {
        Best {
            k,
            held: Vec::new(),
            floor: None,
        }
    }

    /// Offers an entry.
    pub fn offer(&mut self, value: f64, id: ContentId, item: T) {
        if value.is_nan() || value <= 0.0 || self.k == 0 {
            return;
        }
        if let Some(floor) = self.floor {
            if better((value, id), floor) != std::cmp::Ordering::Less {
                return;
            }
        }
        self.held.push((value, id, item));
        if self.held.len() >= 2 * self.k {
            self.cut();
        }
    }

    /// Keeps the best `k` of what is held.
    fn cut(&mut self) {
        let k = self.k;
        if self.held.len() > k {
            self.held
                .select_nth_unstable_by(k - 1, |a, b| better((a.0, a.1), (b.0, b.1)));
            self.held.truncate(k);
        }
        self.floor = self
            .held
            .iter()
            .map(|e| (e.0, e.1))
            .max_by(|a, b| better(*a, *b));
    }

    /// The best `k`, best first.
    pub fn into_sorted(mut self) -> Vec<(f64, ContentId, T)> {
        if self.held.len() > self.k {
            self.cut();
        }
        self.held
            .sort_unstable_by(|a, b| better((a.0, a.1), (b.0, b.1)));
        self.held
    }
}

/// The ranking order: `Less` if `a` ranks above `b` (larger value, then
/// smaller id).
fn better(a: (f64, ContentId), b: (f64, ContentId)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
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
    rank_picked(rows, k).0
}

/// [`rank_all`], and the positions in `rows` of the rows that made any
/// list, in order and once each: the worker's candidates are those rows,
/// found without a lookup per row.
pub fn rank_picked<'a>(
    rows: impl IntoIterator<Item = &'a NodeRow>,
    k: usize,
) -> (Vec<TopEntry>, Vec<usize>) {
    // One list per (category, scope), scope 0 global and r + 1 region r.
    let scopes = N_REGIONS + 1;
    let mut lists: Vec<Best<usize>> = (0..CATEGORIES.len() * scopes)
        .map(|_| Best::new(k))
        .collect();
    for (at, row) in rows.into_iter().enumerate() {
        let places = category_places(row.kind);
        for &c in places {
            let value = rank_value(row, CATEGORIES[c], None);
            lists[c * scopes].offer(value, row.id, at);
        }
        if row.m.views == 0 || places.is_empty() {
            continue; // no views, no region has any
        }
        // A region's value is the same in every category (`rank_value`).
        let counts = row.m.breakdown();
        for (r, &n) in counts[N_TIERS + N_DEVICES..].iter().enumerate() {
            let value = n as f64 * row.decay;
            for &c in places {
                lists[c * scopes + r + 1].offer(value, row.id, at);
            }
        }
    }
    let (mut out, mut picked) = (Vec::new(), Vec::new());
    for (at, list) in lists.into_iter().enumerate() {
        let (c, r) = (at / scopes, at % scopes);
        for (i, (value, id, row)) in list.into_sorted().into_iter().enumerate() {
            picked.push(row);
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
    picked.sort_unstable();
    picked.dedup();
    (out, picked)
}

/// The places in [`CATEGORIES`] of the categories a node is ranked in
/// ([`categories_of`]).
fn category_places(kind: Option<Kind>) -> &'static [usize] {
    match kind {
        Some(Kind::Episode) => &[0, 5],
        Some(Kind::Show) => &[1, 5],
        Some(Kind::Movie) => &[2, 5],
        Some(Kind::Live) => &[3, 5],
        Some(Kind::Clip) => &[4, 5],
        Some(Kind::Channel) | None => &[],
    }
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
    rows.extend(shown.into_iter().map(|(id, m)| {
        NodeRow::new(
            id,
            info.get(&id).copied(),
            Tally::from(*m),
            total_24h,
            t,
            half_life_ms,
        )
    }));
    rows
}

impl NodeRow {
    /// The row of node `id`: its score from the score window's episode
    /// total, its decay at window end `t`.
    pub fn new(
        id: ContentId,
        info: Option<Info>,
        m: Tally,
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
            kind: info.map(|i| i.kind),
            parent: info.and_then(|i| i.parent),
            score_ppm: if scored {
                score_ppm(m.views_24h, total_24h)
            } else {
                0
            },
            decay: decay(info.as_ref(), t, half_life_ms),
            m,
        }
    }
}
