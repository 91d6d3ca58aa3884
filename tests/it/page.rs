//! The trending page in a real headless Chromium: it renders, shows titles,
//! and updates without a reload. Leaves a screenshot in target/.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;

fn chromium(args: &[&str], url: &str, profile: &std::path::Path) -> std::process::Output {
    let child = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run chromium");
    wait_bounded(child, Duration::from_secs(120), "chromium")
}

#[test]
fn trending_page_renders_titles_and_updates() {
    let dir = scratch("page");
    let mut job = file_job(&dir, &dir.join("unused"));
    job.source.kind = popularity::config::SourceKind::Generator;
    job.source.generator = messy(81, 0); // endless
    job.source.generator.rate = 3_000.0;
    // The provisional card shows beside the final ones.
    job.metrics.provisional = true;
    let (ctx, addr) = serving(job);
    let (ctx, runner) = run_in_background(ctx);
    std::thread::sleep(Duration::from_secs(4));
    let url = format!("http://{addr}/");
    // Six seconds of page time: the page polls every two, so it must have updated several times.
    let out = chromium(
        &["--virtual-time-budget=6000", "--dump-dom"],
        &url,
        &dir.join("profile-dom"),
    );
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let updates: u32 = dom
        .split("data-updates=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the page never finished an update: {dom}"));
    assert!(
        updates >= 2,
        "the page updates in place ({updates} updates)"
    );
    assert!(
        dom.contains("data-category=\"episode\""),
        "an episode card: {dom}"
    );
    assert!(
        dom.contains("Episode ") || dom.contains("Movie "),
        "titles by name: {dom}"
    );
    let early = dom
        .split("data-category=\"episodes now (provisional)\"")
        .nth(1)
        .and_then(|r| r.split("</ol>").next())
        .unwrap_or_else(|| panic!("the provisional card: {dom}"));
    assert!(
        early.contains("1. Episode "),
        "provisional episodes ranked by name: {early}"
    );
    assert!(
        !dom.contains("waiting for the first window"),
        "the window is shown"
    );
    for panel in [
        "id=\"by-tier\"",
        "id=\"by-region\"",
        "id=\"by-device\"",
        "id=\"trending-all\"",
    ] {
        assert!(dom.contains(panel), "the model panel {panel}: {dom}");
    }
    assert!(
        dom.contains(">paid<") && dom.contains(">IN-MH<"),
        "tiers and regions by name"
    );
    let watched = dom
        .split("id=\"watch\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("total watch time shown: {dom}"));
    assert!(watched > 0.0, "watch time counts ({watched} h)");
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/trending-page.png");
    if let Some(parent) = shot.parent() {
        std::fs::create_dir_all(parent).expect("screenshot directory");
    }
    let out = chromium(
        &[
            "--virtual-time-budget=5000",
            "--window-size=1200,800",
            &format!("--screenshot={}", shot.display()),
        ],
        &url,
        &dir.join("profile-shot"),
    );
    assert!(
        out.status.success(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn names_with_markup_render_as_text_and_run_no_script() {
    let dir = scratch("page-xss");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut job = file_job(&dir, &dir.join("unused"));
    job.source.kind = popularity::config::SourceKind::Generator;
    job.source.generator = messy(83, 0); // endless
    job.source.generator.rate = 3_000.0;
    // The catalog the job would make, every name turned into markup that
    // would set a flag on the page if it ran.
    let start = popularity::core::time::parse_rfc3339(&job.source.generator.start).expect("start");
    let mut catalog =
        popularity::core::catalog::Catalog::synthesize(job.catalog.titles, job.catalog.seed, start)
            .expect("catalog");
    for (i, t) in catalog.titles.iter_mut().enumerate() {
        t.name = match i % 2 {
            0 => format!("<img src=x onerror=\"document.body.dataset.pwned=1\">T{i}"),
            _ => format!("<script>document.body.dataset.pwned=1</script>T{i}"),
        };
    }
    let path = dir.join("catalog.jsonl");
    let mut out = std::fs::File::create(&path).expect("catalog file");
    catalog.write(&mut out).expect("write catalog");
    job.catalog.path = Some(path);
    let (ctx, addr) = serving(job);
    let (ctx, runner) = run_in_background(ctx);
    std::thread::sleep(Duration::from_secs(4));
    let out = chromium(
        &["--virtual-time-budget=6000", "--dump-dom"],
        &format!("http://{addr}/"),
        &dir.join("profile-xss"),
    );
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(dom.contains("data-updates=\""), "the page updated: {dom}");
    assert!(
        dom.contains("&lt;img src=x onerror=") || dom.contains("&lt;script&gt;"),
        "names shown as text: {dom}"
    );
    assert!(!dom.contains("data-pwned"), "a name's script ran: {dom}");
    assert!(
        !dom.contains("<img src=\"x\""),
        "a name became an element: {dom}"
    );
    // The page's policy forbids inline script.
    let answer = http_exchange(&addr, "/", "");
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}
