//! The query API's answers, as pure functions of the live boards.
//!
//! A request is checked ([`parse`]) the same way on every process before
//! any fan-out; each process computes its share ([`local_answer`]) from its
//! own shards; [`merge`] combines the shares into the answer, which is
//! exact: rankings merge each process's top k, totals add up, and a title
//! lives on one process.

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::StatusCode;

pub use super::cache::LiveModel;
use crate::core::catalog::{Catalog, Kind};
use crate::core::model::{DEVICE_NAMES, TIER_NAMES};
use crate::core::time::{rfc3339, WindowSpec};
use crate::dataflow::live::LiveBoard;

/// What the query API answers from.
pub struct Api {
    /// The live window shards of this process.
    pub live: Arc<LiveBoard>,
    /// Titles, for names, categories and rollups.
    pub catalog: Arc<Catalog>,
    /// Window geometry, to report what `as_of` covers.
    pub window: WindowSpec,
    /// Processes in the cluster; with more than one, answers merge every process's share.
    pub processes: usize,
    /// The live model, when the job maintains it.
    pub model: Option<Arc<crate::dataflow::live::ModelBoard>>,
    /// This process's index.
    pub process: usize,
    /// Whether the boards carry provisional counts (`[metrics] provisional`).
    pub provisional: bool,
    /// Answers already computed at the boards' current versions.
    pub(crate) answers: super::cache::Answers,
}

/// A refusal: the status and a JSON body that says why.
pub fn bad(status: StatusCode, msg: impl Into<String>) -> Refusal {
    (status, serde_json::json!({ "error": msg.into() }))
}

/// A bad request or an unavailable answer.
pub type Refusal = (StatusCode, serde_json::Value);

/// An answer: its status and JSON body.
pub type Answer = (StatusCode, serde_json::Value);

/// A query's arguments, percent-decoded; a repeated name keeps its last value.
///
/// ```
/// use popularity::serve::query::arguments;
/// let args = arguments("category=episode&region=IN%2DMH&k=5");
/// assert_eq!(args["region"], "IN-MH");
/// assert_eq!(args.len(), 3);
/// ```
pub fn arguments(query: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A checked request: the route and its parsed parameters.
#[derive(Clone, Debug)]
pub enum Request {
    /// `/api/top`: the k titles (or rollups) of a kind with the most views.
    Top {
        /// Which kind of title.
        kind: Kind,
        /// How many.
        k: usize,
        /// Rank by the provisional counts (every view received so far).
        provisional: bool,
    },
    /// `/api/titles/<id>`: one title's views and model row.
    Title {
        /// The title.
        id: u64,
    },
    /// `/api/trending`: the k titles of a category ranked by the model.
    Trending {
        /// A model category (`all`, `episode`, ...).
        category: &'static str,
        /// Only views from this region (its index).
        region: Option<usize>,
        /// How many.
        k: usize,
    },
    /// `/api/breakdown`: views by tier, device and region.
    Breakdown,
}

fn parse_k(args: &BTreeMap<String, String>) -> Result<usize, Refusal> {
    match args.get("k").map(|k| k.parse::<usize>()) {
        None => Ok(10),
        Some(Ok(k)) if (1..=1000).contains(&k) => Ok(k),
        Some(_) => Err(bad(
            StatusCode::BAD_REQUEST,
            "k must be a whole number from 1 to 1000",
        )),
    }
}

fn parse_provisional(api: &Api, args: &BTreeMap<String, String>) -> Result<bool, Refusal> {
    let asked = match args.get("provisional").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!("provisional must be true or false, not `{other}`"),
            ))
        }
    };
    if asked && !api.provisional {
        return Err(bad(
            StatusCode::NOT_FOUND,
            "this job does not serve provisional counts ([metrics] provisional = false)",
        ));
    }
    Ok(asked)
}

fn only(args: &BTreeMap<String, String>, allowed: &[&str], what: &str) -> Result<(), Refusal> {
    match args.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter `{k}` ({what})"),
        )),
        None => Ok(()),
    }
}

