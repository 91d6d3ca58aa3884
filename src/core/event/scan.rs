//! The decoder's fast path: a single pass over a record in the plain form
//! producers write (any key order, any JSON whitespace), giving up on
//! everything else.
//!
//! It accepts a strict subset of what the general decoder
//! ([`WatchEvent::decode_general`](super::WatchEvent::decode_general))
//! accepts, with the same values: exactly the nine fields, once each; keys
//! and strings without escapes or control characters; the closed sets'
//! names as written; non-negative integers without sign, leading zero,
//! fraction or exponent, in range. Anything else (an escape, an extra field,
//! a negative number, a malformed record) returns `None`, and the general
//! decoder decides, so every rejection keeps its reason and detail. The
//! two are compared on random and malformed input in the tests below and
//! in the `event_paths` fuzz target.

use super::{Device, EventType, Raw, Region, Tier};

/// The fields read so far, in whatever order the record has them.
#[derive(Default)]
struct Fields {
    event_id: u64,
    user_id: u64,
    content_id: u64,
    event_type: Option<EventType>,
    event_time: i64,
    watched_ms: i64,
    region: Option<Region>,
    tier: Option<Tier>,
    device: Option<Device>,
}

/// Every field seen once.
const ALL: u16 = (1 << 9) - 1;

/// The nine keys, quoted and with their colon, in the order producers
/// (this project's among them) write them: the key expected next is tried
/// as a literal first, which skips reading and looking the key up.
const KEYS: [&[u8]; 9] = [
    b"\"event_id\":",
    b"\"user_id\":",
    b"\"content_id\":",
    b"\"event_type\":",
    b"\"event_time\":",
    b"\"watched_ms\":",
    b"\"region\":",
    b"\"tier\":",
    b"\"device\":",
];

/// [`KEYS`] as little-endian words, each with the mask of its length
/// (every key is shorter than 16 bytes).
const KEY_WORDS: [(u128, u128); 9] = {
    let mut words = [(0, 0); 9];
    let mut k = 0;
    while k < KEYS.len() {
        let (key, mut i) = (KEYS[k], 0);
        while i < key.len() {
            words[k].0 |= (key[i] as u128) << (8 * i);
            words[k].1 |= 0xFF << (8 * i);
            i += 1;
        }
        k += 1;
    }
    words
};

/// Powers of ten a chunk's digits shift the value by.
const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The place in [`KEYS`] of a key read without its quotes and colon.
fn field_of(key: &[u8]) -> Option<usize> {
    KEYS.iter().position(|k| &k[1..k.len() - 2] == key)
}

/// The fields of `bytes` if it is in the plain form; `None` otherwise.
pub(super) fn scan(bytes: &[u8]) -> Option<Raw> {
    let mut c = Cursor { b: bytes, i: 0 };
    let (mut f, mut seen, mut next) = (Fields::default(), 0u16, 0);
    c.ws();
    c.eat(b'{')?;
    loop {
        c.ws();
        let field = if c.key(next) {
            next
        } else {
            let key = c.plain_str()?;
            c.ws();
            c.eat(b':')?;
            field_of(key)?
        };
        c.ws();
        f.read(field, &mut c)?;
        let bit = 1 << field;
        if seen & bit != 0 {
            return None; // a duplicate: the general decoder names it
        }
        seen |= bit;
        next = (field + 1) % KEYS.len();
        c.ws();
        if c.eat(b',').is_none() {
            c.eat(b'}')?;
            break;
        }
    }
    c.ws();
    if c.i != bytes.len() || seen != ALL {
        return None;
    }
    Some(Raw {
        event_id: f.event_id,
        user_id: f.user_id,
        content_id: f.content_id,
        event_type: f.event_type?,
        event_time: f.event_time,
        watched_ms: f.watched_ms,
        region: f.region?,
        tier: f.tier?,
        device: f.device?,
    })
}

impl Fields {
    /// Reads the value of field `field` (its place in [`KEYS`]) at the cursor.
    fn read(&mut self, field: usize, c: &mut Cursor) -> Option<()> {
        match field {
            0 => self.event_id = c.uint()?,
            1 => self.user_id = c.uint()?,
            2 => self.content_id = c.uint()?,
            3 => self.event_type = Some(EventType::from_bytes(c.plain_str()?)?),
            4 => self.event_time = i64::try_from(c.uint()?).ok()?,
            5 => self.watched_ms = i64::try_from(c.uint()?).ok()?,
            6 => self.region = Some(Region::from_bytes(c.plain_str()?)?),
            7 => self.tier = Some(Tier::from_bytes(c.plain_str()?)?),
            _ => self.device = Some(Device::from_bytes(c.plain_str()?)?),
        }
        Some(())
    }
}

