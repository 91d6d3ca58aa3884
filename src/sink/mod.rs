//! Sinks: where finished hours and rejected records go.
//!
//! The dataflow hands finished hours to the snapshot operators here; they
//! encode Parquet, put objects through an [`store::ObjectStore`], and publish
//! each hour with a `_SUCCESS` manifest once every worker's part exists.

pub mod deadletter;
pub mod layout;
pub mod measured;
pub mod parquet;
pub mod s3;
pub mod snapshot;
pub mod store;
pub mod tables;
pub mod uploader;