/// Checks a request (`route` without `/api/local`) the same way on every
/// process, before any fan-out.
pub fn parse(api: &Api, route: &str, args: &BTreeMap<String, String>) -> Result<Request, Refusal> {
    if let Some(id) = route.strip_prefix("/api/titles/") {
        if !args.is_empty() {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                "/api/titles/<id> takes no parameters",
            ));
        }
        let Ok(id) = id.parse::<u64>() else {
            return Err(bad(
                StatusCode::BAD_REQUEST,
                format!("`{id}` is not a content id"),
            ));
        };
        if api.catalog.get(id).is_none() {
            return Err(bad(
                StatusCode::NOT_FOUND,
                format!("no title {id} in the catalog"),
            ));
        }
        return Ok(Request::Title { id });
    }
    match route {
        "/api/top" => {
            only(args, &["category", "k", "provisional"], "category, k, provisional")?;
            let category = args.get("category").map(String::as_str).unwrap_or("episode");
            let Some(kind) = Kind::parse(category) else {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!("unknown category `{category}` (movie, show, episode, live, clip, channel)"),
                ));
            };
            let provisional = parse_provisional(api, args)?;
            Ok(Request::Top { kind, k: parse_k(args)?, provisional })
        }
        "/api/trending" | "/api/breakdown" if api.model.is_none() => Err(bad(
            StatusCode::NOT_FOUND,
            "this job does not maintain the model ([model] enabled = false)",
        )),
        "/api/breakdown" => {
            only(args, &[], "/api/breakdown takes none")?;
            Ok(Request::Breakdown)
        }
        "/api/trending" => {
            only(args, &["category", "region", "k"], "category, region, k")?;
            let category = args.get("category").map(String::as_str).unwrap_or("all");
            let Some(category) = crate::core::model::CATEGORIES.iter().find(|c| **c == category) else {
                return Err(bad(
                    StatusCode::BAD_REQUEST,
                    format!("unknown category `{category}` ({})", crate::core::model::CATEGORIES.join(", ")),
                ));
            };
            let region = match args.get("region").map(String::as_str) {
                None | Some("") => None,
                Some(code) => match crate::core::event::Region::parse(code) {
                    Some(r) => Some(r.0 as usize),
                    None => {
                        return Err(bad(
                            StatusCode::BAD_REQUEST,
                            format!("unknown region `{code}` ({})", crate::core::event::REGIONS.join(", ")),
                        ))
                    }
                },
            };
            Ok(Request::Trending { category, region, k: parse_k(args)? })
        }
        _ => Err(bad(StatusCode::NOT_FOUND, format!("no such endpoint `{route}`; try /api/top?category=episode&k=10, /api/trending?category=all&region=IN-MH, /api/breakdown or /api/titles/<id>"))),
    }
}

/// This process's live window shards and the oldest pane they cover;
/// `None` before every shard has published.
fn published(api: &Api) -> Option<(BTreeMap<usize, crate::dataflow::live::LiveShard>, u64)> {
    let shards = api.live.shards();
    let as_of = shards.values().map(|s| s.as_of).min()?;
    Some((shards, as_of))
}

/// The versions of this process's boards: an answer holds until they move.
pub fn version(api: &Api) -> super::cache::Version {
    (
        api.live.version(),
        api.model.as_ref().map_or(0, |m| m.version()),
    )
}

/// This process's share of an answer, in a mergeable form; computed once
/// per published version of the boards.
pub fn local_answer(api: &Api, request: &Request) -> Result<serde_json::Value, Refusal> {
    let version = (
        api.live.version(),
        api.model.as_ref().map_or(0, |m| m.version()),
    );
    let key = format!("{request:?}");
    if let Some(answer) = api.answers.local(version, &key) {
        return Ok(answer);
    }
    let answer = compute_local(api, request)?;
    api.answers.keep(version, key, &answer);
    Ok(answer)
}

