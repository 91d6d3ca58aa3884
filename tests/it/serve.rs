//! The HTTP endpoint under hostile and broken clients: oversized requests,
//! slow clients beside API load, a stalled worker, and the bearer token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// One test at a time: the memory test measures this whole process, and
/// the load test should not share two cores with another job.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's resident memory (KiB).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

fn endless_job(name: &str) -> (std::path::PathBuf, popularity::config::JobConfig) {
    let dir = scratch(name);
    let mut job = file_job(&dir, &dir.join("unused"));
    job.source.kind = popularity::config::SourceKind::Generator;
    job.source.generator = messy(91, 0); // endless
    job.source.generator.rate = 3_000.0;
    (dir, job)
}

/// GET `path` and the time it took.
/// An API client that keeps its connection open across requests, as real
/// clients do (a new connection per request would run the loopback out of
/// ports long before the endpoint out of breath).
struct KeptAlive {
    addr: String,
    conn: Option<std::io::BufReader<TcpStream>>,
}

impl KeptAlive {
    /// The status of one GET; 0 if the exchange failed.
    fn get(&mut self, path: &str) -> u16 {
        let code = self.exchange(path).unwrap_or(0);
        if code == 0 {
            self.conn = None;
        }
        code
    }

    fn exchange(&mut self, path: &str) -> std::io::Result<u16> {
        use std::io::{BufRead, Read};
        if self.conn.is_none() {
            let c = TcpStream::connect(&self.addr)?;
            c.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.conn = Some(std::io::BufReader::new(c));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        write!(
            conn.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.addr
        )?;
        let (mut code, mut length, mut close) = (0, 0usize, false);
        let mut line = String::new();
        loop {
            line.clear();
            if conn.read_line(&mut line)? == 0 {
                return Ok(0);
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if l.starts_with("http/1.1 ") {
                code = l[9..12].parse().unwrap_or(0);
            } else if let Some(v) = l.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if l == "connection: close" {
                close = true;
            }
        }
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body)?;
        if close {
            self.conn = None;
        }
        Ok(code)
    }
}

fn timed_get(addr: &str, path: &str) -> (u16, Duration) {
    let t = Instant::now();
    let (code, _) = http_get(addr, path);
    (code, t.elapsed())
}

#[test]
fn a_300_mib_request_line_is_refused_early_and_costs_no_memory() {
    let _alone = alone();
    let (dir, job) = endless_job("serve-huge");
    let (_ctx, addr) = serving(job);
    let before = rss_kib();
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0usize;
    let mut peak = before;
    let refused = (|| {
        conn.write_all(b"GET /")?;
        while sent < 300 << 20 {
            conn.write_all(&chunk)?;
            sent += chunk.len();
            peak = peak.max(rss_kib());
        }
        Ok::<_, std::io::Error>(())
    })()
    .is_err();
    assert!(
        refused,
        "the endpoint took a 300 MiB request line without closing"
    );
    assert!(
        sent < 64 << 20,
        "the connection was cut early ({} MiB sent)",
        sent >> 20
    );
    let grown = peak.saturating_sub(before) / 1024;
    assert!(
        grown < 64,
        "RSS grew by {grown} MiB while the request was open"
    );
    // A request line just over the bound gets a 431, not silence.
    let mut conn = TcpStream::connect(&addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let long = "a".repeat(20_000);
    let _ = write!(conn, "GET /{long} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
    assert_eq!(http_get(&addr, "/healthz").0, 200, "still serving");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_answers_within_a_second_through_slow_clients_and_api_load() {
    let _alone = alone();
    let (dir, job) = endless_job("serve-load");
    let (ctx, addr) = serving(job);
    let (ctx, runner) = run_in_background(ctx);
    std::thread::sleep(Duration::from_secs(3));
    let done = Arc::new(AtomicBool::new(false));
    // 40 clients that send one byte every 3 s.
    let slow: Vec<_> = (0..40)
        .map(|_| {
            let (addr, done) = (addr.clone(), done.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = TcpStream::connect(&addr) else {
                    return;
                };
                for b in b"GET /api/top HTTP/1.1\r\n".iter() {
                    if done.load(Ordering::Relaxed) || c.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(3));
                }
            })
        })
        .collect();
    // 200 clients asking the API at once, over and over, on kept-alive connections.
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let busy: Vec<_> = (0..200)
        .map(|i| {
            let (addr, done, answered) = (addr.clone(), done.clone(), answered.clone());
            std::thread::spawn(move || {
                let path = [
                    "/api/top?category=episode&k=10",
                    "/api/trending?category=all&k=10",
                    "/metrics",
                ][i % 3];
                let mut client = KeptAlive { addr, conn: None };
                while !done.load(Ordering::Relaxed) {
                    if client.get(path) == 200 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(12) {
        for path in ["/healthz", "/readyz"] {
            let (code, took) = timed_get(&addr, path);
            assert_eq!(code, 200, "{path} under load");
            assert!(
                took < Duration::from_secs(1),
                "{path} took {took:?} under load"
            );
            worst = worst.max(took);
            probes += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().expect("api client");
    }
    let answered = answered.load(Ordering::Relaxed);
    eprintln!("{probes} probes, slowest {worst:?}; {answered} API answers under load");
    assert!(answered > 200, "the API answered under load ({answered})");
    drop(slow);
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_stalled_worker_turns_healthz_503() {
    let _alone = alone();
    let (dir, mut job) = endless_job("serve-stall");
    job.metrics.stall_timeout = Duration::from_secs(2);
    let (mut ctx, addr) = serving(job);
    ctx.stall_after = Some(Duration::from_secs(3));
    let (ctx, runner) = run_in_background(ctx);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(http_get(&addr, "/healthz").0, 200, "healthy while stepping");
    let started = Instant::now();
    let body = loop {
        let (code, body) = http_get(&addr, "/healthz");
        if code == 503 {
            break body;
        }
        assert_eq!(code, 200);
        assert!(
            started.elapsed() < Duration::from_secs(6),
            "healthz never noticed the stalled worker"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("worker 0"), "names the worker: {body}");
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_a_token_the_api_wants_it_and_probes_stay_open() {
    let _alone = alone();
    let (dir, mut job) = endless_job("serve-token");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("token");
    std::fs::write(&file, "s3cret-token\n").expect("token file");
    job.metrics.token = format!("file:{}", file.display());
    let (ctx, addr) = serving(job);
    let (ctx, runner) = run_in_background(ctx);
    let auth = "Authorization: Bearer s3cret-token\r\n";
    let started = Instant::now();
    while http_get_with(&addr, "/api/top?category=episode", auth).0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in [
        "/api/top?category=episode",
        "/api/stats",
        "/api/local/api/top",
    ] {
        assert_eq!(http_get(&addr, path).0, 401, "{path} without the token");
        let wrong = "Authorization: Bearer s3cret-tokeN\r\n";
        assert_eq!(
            http_get_with(&addr, path, wrong).0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(
            http_get_with(&addr, path, auth).0,
            200,
            "{path} with the token"
        );
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(http_get(&addr, path).0, 200, "{path} stays open");
    }
    // A token written into the job file itself is refused.
    let bad = popularity::config::MetricsConfig {
        token: "s3cret-token".into(),
        ..Default::default()
    };
    let err = bad.limits().expect_err("a literal token");
    assert!(err.to_string().contains("env:"), "{err}");
    ctx.stop.store(true, Ordering::Relaxed);
    runner.join().expect("job stops");
    let _ = std::fs::remove_dir_all(&dir);
}
