//! The downstream ranker: reads published hours and ranks titles.
//!
//! This is what an hourly clip ranker or a daily show ranker does with the
//! snapshots: pick a category, take one hour or the last `N`, optionally
//! weigh older hours down with a half-life, and rank. Shows and channels
//! are ranked by the views of the titles below them in the catalog. Only
//! hours with a `_SUCCESS` manifest are read; ties break by content id.

use std::collections::HashMap;

use serde::Serialize;

use crate::core::catalog::{Catalog, Kind};
use crate::core::error::{Error, Result};
use crate::core::event::ContentId;
use crate::sink::layout::{published_hours, read_hour};
use crate::sink::store::ObjectStore;

/// What to rank.
#[derive(Clone, Debug)]
pub struct RankQuery {
    /// Category to rank.
    pub category: Kind,
    /// Last hour to include (hours since the epoch); `None`: the newest published.
    pub end_hour: Option<u64>,
    /// Number of hours ending at `end_hour` to combine.
    pub hours: u64,
    /// Weight of an hour `a` hours older than the newest: `0.5^(a / half_life)`.
    pub half_life_hours: Option<f64>,
    /// How many to return (0: all).
    pub top: usize,
}

/// One ranked title.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ranked {
    /// 1-based position.
    pub rank: usize,
    /// The title (or show, or channel).
    pub content_id: ContentId,
    /// Its name in the catalog.
    pub name: String,
    /// Decayed sum of views (equal to `views` without decay).
    pub score: f64,
    /// Views summed over the hours read.
    pub views: i64,
}

/// The result and what it was computed from.
#[derive(Clone, Debug, Serialize)]
pub struct Ranking {
    /// Hours read (hours since the epoch), oldest first.
    pub hours_read: Vec<u64>,
    /// Hours of the range that are not published.
    pub hours_missing: Vec<u64>,
    /// Views of titles absent from the catalog (not rankable).
    pub unknown_views: i64,
    /// The ranking.
    pub rows: Vec<Ranked>,
}