fn compute_local(api: &Api, request: &Request) -> Result<serde_json::Value, Refusal> {
    let none_yet = || {
        bad(
            StatusCode::SERVICE_UNAVAILABLE,
            "nothing published yet; retry in a second",
        )
    };
    match request {
        Request::Top {
            kind, provisional, ..
        } => {
            let (shards, as_of) = published(api).ok_or_else(none_yet)?;
            let mut totals: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
            let early = shards.values().filter_map(|s| s.early.as_deref());
            let added = early.clone().filter(|_| *provisional).map(|e| &e.delta);
            for counts in shards.values().map(|s| &*s.counts).chain(added) {
                for (&id, &v) in counts.iter() {
                    if let Some(b) = api.catalog.bucket(id, *kind) {
                        *totals.entry(b).or_insert(0) += v;
                    }
                }
            }
            // Every bucket: a show's titles may live on several processes.
            let totals: Vec<(u64, i64)> = totals.into_iter().filter(|(_, v)| *v != 0).collect();
            let early_as_of = early.map(|e| e.as_of).max();
            Ok(serde_json::json!({ "as_of": as_of, "early_as_of": early_as_of, "totals": totals }))
        }
        Request::Title { id } => {
            let (shards, as_of) = published(api).ok_or_else(none_yet)?;
            let views: i64 = shards.values().filter_map(|s| s.counts.get(id)).sum();
            let mut out = serde_json::json!({ "as_of": as_of, "views": views });
            let early: Vec<_> = shards.values().filter_map(|s| s.early.as_deref()).collect();
            if let Some(newest) = early.iter().map(|e| e.as_of).max() {
                let added: i64 = early.iter().filter_map(|e| e.delta.get(id)).sum();
                out["early"] = serde_json::json!({ "as_of": newest, "views": views + added });
            }
            if api.model.is_some() {
                let live = live_model(api).ok_or_else(none_yet)?;
                out["model_as_of"] = serde_json::json!(live.as_of);
                out["model"] = match live.rows.iter().find(|r| r.id == *id) {
                    Some(r) => row_json(r, api),
                    None => serde_json::Value::Null,
                };
            }
            Ok(out)
        }
        Request::Breakdown => {
            let live = live_model(api).ok_or_else(none_yet)?;
            // Titles only: shows and channels are sums of titles.
            let mut sum = crate::core::model::Measures::default();
            for r in live
                .rows
                .iter()
                .filter(|r| !matches!(r.kind, Some(Kind::Show | Kind::Channel)))
            {
                sum.add(&r.m.measures());
            }
            Ok(serde_json::json!({
                "as_of": live.as_of,
                "views": sum.views,
                "watch_ms": sum.watch_ms,
                "views_24h_episodes": live.total_24h,
                "by_tier": named(&TIER_NAMES, &sum.tier),
                "by_device": named(&DEVICE_NAMES, &sum.device),
                "by_region": named(&crate::core::event::REGIONS, &sum.region),
            }))
        }
        Request::Trending {
            category,
            region,
            k,
        } => {
            let live = live_model(api).ok_or_else(none_yet)?;
            let ranked = crate::core::model::top(&live.rows, category, *region, *k);
            let titles: Vec<serde_json::Value> = ranked
                .iter()
                .map(|(v, r)| {
                    let mut j = row_json(r, api);
                    j["value"] = serde_json::json!(v);
                    j
                })
                .collect();
            Ok(serde_json::json!({ "as_of": live.as_of, "titles": titles }))
        }
    }
}

/// Merges the local answers of every process into the answer.
pub fn merge(api: &Api, request: &Request, locals: Vec<serde_json::Value>) -> Answer {
    let as_of = |key: &str| {
        locals
            .iter()
            .filter_map(|l| l[key].as_u64())
            .min()
            .unwrap_or(0)
    };
    let newest = |path: &[&str]| {
        locals
            .iter()
            .filter_map(|l| path.iter().fold(l, |v, p| &v[*p]).as_u64())
            .max()
    };
    let window = |pane: u64| {
        let (start, end) = api.window.window_bounds(pane);
        serde_json::json!({ "start": rfc3339(start), "end": rfc3339(end) })
    };
    let sum = |path: &[&str]| -> i64 {
        locals
            .iter()
            .map(|l| path.iter().fold(l, |v, p| &v[*p]).as_i64().unwrap_or(0))
            .sum()
    };
    match request {
        Request::Top {
            kind,
            k,
            provisional,
        } => {
            let titles: Vec<serde_json::Value> = top_totals(&locals, *k)
                .iter()
                .enumerate()
                .map(|(i, (id, v))| {
                    serde_json::json!({ "rank": i + 1, "content_id": id, "name": api.catalog.get(*id).map(|t| t.name.as_str()).unwrap_or(""), "views": v })
                })
                .collect();
            let mut body = serde_json::json!({ "category": kind.as_str(), "k": k, "window": window(as_of("as_of")), "titles": titles });
            if *provisional {
                // The views received so far: the window ends at the newest pane.
                body["provisional"] = serde_json::json!(true);
                body["final_window"] = body["window"].take();
                body["window"] = window(newest(&["early_as_of"]).unwrap_or(as_of("as_of")));
            }
            (StatusCode::OK, body)
        }
        Request::Title { id } => {
            let title = api.catalog.get(*id);
            let mut body = serde_json::json!({
                "content_id": id,
                "name": title.map(|t| t.name.as_str()).unwrap_or(""),
                "kind": title.map(|t| t.kind.as_str()).unwrap_or(""),
                "views": sum(&["views"]),
                "window": window(as_of("as_of")),
            });
            if api.model.is_some() {
                body["model"] = locals
                    .iter()
                    .map(|l| &l["model"])
                    .find(|m| !m.is_null())
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                body["model_window"] = window(as_of("model_as_of"));
            }
            if let Some(pane) = newest(&["early", "as_of"]) {
                body["provisional"] = serde_json::json!({
                    "views": sum(&["early", "views"]),
                    "window": window(pane),
                    "final": false,
                });
            }
            (StatusCode::OK, body)
        }
        Request::Breakdown => {
            let group = |key: &str, names: &[&str]| -> serde_json::Map<String, serde_json::Value> {
                names
                    .iter()
                    .map(|n| (n.to_string(), serde_json::json!(sum(&[key, n]))))
                    .collect()
            };
            (
                StatusCode::OK,
                serde_json::json!({
                    "window": window(as_of("as_of")),
                    "views": sum(&["views"]),
                    "watch_ms": sum(&["watch_ms"]),
                    // Every process holds the whole episode total.
                    "views_24h_episodes": locals.iter().filter_map(|l| l["views_24h_episodes"].as_i64()).max().unwrap_or(0),
                    "by_tier": group("by_tier", &TIER_NAMES),
                    "by_device": group("by_device", &DEVICE_NAMES),
                    "by_region": group("by_region", &crate::core::event::REGIONS),
                }),
            )
        }
        Request::Trending {
            category,
            region,
            k,
        } => {
            let titles = top_trending(&locals, *k);
            (
                StatusCode::OK,
                serde_json::json!({
                    "category": category,
                    "region": region.map_or("", |r| crate::core::event::REGIONS[r]),
                    "k": k,
                    "window": window(as_of("as_of")),
                    "titles": titles,
                }),
            )
        }
    }
}

