//! The job's HTTP endpoint: Prometheus metrics, health, the query API and
//! the live page.
//!
//! Served by hyper on a small Tokio runtime of its own, with limits a
//! hostile or broken client cannot pass: a cap on open connections (more
//! are closed on arrival and counted), a bound on the request line and
//! headers (431 beyond), a deadline for the whole request, and a bound on
//! requests and age per kept-alive connection. Files:
//! - [`export`]: the Prometheus export, every metric declared once;
//! - [`query`]: the API's answers, as pure functions;
//! - `cache`: answers kept until the boards publish again;
//! - `peers`: asking the other processes of a cluster;
//! - `routes`: what each path answers, the token check, health.

pub(crate) mod cache;
pub mod export;
mod peers;
pub mod query;
mod routes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::header::{HeaderValue, CONNECTION};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ServeLimits;
use crate::core::error::{Error, Result};
use crate::core::stats::Stats;
use crate::source::kafka::ProgressBoard;

pub use export::metric_names;
pub use query::Api;

static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Connections closed on arrival because `metrics.max-connections` were open.
pub fn refused_connections() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// What the endpoint serves from, besides the query API's boards.
pub struct Served {
    /// The process's counters.
    pub stats: Arc<Stats>,
    /// Kafka partition progress.
    pub board: ProgressBoard,
    /// Turns `/readyz` to 200 once the workers are processing.
    pub ready: Arc<AtomicBool>,
    /// Every process's endpoint (`host:port`) by index, when known: a
    /// process of a cluster asks the others for their shares.
    pub peers: Vec<String>,
}

/// Starts the endpoint on `listen` for process `process`; returns the
/// address it is bound to. It serves until the process exits.
pub fn serve(
    listen: &str,
    process: usize,
    served: Served,
    api: Api,
    limits: ServeLimits,
) -> Result<SocketAddr> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(limits.api_threads)
        .thread_name("http-api")
        .build()
        .map_err(|e| Error::io("starting the metrics endpoint's runtime", e))?;
    let listener = runtime
        .block_on(bind(listen))
        .map_err(|e| Error::io(format!("binding the metrics endpoint to {listen}"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("metrics endpoint address", e))?;
    // Pooled peer connections go before a peer's request deadline closes them.
    let idle = limits.request_timeout / 2;
    let shared = Arc::new(routes::Shared {
        exported: Mutex::new(export::Exported::new(process)?),
        stats: served.stats,
        board: served.board,
        ready: served.ready,
        api,
        peers: peers::Peers::new(
            served.peers,
            limits.token.clone(),
            limits.peer_timeout,
            idle,
        ),
        limits,
    });
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || runtime.block_on(accept(listener, shared)))
        .map_err(|e| Error::io("starting the metrics thread", e))?;
    Ok(addr)
}

/// Connections the kernel may hold for the accept loop. The standard
/// library's 128 overflows when a few hundred kept-alive clients reconnect
/// at once, and a dropped SYN costs the client a one-second retransmit.
const BACKLOG: u32 = 1024;

async fn bind(listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = listen
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address"))?;
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<routes::Shared>) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "accepting an HTTP connection");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                tokio::spawn(connection(stream, shared.clone(), slot));
            }
            Err(_) => {
                REFUSED.fetch_add(1, Ordering::Relaxed);
                drop(stream);
            }
        }
    }
}

/// Serves one connection within the limits; holds its slot until it closes.
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<routes::Shared>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let limits = shared.limits.clone();
    let served = Arc::new(AtomicUsize::new(0));
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let nth = served.fetch_add(1, Ordering::Relaxed) + 1;
        let last = nth >= shared.limits.keep_alive_requests;
        async move {
            let mut reply = routes::route(shared, req).await;
            if last {
                reply
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(reply)
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    if tokio::time::timeout(limits.keep_alive_max_age, conn.as_mut())
        .await
        .is_err()
    {
        // Old enough: finish the request in flight, then close.
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(limits.request_timeout, conn).await;
    }
}
