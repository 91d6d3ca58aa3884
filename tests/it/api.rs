//! The query API answers from the live window: checked against a recount,
//! and bad requests get a 400 with a clear message.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::oracle::window_at;
use crate::common::*;
use popularity::core::catalog::Kind;

/// GET `path`, with the body parsed as JSON (`null` if it is not).
fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (code, body) = http_get(addr, path);
    (
        code,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn top_k_and_titles_equal_the_recount_and_bad_requests_are_400() {
    let broker = Broker::start("api");
    let cfg = messy(71, 30_000);
    let parts = fill_topic(&broker, "events", 2, &cfg);
    let dir = scratch("api");
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.source.kafka.until = popularity::source::kafka::Until::Never;
    let (ctx, addr) = serving(job);
    assert_eq!(
        get(&addr, "/api/top").0,
        503,
        "nothing to answer from before the window exists"
    );
    let (ctx, runner) = run_in_background(ctx);
    // Wait until everything is read and both shards have published the same, settled minute.
    let started = Instant::now();
    let mut settled = None;
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1500));
        let shards = ctx.live.shards();
        let panes: Vec<u64> = shards.values().map(|s| s.as_of).collect();
        if ctx.stats.snapshot().read == 30_000 && panes.len() == 2 && panes[0] == panes[1] {
            if settled == Some(panes[0]) {
                break;
            }
            settled = Some(panes[0]);
        }
    }
    let as_of = settled.expect("the live window settled");
    let window = popularity::core::time::WindowSpec::hourly();
    let want = window_at(&parts, &window, 120_000, &limits(), as_of);
    assert!(
        want.values().sum::<i64>() > 100,
        "a window with real traffic"
    );
    for category in [Kind::Episode, Kind::Show, Kind::Clip, Kind::Channel] {
        let mut totals: std::collections::BTreeMap<u64, i64> = std::collections::BTreeMap::new();
        for (id, v) in &want {
            if let Some(b) = ctx.catalog.bucket(*id, category) {
                *totals.entry(b).or_insert(0) += v;
            }
        }
        let mut expected: Vec<(u64, i64)> = totals.into_iter().collect();
        expected.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        expected.truncate(5);
        let (code, body) = get(
            &addr,
            &format!("/api/top?category={}&k=5", category.as_str()),
        );
        assert_eq!(code, 200, "{body}");
        let got: Vec<(u64, i64)> = body["titles"]
            .as_array()
            .expect("titles")
            .iter()
            .map(|t| {
                (
                    t["content_id"].as_u64().expect("id"),
                    t["views"].as_i64().expect("views"),
                )
            })
            .collect();
        assert_eq!(got, expected, "top 5 {}", category.as_str());
        let (start, end) = window.window_bounds(as_of);
        assert_eq!(body["window"]["end"], popularity::core::time::rfc3339(end));
        assert_eq!(
            body["window"]["start"],
            popularity::core::time::rfc3339(start)
        );
    }
    let (&top_id, &top_views) = want
        .iter()
        .max_by_key(|(id, v)| (**v, std::cmp::Reverse(**id)))
        .expect("a title");
    let (code, body) = get(&addr, &format!("/api/titles/{top_id}"));
    assert_eq!(
        (code, body["views"].as_i64()),
        (200, Some(top_views)),
        "{body}"
    );
    for (path, code, says) in [
        (
            "/api/top?category=podcast",
            400,
            "unknown category `podcast`",
        ),
        ("/api/top?k=0", 400, "k must be"),
        ("/api/top?k=ten", 400, "k must be"),
        ("/api/top?region=IN-MH", 400, "unknown parameter `region`"),
        (
            "/api/top?provisional=true",
            404,
            "does not serve provisional counts",
        ),
        (
            "/api/top?provisional=yes",
            400,
            "provisional must be true or false",
        ),
        ("/api/titles/abc", 400, "not a content id"),
        ("/api/titles/99999999", 404, "no title 99999999"),
        ("/api/nothing", 404, "no such endpoint"),
    ] {
        let (got, body) = get(&addr, path);
        assert_eq!(got, code, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(says),
            "{path}: {body}"
        );
    }
    // Latency under a loopback load (reported, not asserted: a benchmark, not a timed test).
    report_latency("/api/top", 2000, || {
        assert_eq!(get(&addr, "/api/top?category=episode&k=10").0, 200);
    });
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trending_breakdown_and_title_measures_equal_the_model_recount() {
    let broker = Broker::start("api-model");
    let cfg = messy(73, 20_000);
    let parts = fill_topic(&broker, "events", 2, &cfg);
    let dir = scratch("api-model");
    let mut job = kafka_job(&dir, &broker.addr, "events");
    job.source.kafka.until = popularity::source::kafka::Until::Never;
    job.model.clip_half_life = Duration::from_secs(600);
    let window = popularity::core::time::WindowSpec::hourly();
    let spec = job
        .model
        .spec(window.slide_ms, window.panes())
        .expect("model spec");
    let (ctx, addr) = serving(job);
    assert_eq!(get(&addr, "/api/trending").0, 503, "nothing published yet");
    let (ctx, runner) = run_in_background(ctx);
    let as_of = settled_model(&ctx, 20_000);
    let rows = crate::common::oracle::model_at(
        &parts,
        &window,
        120_000,
        &limits(),
        &spec,
        &ctx.catalog,
        as_of,
    );
    assert!(rows.len() > 50, "a model with real traffic");
    for (category, region) in [
        ("all", ""),
        ("episode", ""),
        ("show", ""),
        ("clip", ""),
        ("all", "IN-MH"),
        ("movie", "US"),
    ] {
        let reg = popularity::core::event::Region::parse(region).map(|r| r.0 as usize);
        let want: Vec<(f64, u64)> = popularity::core::model::top(&rows, category, reg, 5)
            .into_iter()
            .map(|(v, r)| (v, r.id))
            .collect();
        let (code, body) = get(
            &addr,
            &format!("/api/trending?category={category}&region={region}&k=5"),
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(ranked(&body), want, "{category} {region}");
        assert_eq!(
            body["window"]["end"],
            popularity::core::time::rfc3339(window.window_bounds(as_of).1)
        );
    }
    // A title's measures, in full.
    let top = rows
        .iter()
        .filter(|r| r.kind == Some(Kind::Episode))
        .max_by_key(|r| (r.m.views, std::cmp::Reverse(r.id)))
        .expect("an episode");
    let (code, body) = get(&addr, &format!("/api/titles/{}", top.id));
    assert_eq!(code, 200, "{body}");
    let m = &body["model"];
    assert_eq!(m["views"].as_i64(), Some(top.m.views), "{body}");
    assert_eq!(m["watch_ms"].as_i64(), Some(top.m.watch_ms));
    assert_eq!(m["views_24h"].as_i64(), Some(top.m.views_24h));
    assert_eq!(m["score_ppm"].as_i64(), Some(top.score_ppm));
    assert_eq!(m["by_tier"]["paid"].as_i64(), Some(top.m.tier(1)));
    assert_eq!(m["by_region"]["US"].as_i64(), Some(top.m.region(10)));
    // Totals over titles.
    let mut sum = popularity::core::model::Measures::default();
    for r in rows
        .iter()
        .filter(|r| !matches!(r.kind, Some(Kind::Show | Kind::Channel)))
    {
        sum.add(&r.m.measures());
    }
    let (code, body) = get(&addr, "/api/breakdown");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["views"].as_i64(), Some(sum.views));
    assert_eq!(body["watch_ms"].as_i64(), Some(sum.watch_ms));
    assert_eq!(body["by_tier"]["free"].as_i64(), Some(sum.tier[0]));
    assert_eq!(body["by_device"]["tv"].as_i64(), Some(sum.device[1]));
    assert_eq!(body["by_region"]["IN-MH"].as_i64(), Some(sum.region[0]));
    refuses_bad_model_requests(&addr);
    // Latency under a loopback load (reported, not asserted).
    report_latency("/api/trending", 1000, || {
        let path = "/api/trending?category=all&region=IN-MH&k=10";
        assert_eq!(get(&addr, path).0, 200);
    });
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pane at which everything (`records`) is read and all four shards
/// (two workers, titles and nodes) are at one minute, the same over two looks.
fn settled_model(ctx: &popularity::job::Context, records: u64) -> u64 {
    let started = Instant::now();
    let mut settled = None;
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1500));
        let panes: Vec<u64> = ctx.model_live.shards().values().map(|s| s.as_of).collect();
        if ctx.stats.snapshot().read == records
            && panes.len() == 4
            && panes.iter().all(|p| *p == panes[0])
        {
            if settled == Some(panes[0]) {
                break;
            }
            settled = Some(panes[0]);
        }
    }
    settled.expect("the live model settled")
}

/// Bad model requests get a 400 that says what is wrong.
fn refuses_bad_model_requests(addr: &str) {
    for (path, says) in [
        (
            "/api/trending?category=podcast",
            "unknown category `podcast`",
        ),
        ("/api/trending?region=MARS", "unknown region `MARS`"),
        ("/api/trending?k=0", "k must be"),
        ("/api/trending?sort=views", "unknown parameter `sort`"),
        ("/api/breakdown?x=1", "unknown parameter `x`"),
    ] {
        let (code, body) = get(addr, path);
        assert_eq!(code, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap_or("").contains(says),
            "{path}: {body}"
        );
    }
}