/// The `k` nodes (titles, or shows or channels for those categories) with
/// the most views over every process's totals; ties go to the smaller id.
fn top_totals(locals: &[serde_json::Value], k: usize) -> Vec<(u64, i64)> {
    let mut totals: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
    for l in locals {
        for pair in l["totals"].as_array().into_iter().flatten() {
            if let (Some(id), Some(v)) = (pair[0].as_u64(), pair[1].as_i64()) {
                *totals.entry(id).or_insert(0) += v;
            }
        }
    }
    let mut rows: Vec<(u64, i64)> = totals.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(k);
    rows
}

/// The `k` best of every process's trending titles, ranked (ties to the smaller id).
fn top_trending(locals: &[serde_json::Value], k: usize) -> Vec<serde_json::Value> {
    let mut titles: Vec<serde_json::Value> = locals
        .iter()
        .flat_map(|l| l["titles"].as_array().cloned().unwrap_or_default())
        .collect();
    let key = |t: &serde_json::Value| {
        (
            t["value"].as_f64().unwrap_or(0.0),
            t["content_id"].as_u64().unwrap_or(0),
        )
    };
    titles.sort_by(|a, b| {
        let (va, ia) = key(a);
        let (vb, ib) = key(b);
        vb.total_cmp(&va).then(ia.cmp(&ib))
    });
    titles.truncate(k);
    for (i, t) in titles.iter_mut().enumerate() {
        t["rank"] = serde_json::json!(i + 1);
    }
    titles
}

/// This process's live model, if the job keeps one and it has published;
/// built once per published version.
pub fn live_model(api: &Api) -> Option<Arc<LiveModel>> {
    let board = api.model.as_ref()?;
    api.answers.model(board.version(), || build_model(board))
}

fn build_model(board: &crate::dataflow::live::ModelBoard) -> Option<LiveModel> {
    let shards = board.shards();
    let as_of = shards.values().map(|s| s.as_of).min()?;
    let total_24h = shards.values().map(|s| s.total_24h).max().unwrap_or(0);
    let mut rows: Vec<crate::core::model::NodeRow> = shards
        .values()
        .flat_map(|s| s.rows.iter().cloned())
        .collect();
    for r in rows.iter_mut() {
        if r.kind == Some(Kind::Episode) {
            r.score_ppm = crate::core::model::score_ppm(r.m.views_24h, total_24h);
        }
    }
    rows.sort_unstable_by_key(|r| r.id);
    Some(LiveModel {
        as_of,
        rows,
        total_24h,
    })
}

fn named<T: Copy>(names: &[&str], values: &[T]) -> serde_json::Map<String, serde_json::Value>
where
    serde_json::Value: From<T>,
{
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), serde_json::Value::from(*v)))
        .collect()
}

fn row_json(r: &crate::core::model::NodeRow, api: &Api) -> serde_json::Value {
    let m = r.m.measures();
    serde_json::json!({
        "content_id": r.id,
        "name": api.catalog.get(r.id).map(|t| t.name.as_str()).unwrap_or(""),
        "kind": r.kind.map_or("unknown", |k| k.as_str()),
        "parent": r.parent,
        "views": r.m.views,
        "watch_ms": r.m.watch_ms,
        "views_24h": r.m.views_24h,
        "score_ppm": r.score_ppm,
        "trend": r.trend(),
        "decay": r.decay,
        "by_tier": named(&TIER_NAMES, &m.tier),
        "by_device": named(&DEVICE_NAMES, &m.device),
        "by_region": named(&crate::core::event::REGIONS, &m.region),
    })
}
