//! The event decoder and validator on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity::core::event::{Validation, WatchEvent};

fuzz_target!(|data: &[u8]| {
    let limits = Validation {
        now_ms: 1_767_225_600_000,
        max_future_ms: 15 * 60 * 1000,
    };
    if let Ok(e) = WatchEvent::decode(data, &limits) {
        // What decodes encodes and decodes to the same event.
        let again = WatchEvent::decode(e.to_json().as_bytes(), &limits);
        assert_eq!(again.ok(), Some(e));
    }
});
