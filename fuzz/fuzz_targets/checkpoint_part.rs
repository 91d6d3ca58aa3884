//! The checkpoint part decoder on arbitrary bytes: an error, never a panic
//! or an allocation beyond the bytes given. Inputs that start like a part
//! get a valid header and checksum, so the fuzzer reaches the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity::checkpoint::{decode_part, frame_part};

fuzz_target!(|data: &[u8]| {
    let _ = decode_part(data);
    let _ = decode_part(&frame_part(data));
});
