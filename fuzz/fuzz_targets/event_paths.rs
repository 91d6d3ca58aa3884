//! The decoder's fast path against the general decoder on arbitrary bytes:
//! both must accept the same records with the same values and reject the
//! same records with the same reason and detail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity::core::event::{Validation, WatchEvent};

fuzz_target!(|data: &[u8]| {
    let limits = Validation {
        now_ms: 1_767_225_600_000,
        max_future_ms: 15 * 60 * 1000,
    };
    assert_eq!(
        WatchEvent::decode(data, &limits),
        WatchEvent::decode_general(data, &limits)
    );
});
