//! The popularity model against a from-scratch recount: every measure of
//! every title, show and channel and every ranking, hour by hour, with
//! catalog changes arriving on a real Kafka topic mid-stream.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::oracle::{
    file_partitions, generator_partitions, recount_model, CatalogChangeAt,
};
use crate::common::*;
use popularity::core::catalog::{Catalog, Kind, Title};
use popularity::core::model::{NodeRow, Rollup};
use popularity::sink::snapshot::{published_table_hours, read_table_hour};
use popularity::sink::store::LocalStore;
use popularity::sink::tables::{table_of, Row, CHANNELS, SHOWS, TITLE_MEASURES, TRENDING};
use popularity::source::DEFAULT_PARTITIONS;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// Writes catalog updates (key: id; value: JSON or none) to a topic.
fn produce_catalog(brokers: &str, topic: &str, records: &[(String, Option<String>)]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut r = BaseRecord::<str, str>::to(topic).key(key.as_str());
        if let Some(v) = value {
            r = r.payload(v.as_str());
        }
        producer.send(r).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn update(t: &Title, at: i64) -> (String, Option<String>) {
    (
        t.id.to_string(),
        Some(format!(
            "{{\"title\":{},\"effective_at\":{at}}}",
            serde_json::to_string(t).expect("json")
        )),
    )
}

/// A row as the snapshot holds it, from the oracle's node row.
fn expect_row(r: &NodeRow) -> (i64, Vec<i64>, String, String) {
    let mut ints = vec![r.m.views, r.m.watch_ms, r.m.views_24h, r.score_ppm];
    let m = r.m.measures();
    ints.extend(m.tier);
    ints.extend(m.device);
    ints.extend(m.region);
    (
        r.id as i64,
        ints,
        r.kind.map_or("unknown", |k| k.as_str()).to_string(),
        format!("{:.9} {:.9}", r.trend(), r.decay),
    )
}

fn got_row(r: &Row) -> (i64, Vec<i64>, String, String) {
    let mut ints: Vec<i64> = ["views", "watch_ms", "views_24h", "score_ppm"]
        .iter()
        .map(|c| r[*c].int())
        .collect();
    for c in ["free", "paid", "mobile", "tv", "web", "tablet"] {
        ints.push(r[&format!("views_{c}")].int());
    }
    for code in popularity::core::event::REGIONS {
        ints.push(r[&format!("views_{}", code.to_lowercase().replace('-', "_"))].int());
    }
    (
        r["content_id"].int(),
        ints,
        r["kind"].text().to_string(),
        format!("{:.9} {:.9}", r["trend"].float(), r["decay"].float()),
    )
}

#[test]
fn model_tables_equal_the_recount_with_catalog_changes_on_one_and_four_workers() {
    let broker = Broker::start("model");
    broker.topic("catalog", 1);
    let dir = scratch("model");
    let events = dir.join("events.jsonl");
    let mut cfg = messy(71, 30_000);
    cfg.live_share = 0.3;
    cfg.clip_share = 0.2;
    let g = write_events(&events, &cfg, 400);
    let start = popularity::core::time::parse_rfc3339(&cfg.start).expect("start");
    let catalog = Catalog::synthesize(400, 7, start).expect("catalog");
    let of = |k: Kind| catalog.titles.iter().filter(move |t| t.kind == k);
    // An episode moves to another show after 1 hour.
    let episode = of(Kind::Episode).next().expect("an episode").clone();
    let other_show = of(Kind::Show)
        .find(|s| Some(s.id) != episode.parent)
        .expect("another show")
        .clone();
    let moved = Title {
        parent: Some(other_show.id),
        ..episode.clone()
    };
    // A live event with clips ends early, 90 minutes in.
    let live = of(Kind::Live)
        .find(|l| of(Kind::Clip).any(|c| c.parent == Some(l.id)))
        .expect("a live event with clips")
        .clone();
    let ended = Title {
        ends_at: Some(start + 90 * 60_000),
        ..live.clone()
    };
    // A movie is removed after 2 hours; a bad update names a missing parent.
    let movie = of(Kind::Movie).next().expect("a movie").clone();
    let orphan = Title {
        parent: Some(999_999_999),
        ..episode.clone()
    };
    let mut records = vec![
        update(&moved, start + 60 * 60_000),
        update(&ended, start + 90 * 60_000),
        update(&orphan, start + 60 * 60_000),
    ];
    let removal_key = movie.id.to_string();
    records.push((
        removal_key,
        None, // a tombstone: effective when read, so at the start
    ));
    produce_catalog(&broker.addr, "catalog", &records);
    let window = popularity::core::time::WindowSpec::hourly();
    let pane = |ms: i64| window.pane_of(ms).expect("pane");
    let changes = vec![
        CatalogChangeAt {
            pane: 0,
            before: Some(movie.clone()),
            after: None,
        },
        CatalogChangeAt {
            pane: pane(start + 60 * 60_000),
            before: Some(episode.clone()),
            after: Some(moved.clone()),
        },
        CatalogChangeAt {
            pane: pane(start + 90 * 60_000),
            before: Some(live.clone()),
            after: Some(ended.clone()),
        },
    ];
    let mut job = file_job(&dir, &events);
    job.catalog.topic = Some("catalog".into());
    job.source.kafka.brokers = broker.addr.clone();
    job.model.score_window = Duration::from_secs(2 * 3600);
    job.model.clip_half_life = Duration::from_secs(600);
    job.model.top_k = 5;
    let spec = job
        .model
        .spec(window.slide_ms, window.panes())
        .expect("model spec");
    let _ = g;
    // Both rollups, the differential one on two workers (its join exchanges by key).
    let runs = [(1, Rollup::Routes), (4, Rollup::Routes)];
    for (workers, rollup) in runs.into_iter().chain([(2, Rollup::Differential)]) {
        let mut job = job.clone();
        job.model.rollup = rollup;
        let root = dir.join(format!("w{workers}-{rollup:?}"));
        job.sink.path = root.join("snapshots");
        job.dead_letter.path = root.join("dead-letters");
        job.job.name = format!("model-w{workers}-{rollup:?}");
        let stats = run_in_process(job, workers);
        let want = recount_model(
            &file_partitions(&events, DEFAULT_PARTITIONS).expect("read"),
            &window,
            120_000,
            &limits(),
            &spec,
            &catalog,
            &changes,
        );
        assert!(want.len() >= 4, "the recount spans hours: {}", want.len());
        let store = LocalStore::new(&root.join("snapshots")).expect("store");
        let published = published_table_hours(&store, TITLE_MEASURES).expect("hours");
        for (hour, (rows, top)) in &want {
            assert!(
                published.contains(hour),
                "{workers} workers, {rollup:?}: hour {hour} published"
            );
            assert_hour_equals(&store, workers, *hour, rows, top);
        }
        // Published hours beyond the recount's are empty.
        let beyond = published.iter().filter(|h| !want.contains_key(h));
        assert_empty(&store, beyond);
        // The catalog changes took effect and the bad one was refused.
        let moved_hour = window.hour_of(pane(start + 60 * 60_000)) + 1;
        if let Some((rows, _)) = want.get(&moved_hour) {
            assert_show_of(rows, episode.id, other_show.id);
        }
        assert_catalog_refused_once(&root.join("dead-letters"));
        assert!(stats.read > 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The embedded mode's file reload: editing the catalog file moves an
/// episode to another show in the running job; a broken edit is refused,
/// dead-lettered, and changes nothing.
#[test]
fn editing_the_catalog_file_moves_a_title_while_the_job_runs() {
    use std::sync::atomic::Ordering;
    use std::time::Instant;
    let dir = scratch("reload");
    let start = popularity::core::time::parse_rfc3339(&messy(1, 0).start).expect("start");
    let catalog = Catalog::synthesize(400, 7, start).expect("catalog");
    let path = dir.join("catalog.jsonl");
    let write = |titles: &[Title]| {
        let mut out = Vec::new();
        for t in titles {
            out.extend(serde_json::to_vec(t).expect("json"));
            out.push(b'\n');
        }
        // A new name, then a rename: the job never sees a half-written file.
        let tmp = dir.join("catalog.tmp");
        std::fs::write(&tmp, out).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    };
    write(&catalog.titles);
    let mut job = file_job(&dir, &dir.join("unused"));
    job.source.kind = popularity::config::SourceKind::Generator;
    job.source.generator = messy(91, 0); // endless
    job.source.generator.rate = 4_000.0;
    job.catalog.path = Some(path.clone());
    job.catalog.reload = true;
    let (ctx, addr) = serving(job);
    let (ctx, runner) = run_in_background(ctx);
    let title = |id: u64| -> serde_json::Value {
        let (code, body) = http_get(&addr, &format!("/api/titles/{id}"));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("json")
    };
    // An episode with views, and a show it does not belong to.
    let began = Instant::now();
    let episode = loop {
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "no episode got views"
        );
        std::thread::sleep(Duration::from_millis(500));
        let found = catalog
            .titles
            .iter()
            .filter(|t| t.kind == Kind::Episode)
            .find(|t| title(t.id)["model"]["views"].as_i64().unwrap_or(0) > 0);
        if let Some(t) = found {
            break t.clone();
        }
    };
    let other = catalog
        .titles
        .iter()
        .find(|t| t.kind == Kind::Show && Some(t.id) != episode.parent)
        .expect("another show")
        .clone();
    assert_eq!(
        title(episode.id)["model"]["parent"].as_u64(),
        episode.parent
    );
    // A broken edit first: an episode under a show that does not exist.
    let mut broken = catalog.titles.clone();
    for t in broken.iter_mut().filter(|t| t.id == episode.id) {
        t.parent = Some(987_654_321);
    }
    write(&broken);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        title(episode.id)["model"]["parent"].as_u64(),
        episode.parent,
        "a broken catalog file changes nothing"
    );
    // Now a good edit: the episode moves.
    let mut moved = catalog.titles.clone();
    for t in moved.iter_mut().filter(|t| t.id == episode.id) {
        t.parent = Some(other.id);
    }
    write(&moved);
    let began = Instant::now();
    while title(episode.id)["model"]["parent"].as_u64() != Some(other.id) {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "the move never showed: {}",
            title(episode.id)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(ctx.stats.catalog_changes.load(Ordering::Relaxed) >= 1);
    assert_eq!(ctx.stats.catalog_refused.load(Ordering::Relaxed), 1);
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let (reasons, letters) = dead_letter_counts(&dir.join("dead-letters"));
    assert_eq!(reasons.get("catalog"), Some(&1), "{reasons:?}");
    assert!(letters.iter().any(|l| l.detail.contains("987654321")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every table of `hour` (measures of titles, shows, channels; rankings)
/// equals the recount's rows and rankings.
fn assert_hour_equals(
    store: &LocalStore,
    workers: usize,
    hour: u64,
    rows: &[NodeRow],
    top: &[popularity::core::model::TopEntry],
) {
    let mut got: Vec<_> = Vec::new();
    for table in [TITLE_MEASURES, SHOWS, CHANNELS] {
        let (manifest, part) = read_table_hour(store, table, hour)
            .expect("read")
            .expect("published");
        assert_eq!(manifest.table, table);
        got.extend(part.iter().map(got_row));
    }
    got.sort_by_key(|r| r.0);
    let want_rows: Vec<_> = rows.iter().map(expect_row).collect();
    assert_eq!(
        got.len(),
        want_rows.len(),
        "{workers} workers, hour {hour}: rows"
    );
    for (g, w) in got.iter().zip(&want_rows) {
        assert_eq!(g, w, "{workers} workers, hour {hour}");
    }
    let (_, ranks) = read_table_hour(store, TRENDING, hour)
        .expect("read")
        .expect("published");
    let got_top: Vec<(String, String, i64, i64)> = ranks
        .iter()
        .map(|r| {
            (
                r["category"].text().to_string(),
                r["region"].text().to_string(),
                r["rank"].int(),
                r["content_id"].int(),
            )
        })
        .collect();
    let want_top: Vec<(String, String, i64, i64)> = top
        .iter()
        .map(|e| {
            (
                e.category.clone(),
                e.region.clone(),
                e.rank as i64,
                e.id as i64,
            )
        })
        .collect();
    assert_eq!(
        got_top, want_top,
        "{workers} workers, hour {hour}: rankings"
    );
}

/// Each of `hours` is published with no rows.
fn assert_empty<'a>(store: &LocalStore, hours: impl Iterator<Item = &'a u64>) {
    for hour in hours {
        let (m, _) = read_table_hour(store, TITLE_MEASURES, *hour)
            .expect("read")
            .expect("published");
        assert_eq!(m.rows, 0, "hour {hour} is empty");
    }
}

/// The one bad catalog update (a missing parent) is the one catalog dead letter.
fn assert_catalog_refused_once(dead_letters: &std::path::Path) {
    let (reasons, letters) = dead_letter_counts(dead_letters);
    assert_eq!(reasons.get("catalog"), Some(&1), "{reasons:?}");
    assert!(letters
        .iter()
        .any(|l| l.reason == "catalog" && l.detail.contains("999999999")));
}

/// In `rows`, title `episode` (if present) is under show `show`.
fn assert_show_of(rows: &[NodeRow], episode: u64, show: u64) {
    let show_of: BTreeMap<u64, Option<u64>> = rows
        .iter()
        // An episode's parent is its show.
        .map(|r| (r.id, r.parent))
        .collect();
    if let Some(s) = show_of.get(&episode) {
        assert_eq!(*s, Some(show), "the episode moved");
    }
}

/// A title table's part of more than one row group (a shard of many titles
/// is encoded a group at a time) reads the same in DuckDB, a reader this
/// project did not write, as in ours: every row of every hour.
#[test]
fn parts_of_several_row_groups_read_the_same_in_duckdb() {
    let dir = scratch("model-row-groups");
    let titles = 120_000;
    let mut job = file_job(&dir, &dir.join("unused"));
    job.source.kind = popularity::config::SourceKind::Generator;
    // Most titles viewed within an hour or two: parts of about 100 000 rows.
    job.source.generator = popularity::source::traffic::GeneratorConfig {
        titles,
        time_rate: 200.0,
        popularity: popularity::source::traffic::Popularity::Uniform,
        ..messy(72, 400_000)
    };
    job.catalog.titles = titles;
    job.model.enabled = true;
    job.model.score_window = Duration::from_secs(2 * 3600);
    let ctx = popularity::job::Context::from_job(job.clone()).expect("valid job");
    let want = recount_model(
        &generator_partitions(
            ctx.generator.as_ref().expect("a generator"),
            job.source.generator.events,
            DEFAULT_PARTITIONS,
        ),
        &ctx.window,
        ctx.clock,
        &limits(),
        ctx.model.as_ref().expect("the model"),
        &ctx.catalog,
        &[],
    );
    run_in_process(job, 1);
    let root = dir.join("snapshots");
    let store = LocalStore::new(&root).expect("store");
    let mut ours = Vec::new();
    for hour in published_table_hours(&store, TITLE_MEASURES).expect("hours") {
        let (_, rows) = read_table_hour(&store, TITLE_MEASURES, hour)
            .expect("read")
            .expect("published");
        ours.extend(rows.iter().map(|r| {
            (
                hour,
                r["content_id"].int(),
                r["kind"].text().to_string(),
                r["views"].int(),
                r["views_24h"].int(),
            )
        }));
    }
    ours.sort();
    let mut recounted: Vec<_> = (want.iter())
        .flat_map(|(&hour, (rows, _))| rows.iter().map(move |r| (hour, r)))
        .filter(|(_, r)| table_of(r) == TITLE_MEASURES)
        .map(|(hour, r)| {
            let kind = r.kind.map_or("unknown", |k| k.as_str()).to_string();
            (hour, r.id as i64, kind, r.m.views, r.m.views_24h)
        })
        .collect();
    recounted.sort();
    assert!(ours == recounted, "our reader reads the recount's rows");
    let out = run_ok(
        std::process::Command::new("python3")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/duckdb_table.py"))
            .arg(&root)
            .arg(TITLE_MEASURES),
        "duckdb failed",
    );
    let mut theirs = Vec::new();
    let mut groups = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        if let Some(n) = v["row_groups"].as_u64() {
            groups = n;
            continue;
        }
        let dt = v["dt"].as_str().expect("dt");
        let hh: u32 = v["hour"].as_str().expect("hour").parse().expect("hour");
        theirs.push((
            popularity::core::time::parse_hour(dt, hh).expect("valid hour"),
            v["content_id"].as_i64().expect("id"),
            v["kind"].as_str().expect("kind").to_string(),
            v["views"].as_i64().expect("views"),
            v["views_24h"].as_i64().expect("views_24h"),
        ));
    }
    theirs.sort();
    assert!(groups >= 2, "a part of several row groups: {groups}");
    assert!(ours.len() > 65_536, "rows: {}", ours.len());
    assert_eq!(ours.len(), theirs.len(), "rows");
    assert!(ours == theirs, "DuckDB reads every row as ours does");
    let _ = std::fs::remove_dir_all(&dir);
}
