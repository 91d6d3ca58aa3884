//! What each path answers.
//!
//! Health, readiness, the page and `/api/stats` are answered on the
//! endpoint's event loop at once; scrapes and queries, which walk the live
//! boards, run on a bounded pool of threads, so no amount of API traffic
//! delays `/healthz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

use crate::config::ServeLimits;
use crate::core::stats::Stats;
use crate::source::kafka::ProgressBoard;

use super::cache::{Lookup, Refreshing};
use super::export::Exported;
use super::peers::Peers;
use super::query::{self, bad, Answer, Api};

/// The live trending page; its script and style are separate files, so the
/// page's Content-Security-Policy can forbid every inline script.
const PAGE: &str = include_str!("../web/trending.html");
const PAGE_SCRIPT: &str = include_str!("../web/trending.js");
const PAGE_STYLE: &str = include_str!("../web/trending.css");

/// Scripts and styles from this endpoint only, never inline; data from `/api` only.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A response with its whole body.
pub(super) type Reply = Response<Full<Bytes>>;

/// Everything the routes answer from.
pub(super) struct Shared {
    /// Prometheus registry: one scrape renders at a time.
    pub exported: Mutex<Exported>,
    /// The process's counters.
    pub stats: Arc<Stats>,
    /// Kafka partition progress.
    pub board: ProgressBoard,
    /// True once the workers are processing.
    pub ready: Arc<AtomicBool>,
    /// The live boards and catalog.
    pub api: Api,
    /// The other processes.
    pub peers: Peers,
    /// Limits, deadlines and the token.
    pub limits: ServeLimits,
}

fn reply(status: StatusCode, kind: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json((status, body): Answer) -> Reply {
    json_bytes(status, body.to_string().into())
}

fn json_bytes(status: StatusCode, body: Bytes) -> Reply {
    let mut r = reply(status, "application/json", body);
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn page(kind: &'static str, body: &'static str) -> Reply {
    let mut r = reply(StatusCode::OK, kind, body);
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(PAGE_POLICY),
    );
    r
}

/// Answers one request.
pub(super) async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "only GET\n");
        r.headers_mut()
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = req.uri().path();
    match path {
        "/healthz" => health(&shared),
        "/readyz" if shared.ready.load(Ordering::Relaxed) => {
            reply(StatusCode::OK, "text/plain", "ready\n")
        }
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n"),
        "/metrics" => {
            let rendered = blocking(shared.clone(), |s| match s.exported.lock() {
                Ok(e) => e.render(&s.stats, &s.board, &s.api),
                Err(_) => b"# metrics unavailable: an earlier render panicked (a bug)\n".to_vec(),
            })
            .await;
            match rendered {
                Ok(text) => reply(StatusCode::OK, "text/plain; version=0.0.4", text),
                Err(refusal) => json(refusal),
            }
        }
        "/" | "/trending" => page("text/html; charset=utf-8", PAGE),
        "/trending.js" => page("text/javascript; charset=utf-8", PAGE_SCRIPT),
        "/trending.css" => page("text/css; charset=utf-8", PAGE_STYLE),
        p if p.starts_with("/api/") => {
            if let Some(refusal) = unauthorized(&shared, &req) {
                return refusal;
            }
            if p == "/api/stats" {
                let body = serde_json::to_value(shared.stats.snapshot())
                    .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
                return json((StatusCode::OK, body));
            }
            let (path, query) = (p.to_string(), req.uri().query().unwrap_or("").to_string());
            api(shared, path, query).await
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics, /healthz, /readyz, /api/top, /api/titles/<id>\n",
        ),
    }
}

/// 200 while every worker steps; 503 naming the worker that has not
/// stepped for `metrics.stall-timeout`.
fn health(shared: &Shared) -> Reply {
    let limit = shared.limits.stall_timeout;
    match shared.stats.steps.longest_wait(crate::core::time::now_ms()) {
        Some((worker, waited)) if waited as u128 > limit.as_millis() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!(
                "stalled: worker {worker} has not stepped for {:.1} s (metrics.stall-timeout is {limit:?})\n",
                waited as f64 / 1000.0
            ),
        ),
        _ => reply(StatusCode::OK, "text/plain", "ok\n"),
    }
}

