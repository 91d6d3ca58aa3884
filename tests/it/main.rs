//! The integration tests, one binary: every module below is one concern,
//! and `common` holds the support they share (fixtures, processes, the
//! broker, Garage, HTTP, jobs in this process). Linking the job's
//! dependencies once instead of once per file is what keeps the test build
//! short on a small machine.
//!
//! Tests that need a real service start their own (broker, Garage,
//! Prometheus, Chromium) through `scripts/`, on free ports and in their own
//! scratch directories, so any of them can run beside any other.

mod common;

mod api;
mod bad_input;
mod checkpoint;
mod cluster;
mod containers;
mod freshness;
mod k8s;
mod kafka;
mod kafka_faults;
mod metrics;
mod model;
mod oracle;
mod page;
mod s3;
mod scenario;
mod serve;
mod store_faults;