/// Ranks `query.category` over the published hours in `store`.
pub fn rank(
    store: &dyn ObjectStore,
    catalog: &Catalog,
    query: &RankQuery,
    mut progress: impl FnMut(usize, usize),
) -> Result<Ranking> {
    let published = published_hours(store)?;
    let end = match query.end_hour {
        Some(h) => h,
        None => *published
            .last()
            .ok_or_else(|| Error::Input(format!("no published hours in {}", store.describe())))?,
    };
    let n = query.hours.max(1);
    let wanted: Vec<u64> = (end.saturating_sub(n - 1)..=end).collect();
    let (have, missing): (Vec<u64>, Vec<u64>) = wanted
        .iter()
        .partition(|h| published.binary_search(h).is_ok());
    let mut scores: HashMap<ContentId, (f64, i64)> = HashMap::new();
    let mut unknown = 0i64;
    for (i, &hour) in have.iter().enumerate() {
        progress(i + 1, have.len());
        let Some((_, rows)) = read_hour(store, hour)? else {
            continue;
        };
        let weight = match query.half_life_hours {
            Some(hl) if hl > 0.0 => 0.5f64.powf((end - hour) as f64 / hl),
            _ => 1.0,
        };
        for r in rows {
            if catalog.get(r.content_id).is_none() {
                unknown += r.views;
                continue;
            }
            if let Some(b) = catalog.bucket(r.content_id, query.category) {
                let e = scores.entry(b).or_insert((0.0, 0));
                e.0 += r.views as f64 * weight;
                e.1 += r.views;
            }
        }
    }
    let mut rows: Vec<(ContentId, f64, i64)> =
        scores.into_iter().map(|(id, (s, v))| (id, s, v)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if query.top > 0 {
        rows.truncate(query.top);
    }
    let rows = rows
        .into_iter()
        .enumerate()
        .map(|(i, (id, score, views))| Ranked {
            rank: i + 1,
            content_id: id,
            name: catalog.get(id).map(|t| t.name.clone()).unwrap_or_default(),
            score,
            views,
        })
        .collect();
    Ok(Ranking {
        hours_read: have,
        hours_missing: missing,
        unknown_views: unknown,
        rows,
    })
}

/// Renders a ranking as an aligned text table.
pub fn to_table(r: &Ranking) -> String {
    let mut out = format!(
        "{:>5}  {:>10}  {:<32}  {:>14}  {:>10}\n",
        "rank", "id", "name", "score", "views"
    );
    for row in &r.rows {
        out.push_str(&format!(
            "{:>5}  {:>10}  {:<32}  {:>14.2}  {:>10}\n",
            row.rank, row.content_id, row.name, row.score, row.views
        ));
    }
    out
}

/// Renders a ranking as CSV with a header.
pub fn to_csv(r: &Ranking) -> String {
    let mut out = String::from("rank,content_id,name,score,views\n");
    for row in &r.rows {
        let name = if row.name.contains([',', '"', '\n']) {
            format!("\"{}\"", row.name.replace('"', "\"\""))
        } else {
            row.name.clone()
        };
        out.push_str(&format!(
            "{},{},{},{},{}\n",
            row.rank, row.content_id, name, row.score, row.views
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Title;
    use crate::core::time::WindowSpec;
    use crate::sink::parquet::{encode_titles, TitleRow};
    use crate::sink::snapshot::{
        hour_prefix, manifest_for, part_name, PartRecord, SUCCESS, TITLES,
    };
    use crate::sink::store::LocalStore;

    fn title(id: u64, kind: Kind, parent: Option<u64>) -> Title {
        Title {
            id,
            kind,
            name: format!("{}-{id}", kind.as_str()),
            parent,
            starts_at: Some(0),
            ends_at: Some(1),
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(vec![
            title(1, Kind::Channel, None),
            title(10, Kind::Channel, None),
            title(2, Kind::Show, Some(1)),
            title(3, Kind::Episode, Some(2)),
            title(4, Kind::Episode, Some(2)),
            title(5, Kind::Show, Some(10)),
            title(6, Kind::Episode, Some(5)),
            title(7, Kind::Movie, Some(1)),
            title(8, Kind::Live, Some(10)),
            title(9, Kind::Clip, Some(8)),
        ])
        .expect("valid catalog")
    }

    /// Publishes `rows` as hour `hour`, split over two parts like two workers would.
    fn publish(store: &LocalStore, hour: u64, rows: &[(u64, i64)]) {
        let w = WindowSpec::hourly();
        let mut records = Vec::new();
        for worker in 0..2 {
            let part: Vec<TitleRow> = rows
                .iter()
                .filter(|(id, _)| (*id as usize) % 2 == worker)
                .map(|&(content_id, views)| TitleRow {
                    content_id,
                    views,
                    window_start: 0,
                    window_end: 1,
                })
                .collect();
            let bytes = encode_titles(&part).expect("encodes");
            store
                .put(
                    &format!("{}{}", hour_prefix(TITLES, hour), part_name(worker)),
                    &bytes,
                )
                .expect("put");
            records.push(PartRecord {
                table: TITLES.to_string(),
                hour,
                name: part_name(worker),
                rows: part.len() as u64,
                bytes: bytes.len() as u64,
            });
        }
        let m = serde_json::to_vec(&manifest_for(&w, TITLES, hour, &records)).expect("json");
        store
            .put(&format!("{}{SUCCESS}", hour_prefix(TITLES, hour)), &m)
            .expect("put");
    }

    #[test]
    fn ranks_categories_over_hours_with_ties_and_decay() {
        let dir = std::env::temp_dir().join(format!("rank-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = LocalStore::new(&dir).expect("store");
        let cat = catalog();
        let h = 490_000;
        publish(
            &store,
            h,
            &[(3, 5), (4, 7), (6, 7), (7, 1), (8, 50), (9, 2), (999, 4)],
        );
        publish(&store, h + 1, &[(3, 9), (4, 1), (6, 3), (9, 20)]);
        // An unpublished hour (parts but no manifest) must be ignored.
        store
            .put(
                &format!("{}{}", hour_prefix(TITLES, h + 2), part_name(0)),
                b"not even parquet",
            )
            .expect("put");
        let q = |category, end_hour, hours, half_life_hours| RankQuery {
            category,
            end_hour,
            hours,
            half_life_hours,
            top: 0,
        };

        // One hour, episodes: 4 and 6 tie at 7 and break by id.
        let r = rank(&store, &cat, &q(Kind::Episode, Some(h), 1, None), |_, _| {}).expect("ranks");
        let ids: Vec<(u64, i64)> = r.rows.iter().map(|x| (x.content_id, x.views)).collect();
        assert_eq!(ids, vec![(4, 7), (6, 7), (3, 5)]);
        assert_eq!(r.unknown_views, 4, "id 999 is not in the catalog");

        // Newest published by default; two hours of shows: show 2 = 5+7+9+1 = 22, show 5 = 7+3 = 10.
        let r = rank(&store, &cat, &q(Kind::Show, None, 2, None), |_, _| {}).expect("ranks");
        assert_eq!(r.hours_read, vec![h, h + 1]);
        let ids: Vec<(u64, i64)> = r.rows.iter().map(|x| (x.content_id, x.views)).collect();
        assert_eq!(ids, vec![(2, 22), (5, 10)]);

        // Channels: 1 gets show 2 and movie 7 = 23; 10 gets show 5, live 8 and clip 9 = 10 + 50 + 22 = 82.
        let r = rank(
            &store,
            &cat,
            &q(Kind::Channel, Some(h + 1), 2, None),
            |_, _| {},
        )
        .expect("ranks");
        let ids: Vec<(u64, i64)> = r.rows.iter().map(|x| (x.content_id, x.views)).collect();
        assert_eq!(ids, vec![(10, 82), (1, 23)]);

        // Decay with a one-hour half-life: clip 9 = 20 + 2/2 = 21; live 8 = 50/2 = 25.
        let r = rank(
            &store,
            &cat,
            &q(Kind::Clip, Some(h + 1), 2, Some(1.0)),
            |_, _| {},
        )
        .expect("ranks");
        assert_eq!(r.rows[0].score, 21.0);
        let r = rank(
            &store,
            &cat,
            &q(Kind::Live, Some(h + 1), 2, Some(1.0)),
            |_, _| {},
        )
        .expect("ranks");
        assert_eq!(r.rows[0].score, 25.0);

        // A range reaching before the data reports the missing hours.
        let r = rank(
            &store,
            &cat,
            &q(Kind::Movie, Some(h + 1), 4, None),
            |_, _| {},
        )
        .expect("ranks");
        assert_eq!(r.hours_missing, vec![h - 2, h - 1]);
        assert_eq!(
            to_csv(&r),
            "rank,content_id,name,score,views\n1,7,movie-7,1,1\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
