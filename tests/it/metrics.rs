//! The metrics endpoint, scraped by a real Prometheus; dashboards and alert
//! rules checked against what the job exports.

use std::time::{Duration, Instant};

use crate::common::*;

use crate::common::http_get as get;
use popularity::serve::metric_names;

/// The value of an instant PromQL query (summed over series), if any series exists.
fn prom_value(prom: &str, query: &str) -> Option<f64> {
    let q: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let (code, body) = get(prom, &format!("/api/v1/query?query={q}"));
    if code == 503 {
        return None; // Prometheus answers 503 until its storage is ready
    }
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let results = v["data"]["result"].as_array()?;
    if results.is_empty() {
        return None;
    }
    Some(
        results
            .iter()
            .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
            .sum(),
    )
}

#[test]
fn prometheus_scrapes_the_job_and_the_series_move() {
    let dir = scratch("metrics");
    let mut job = file_job(&dir, &dir.join("unused"));
    job.source.kind = popularity::config::SourceKind::Generator;
    job.source.generator = messy(51, 60_000);
    job.source.generator.rate = 6_000.0; // about ten seconds
    let (ctx, addr) = serving(job);
    let (code, _) = get(&addr, "/readyz");
    assert_eq!(code, 503, "not ready before the workers run");
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(get(&addr, "/nope").0, 404);
    let (_ctx, runner) = run_in_background(ctx);
    let prom_port = free_port();
    let prom_dir = dir.join("prometheus");
    run_ok(
        std::process::Command::new("bash")
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prometheus.sh"))
            .args([
                "start",
                "--port",
                &prom_port.to_string(),
                "--target",
                &addr,
                "--dir",
            ])
            .arg(&prom_dir),
        "prometheus",
    );
    let prom = format!("127.0.0.1:{prom_port}");
    let started = Instant::now();
    let mut first = None;
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(v) = prom_value(&prom, "popularity_records_read_total").filter(|v| *v > 0.0) {
            first = Some(v);
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let first = first.expect("Prometheus scraped a nonzero records counter");
    assert_eq!(get(&addr, "/readyz").0, 200, "ready while processing");
    std::thread::sleep(Duration::from_secs(3));
    let later = prom_value(&prom, "popularity_records_read_total").expect("series still there");
    assert!(later > first, "the counter moves: {first} then {later}");
    for name in [
        "popularity_views_total",
        "popularity_live_state_entries",
        "popularity_frontier_seconds",
        "popularity_watermark_seconds",
    ] {
        assert!(prom_value(&prom, name).is_some(), "{name} is scraped");
    }
    // The top-5 gauges of the dashboard's table: up to 5 per category.
    let top = prom_value(&prom, "count(popularity_trending_value)").unwrap_or(0.0);
    assert!((5.0..=30.0).contains(&top), "{top} top-trending series");
    assert!(
        prom_value(&prom, "popularity_watermark_seconds").unwrap_or(0.0) > 1.7e9,
        "the watermark is event time in seconds"
    );
    runner.join().expect("job");
    let (_, text) = get(&addr, "/metrics");
    for name in metric_names()
        .iter()
        .filter(|n| !n.starts_with("popularity_kafka"))
    {
        assert!(
            text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
            "{name} exported"
        );
    }
    let _ = std::process::Command::new("bash")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/prometheus.sh"))
        .args(["stop", "--dir"])
        .arg(&prom_dir)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every `popularity_*` name in an expression must be one the job exports.
fn check_names(expr: &str, whence: &str) {
    let mut found = 0;
    for (i, _) in expr.match_indices("popularity_") {
        let name: String = expr[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            metric_names().contains(&name),
            "{whence}: `{name}` is not a metric the job exports"
        );
        found += 1;
    }
    assert!(found > 0, "{whence}: `{expr}` names no job metric");
}

#[test]
fn alert_rules_and_dashboard_parse_and_name_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = |file: &std::path::Path| {
        let out = std::process::Command::new("promtool")
            .args(["check", "rules"])
            .arg(file)
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let alerts = root.join("k8s/prometheus/alerts.yml");
    check(&alerts);
    let text = std::fs::read_to_string(&alerts).expect("alerts");
    let mut n = 0;
    for line in text.lines() {
        if let Some(expr) = line.trim().strip_prefix("expr:") {
            check_names(expr, "alerts.yml");
            n += 1;
        }
    }
    assert!(
        n >= 4,
        "consumer lag, checkpoints, snapshots and dead letters are covered"
    );
    // Dashboard expressions: parsed by promtool as recording rules.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("k8s/grafana/dashboard.json")).expect("dashboard"),
    )
    .expect("json");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut count = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            check_names(expr, panel["title"].as_str().unwrap_or("panel"));
            rules.push_str(&format!(
                "      - record: dashboard:expr{count}\n        expr: {}\n",
                serde_json::to_string(expr).expect("quote")
            ));
            count += 1;
        }
    }
    let dir = scratch("dashboard-rules");
    let file = dir.join("dashboard-rules.yml");
    std::fs::write(&file, rules).expect("write");
    check(&file);
    let _ = std::fs::remove_dir_all(&dir);
}
