//! The checkpoint manifest and part metadata parsers, and the snapshot
//! `_SUCCESS` manifest, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity::checkpoint::{Manifest, PartMeta};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Manifest>(data);
    let _ = serde_json::from_slice::<PartMeta>(data);
    let _ = serde_json::from_slice::<popularity::sink::snapshot::Manifest>(data);
});
