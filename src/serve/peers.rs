//! Asking the other processes of a cluster for their shares of an answer.
//!
//! A pooled HTTP/1 client on the endpoint's runtime: the asks of one
//! request run at once, each bounded in time and in the size of the answer
//! it takes.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::StatusCode;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::query::{bad, Refusal};

/// The largest answer taken from a peer. A process's share of `/api/top`
/// lists every rollup with views (tens of bytes each), so a catalog of
/// millions fits; a broken peer cannot make this process allocate more.
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The other processes' endpoints and how to ask them.
pub struct Peers {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Every process's `host:port`, by index (this one's included).
    pub addrs: Vec<String>,
    token: Option<String>,
    timeout: Duration,
}

impl Peers {
    /// A client for `addrs`, sending `token` as a bearer token when set.
    /// Pooled connections are dropped after `idle`, before a peer's own
    /// request deadline would close them.
    pub fn new(
        addrs: Vec<String>,
        token: Option<String>,
        timeout: Duration,
        idle: Duration,
    ) -> Peers {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(2))));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .build(connector);
        Peers {
            client,
            addrs,
            token,
            timeout,
        }
    }

    /// GETs `path_and_query` from process `index`: its JSON answer, or a
    /// 503 that names the process and why.
    pub async fn ask(
        &self,
        index: usize,
        path_and_query: &str,
    ) -> Result<serde_json::Value, Refusal> {
        let addr = self.addrs.get(index).map_or("", String::as_str);
        let unavailable = |why: String| {
            bad(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("process {index} at {addr}: {why}"),
            )
        };
        let mut request =
            hyper::Request::get(format!("http://{addr}{path_and_query}")).header(HOST, addr);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| unavailable(format!("not a valid request: {e}")))?;
        let fetch = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading its answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, fetch).await {
            Ok(answer) => answer.map_err(unavailable)?,
            Err(_) => return Err(unavailable(format!("no answer within {:?}", self.timeout))),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))?;
        if status != StatusCode::OK {
            let why = value["error"]
                .as_str()
                .map_or_else(|| status.to_string(), str::to_string);
            return Err(unavailable(why));
        }
        Ok(value)
    }
}