/// How many of the eight bytes of `x`, read little-endian (the record's
/// first byte lowest), are ASCII digits before the first that is not.
fn leading_digits(x: u64) -> usize {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    // A digit's high nibble is 3 before and after adding 6. A byte of 0xFA
    // or more carries into the bytes after it, which are past the first
    // non-digit (itself) and do not count.
    let not_digit =
        ((x & HIGH) ^ THREES) | ((x.wrapping_add(0x0606_0606_0606_0606) & HIGH) ^ THREES);
    (not_digit.trailing_zeros() / 8) as usize
}

/// `x`'s first `d` bytes (1 to 8 digits) as the last `d` of eight digits,
/// with zeros before them.
fn pad_left(x: u64, d: usize) -> u64 {
    let zeros = 8 - d;
    if zeros == 0 {
        return x;
    }
    (x << (8 * zeros)) | (0x3030_3030_3030_3030 >> (8 * d))
}

/// The value of eight ASCII digits read little-endian (the first digit in
/// the lowest byte): pairs, then fours, then the eight, in three multiplies.
fn eight_value(x: u64) -> u64 {
    let v = x - 0x3030_3030_3030_3030;
    let v = v * 10 + (v >> 8);
    let pairs = 0x0000_00FF_0000_00FF;
    ((v & pairs).wrapping_mul(100 + (1_000_000 << 32))
        + ((v >> 16) & pairs).wrapping_mul(1 + (10_000 << 32)))
        >> 32
}

