//! The checkpoint part decoder on arbitrary bytes: an error, never a panic
//! or an allocation beyond the bytes given. Inputs that start like a part
//! get a valid header and checksum, so the fuzzer reaches the payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use popularity::checkpoint::{crc32, decode_part, MAGIC, VERSION};

fuzz_target!(|data: &[u8]| {
    let _ = decode_part(data);
    let mut framed = MAGIC.to_vec();
    framed.extend_from_slice(&VERSION.to_le_bytes());
    framed.extend_from_slice(&(data.len() as u64).to_le_bytes());
    framed.extend_from_slice(&crc32(data).to_le_bytes());
    framed.extend_from_slice(data);
    let _ = decode_part(&framed);
});
