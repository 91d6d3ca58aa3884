//! `[metrics]`: the HTTP endpoint's address, limits and token.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::error::Error;

/// `[metrics]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct MetricsConfig {
    /// Serve `/metrics`, `/healthz` and `/readyz`.
    pub enabled: bool,
    /// Address to listen on. Port 0: any free port.
    pub listen: String,
    /// Offset the port by the process index (`-p`), so several processes on
    /// one host do not collide; off where each process has its own address (Kubernetes).
    pub port_per_process: bool,
    /// Open connections at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Largest request line plus headers (bytes); beyond it the answer is 431.
    pub max_header_bytes: usize,
    /// Most header lines in a request; beyond it the answer is 431.
    pub max_headers: usize,
    /// Time a client has to send a whole request (line and headers).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests one connection may carry before it is closed.
    pub keep_alive_requests: usize,
    /// Age at which a kept-alive connection is closed (after its request in flight).
    #[serde(with = "humantime_serde")]
    pub keep_alive_max_age: Duration,
    /// Threads that compute API answers and scrapes (health never waits for them).
    pub api_threads: usize,
    /// Time to wait for another process's share of a whole-job answer.
    #[serde(with = "humantime_serde")]
    pub peer_timeout: Duration,
    /// `/healthz` turns 503 when a worker has not stepped for this long.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Bearer token required on `/api/*` (and sent to peers): `env:VAR` or
    /// `file:/path`, never the token itself; empty for none.
    pub token: String,
    /// Also serve provisional counts: every view received so far, also of
    /// the panes the watermark has not passed (late views of those may still
    /// come). Labelled `provisional` in the answers; the hourly snapshots
    /// stay final and exact. Off by default: it costs a sum over the pending
    /// panes at every publish (about once a second per worker).
    pub provisional: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".into(),
            port_per_process: true,
            max_connections: 512,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            request_timeout: Duration::from_secs(10),
            keep_alive_requests: 1000,
            keep_alive_max_age: Duration::from_secs(5 * 60),
            api_threads: 4,
            peer_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(120),
            token: String::new(),
            provisional: false,
        }
    }
}

/// `[metrics]` with its durations read and its token resolved.
#[derive(Clone)]
pub struct ServeLimits {
    /// See [`MetricsConfig::max_connections`].
    pub max_connections: usize,
    /// See [`MetricsConfig::max_header_bytes`].
    pub max_header_bytes: usize,
    /// See [`MetricsConfig::max_headers`].
    pub max_headers: usize,
    /// See [`MetricsConfig::request_timeout`].
    pub request_timeout: std::time::Duration,
    /// See [`MetricsConfig::keep_alive_requests`].
    pub keep_alive_requests: usize,
    /// See [`MetricsConfig::keep_alive_max_age`].
    pub keep_alive_max_age: std::time::Duration,
    /// See [`MetricsConfig::api_threads`].
    pub api_threads: usize,
    /// See [`MetricsConfig::peer_timeout`].
    pub peer_timeout: std::time::Duration,
    /// See [`MetricsConfig::stall_timeout`].
    pub stall_timeout: std::time::Duration,
    /// The bearer token, if one is required.
    pub token: Option<String>,
}

impl std::fmt::Debug for ServeLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ServeLimits")
            .field("max_connections", &self.max_connections)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl MetricsConfig {
    /// Reads the limits and resolves the token; a bad value or a missing
    /// token source is a configuration error.
    pub fn limits(&self) -> Result<ServeLimits, Error> {
        let duration = |key: &str, v: Duration| -> Result<Duration, Error> {
            if v.is_zero() {
                return Err(Error::Config(format!(
                    "metrics.{key}: must be a positive duration such as 10s or 2m"
                )));
            }
            Ok(v)
        };
        let at_least = |key: &str, v: usize, min: usize| -> Result<usize, Error> {
            if v < min {
                return Err(Error::Config(format!(
                    "metrics.{key} is {v}; at least {min}"
                )));
            }
            Ok(v)
        };
        Ok(ServeLimits {
            max_connections: at_least("max-connections", self.max_connections, 4)?,
            // The HTTP parser needs 8 KiB of buffer at least.
            max_header_bytes: at_least("max-header-bytes", self.max_header_bytes, 8192)?,
            max_headers: at_least("max-headers", self.max_headers, 8)?,
            request_timeout: duration("request-timeout", self.request_timeout)?,
            keep_alive_requests: at_least("keep-alive-requests", self.keep_alive_requests, 1)?,
            keep_alive_max_age: duration("keep-alive-max-age", self.keep_alive_max_age)?,
            api_threads: at_least("api-threads", self.api_threads, 1)?,
            peer_timeout: duration("peer-timeout", self.peer_timeout)?,
            stall_timeout: duration("stall-timeout", self.stall_timeout)?,
            token: self.resolve_token()?,
        })
    }

    fn resolve_token(&self) -> Result<Option<String>, Error> {
        let t = self.token.trim();
        let token = if t.is_empty() {
            return Ok(None);
        } else if let Some(var) = t.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                Error::Config(format!(
                    "metrics.token wants environment variable {var}, which is not set"
                ))
            })?
        } else if let Some(path) = t.strip_prefix("file:") {
            std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("metrics.token: reading the token file {path}: {e}"))
            })?
        } else {
            return Err(Error::Config(
                "metrics.token takes `env:VAR` or `file:/path`, not the token itself (job files end up in logs and ConfigMaps)".into(),
            ));
        };
        let token = token.trim().to_string();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::Config(
                "metrics.token: the token is empty or has characters a header cannot carry".into(),
            ));
        }
        Ok(Some(token))
    }

    /// The address for process `index`.
    pub fn address(&self, index: usize) -> Result<String, Error> {
        let (host, port) = self.listen.rsplit_once(':').ok_or_else(|| {
            Error::Config(format!("metrics.listen `{}` needs host:port", self.listen))
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| Error::Config(format!("metrics.listen `{}`: bad port", self.listen)))?;
        let offset = if self.port_per_process {
            index as u16
        } else {
            0
        };
        let port = if port == 0 {
            0
        } else {
            port.checked_add(offset)
                .ok_or_else(|| Error::Config("metrics port overflow".into()))?
        };
        Ok(format!("{host}:{port}"))
    }
}
