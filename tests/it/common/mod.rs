//! Support shared by the integration tests, one module per concern.

mod broker;
mod docker;
mod fixtures;
mod garage;
mod http;
mod inproc;
pub mod oracle;
mod process;
mod tls;

pub use broker::*;
pub use docker::*;
pub use fixtures::*;
pub use garage::*;
pub use http::*;
pub use inproc::*;
pub use process::*;
pub use tls::*;
