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