/// A position in a record.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    /// Skips JSON whitespace.
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> Option<()> {
        (self.b.get(self.i) == Some(&byte)).then(|| self.i += 1)
    }

    /// A string without escapes or control characters, without its quotes.
    fn plain_str(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = self.b.get(self.i..)?;
        // One pass to the first byte that ends or spoils a plain string.
        let len = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i += len + 1;
        Some(&rest[..len])
    }

    /// Consumes key `k` of [`KEYS`] if the record goes on with it: one
    /// 16-byte comparison where the record has that many bytes left.
    fn key(&mut self, k: usize) -> bool {
        let rest = self.b.get(self.i..).unwrap_or_default();
        let (word, mask) = KEY_WORDS[k];
        let lit = KEYS[k];
        let hit = match rest.first_chunk::<16>() {
            Some(window) => u128::from_le_bytes(*window) & mask == word,
            None => rest.starts_with(lit),
        };
        if hit {
            self.i += lit.len();
        }
        hit
    }

    /// A non-negative integer: digits only, no leading zero, no fraction or
    /// exponent after it, at most `u64::MAX`.
    fn uint(&mut self) -> Option<u64> {
        let rest = self.b.get(self.i..)?;
        let (mut n, mut v) = (0, 0u64);
        // Eight bytes at a time while a record has them (ids and times are
        // long): the digits leading a chunk in one go, then byte by byte.
        while let Some(chunk) = rest.get(n..).and_then(|r| r.first_chunk::<8>()) {
            let x = u64::from_le_bytes(*chunk);
            let d = leading_digits(x);
            if d > 0 {
                v = v
                    .checked_mul(POW10[d])?
                    .checked_add(eight_value(pad_left(x, d)))?;
                n += d;
            }
            if d < 8 {
                break;
            }
        }
        // Fewer than eight bytes left (after a chunk that ended in a
        // non-digit this stops at once).
        while let Some(&d) = rest.get(n).filter(|d| d.is_ascii_digit()) {
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            n += 1;
        }
        if n == 0 || (n > 1 && rest[0] == b'0') {
            return None;
        }
        self.i += n;
        match rest.get(n) {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::limits;
    use super::super::WatchEvent;
    use crate::core::rng::SplitMix64;

    /// A valid record in one of three spellings: ours, with spaces (as
    /// Python's `json.dumps` writes), or with keys shuffled and an escape.
    fn record(rng: &mut SplitMix64) -> String {
        let e = WatchEvent {
            event_id: rng.next_u64() >> (rng.next_u64() % 64),
            user_id: rng.next_u64() % 1_000_000,
            content_id: rng.next_u64() % 100_000,
            event_type: [
                super::EventType::StartedVideo,
                super::EventType::Heartbeat,
                super::EventType::StoppedVideo,
            ][(rng.next_u64() % 3) as usize],
            event_time: 1_767_225_600_000 + (rng.next_u64() % 86_400_000) as i64,
            watched_ms: (rng.next_u64() % 100_000) as u32,
            region: super::Region((rng.next_u64() % 13) as u8),
            tier: super::Tier::Paid,
            device: super::Device::ALL[(rng.next_u64() % 4) as usize],
        };
        let json = e.to_json();
        match rng.next_u64() % 3 {
            0 => json,
            1 => json.replace("\":", "\": ").replace(',', ", "),
            _ => {
                let inner = &json[1..json.len() - 1];
                let mut fields: Vec<&str> = inner.split(',').collect();
                let k = (rng.next_u64() as usize) % fields.len();
                fields.swap(0, k);
                format!("{{ {} }}\n", fields.join(" ,\t")).replace("paid", "pa\\u0069d")
            }
        }
    }

    /// A random change: a byte flipped, inserted or cut, a field doubled, a
    /// number made strange.
    fn mutate(rng: &mut SplitMix64, s: &str) -> Vec<u8> {
        let mut b = s.as_bytes().to_vec();
        let at = (rng.next_u64() as usize) % b.len();
        let tokens: [&[u8]; 12] = [
            b"0", b"-", b".5", b"e3", b"\\", b"\"", b",", b"}", b" ", b"\x01", b"\xff", b"00",
        ];
        match rng.next_u64() % 6 {
            0 => b[at] = rng.next_u64() as u8,
            1 => {
                let t = tokens[(rng.next_u64() as usize) % tokens.len()];
                b.splice(at..at, t.iter().copied());
            }
            2 => b.truncate(at),
            3 => {
                let text = s.replace("\"tier\"", "\"tier\":\"free\",\"tier\"");
                b = text.into_bytes();
            }
            4 => {
                let text = s.replace("\"user_id\":", "\"user_id\":99999999999999999999");
                b = text.into_bytes();
            }
            _ => {
                let text = s.replace('{', "{\"app\":[1,{\"x\":null}],");
                b = text.into_bytes();
            }
        }
        b
    }

    #[test]
    fn the_fast_path_decides_as_the_general_decoder_does() {
        let mut rng = SplitMix64::new(42);
        let (mut fast, mut total) = (0, 0);
        for n in 0..200_000 {
            let s = record(&mut rng);
            let bytes = if n % 4 == 0 {
                s.into_bytes()
            } else {
                mutate(&mut rng, &s)
            };
            let general = WatchEvent::decode_general(&bytes, &limits());
            assert_eq!(
                WatchEvent::decode(&bytes, &limits()),
                general,
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            fast += super::scan(&bytes).is_some() as u32;
            total += 1;
        }
        // Both paths were exercised: plain records went fast, the rest did not.
        assert!(
            fast > total / 10 && fast < total / 2,
            "{fast} of {total} fast"
        );
    }

    #[test]
    fn integers_read_as_the_standard_parser_reads_them() {
        let mut rng = SplitMix64::new(7);
        // What may follow a number, among them bytes just past the digits
        // (':') and bytes that carry when the digit test adds 6 (0xFA up).
        let tails: [&[u8]; 13] = [
            b",",
            b"}",
            b"",
            b".5",
            b"e1",
            b"E",
            b" ",
            b"x",
            b"\"",
            b"0123456789",
            b":",
            b"\xfa9",
            b"\xff",
        ];
        let mut cases: Vec<String> = (0..100_000)
            .map(|_| {
                let len = 1 + rng.next_u64() % 22;
                (0..len)
                    .map(|_| char::from(b'0' + (rng.next_u64() % 10) as u8))
                    .collect()
            })
            .collect();
        cases.extend(["0", "00", "18446744073709551615", "18446744073709551616"].map(String::from));
        for (n, digits) in cases.iter().enumerate() {
            let mut text = digits.clone().into_bytes();
            text.extend_from_slice(tails[n % tails.len()]);
            let all = text.iter().take_while(|b| b.is_ascii_digit()).count();
            let refused =
                (all > 1 && text[0] == b'0') || matches!(text.get(all), Some(b'.' | b'e' | b'E'));
            let want = if refused {
                None
            } else {
                std::str::from_utf8(&text[..all])
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
            };
            let mut c = super::Cursor { b: &text, i: 0 };
            let shown = String::from_utf8_lossy(&text);
            assert_eq!(c.uint(), want, "{shown}");
            if want.is_some() {
                assert_eq!(c.i, all, "{shown}");
            }
        }
    }
}