/// A 401 unless the request carries the configured bearer token.
fn unauthorized(shared: &Shared, req: &Request<Incoming>) -> Option<Reply> {
    let token = shared.limits.token.as_ref()?;
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    // Constant time: the comparison does not tell how much of a guess was right.
    if given.is_some_and(|g| bool::from(g.ct_eq(token.as_bytes()))) {
        return None;
    }
    let mut r = json(bad(
        StatusCode::UNAUTHORIZED,
        "this endpoint wants `Authorization: Bearer <token>` (metrics.token)",
    ));
    r.headers_mut().insert(
        "www-authenticate",
        HeaderValue::from_static("Bearer realm=\"popularity\""),
    );
    Some(r)
}

/// Runs `f` on the pool of API threads.
async fn blocking<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&Shared) -> T + Send + 'static,
) -> Result<T, query::Refusal> {
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| {
            bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the answer failed (a bug): {e}"),
            )
        })
}

/// Answers a query. A lone process keeps each reply until its boards
/// publish again, so repeated requests cost no more than the HTTP exchange;
/// while one request computes the newer reply, others get the kept one.
async fn api(shared: Arc<Shared>, path: String, query: String) -> Reply {
    let version = query::version(&shared.api);
    let key = (shared.api.processes == 1).then(|| format!("{path}?{query}"));
    let Some(key) = key else {
        return json(answer(shared, path, query).await);
    };
    match shared.api.answers.whole(version, &key) {
        Lookup::Fresh((status, body)) | Lookup::Stale((status, body)) => {
            return json_bytes(status, body)
        }
        Lookup::Miss => {}
    }
    let guard = Refreshing {
        answers: &shared.api.answers,
        key,
    };
    let (status, body) = answer(shared.clone(), path, query).await;
    let body = Bytes::from(body.to_string());
    if status == StatusCode::OK {
        shared
            .api
            .answers
            .keep_whole(version, guard.key.clone(), (status, body.clone()));
    }
    drop(guard);
    json_bytes(status, body)
}

/// Answers a query: this process's share, merged with every peer's when
/// the whole job is asked (`/api/...` rather than `/api/local/...`).
async fn answer(shared: Arc<Shared>, path: String, query: String) -> Answer {
    let args = query::arguments(&query);
    let (local_only, route) = match path.strip_prefix("/api/local") {
        Some(rest) => (true, rest),
        None => (false, path.as_str()),
    };
    let request = match query::parse(&shared.api, route, &args) {
        Ok(r) => r,
        Err(refusal) => return refusal,
    };
    let mine = {
        let request = request.clone();
        blocking(shared.clone(), move |s| {
            query::local_answer(&s.api, &request)
        })
        .await
    };
    let mine = match mine.and_then(|m| m) {
        Ok(m) => m,
        Err(refusal) => return refusal,
    };
    if local_only {
        return (StatusCode::OK, mine);
    }
    let (processes, me) = (shared.api.processes, shared.api.process);
    let mut locals = vec![mine];
    if processes > 1 {
        if shared.peers.addrs.len() != processes {
            return bad(StatusCode::SERVICE_UNAVAILABLE, "the addresses of the other processes are unknown (metrics.listen with port 0, or no hostfile); ask each process for /api/local/...");
        }
        let local_path = match query.is_empty() {
            true => format!("/api/local{path}"),
            false => format!("/api/local{path}?{query}"),
        };
        let asks: Vec<_> = (0..processes)
            .filter(|i| *i != me)
            .map(|i| {
                let (shared, local_path) = (shared.clone(), local_path.clone());
                tokio::spawn(async move { shared.peers.ask(i, &local_path).await })
            })
            .collect();
        for ask in asks {
            match ask.await {
                Ok(Ok(share)) => locals.push(share),
                Ok(Err(refusal)) => return refusal,
                Err(e) => {
                    return bad(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("asking a peer failed (a bug): {e}"),
                    )
                }
            }
        }
    }
    match blocking(shared, move |s| query::merge(&s.api, &request, locals)).await {
        Ok(answer) | Err(answer) => answer,
    }
}
