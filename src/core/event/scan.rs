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

/// The fields of `bytes` if it is in the plain form; `None` otherwise.
pub(super) fn scan(bytes: &[u8]) -> Option<Raw> {
    let mut c = Cursor { b: bytes, i: 0 };
    let (mut f, mut seen) = (Fields::default(), 0u16);
    c.ws();
    c.eat(b'{')?;
    loop {
        c.ws();
        let key = c.plain_str()?;
        c.ws();
        c.eat(b':')?;
        c.ws();
        let bit = f.read(key, &mut c)?;
        if seen & bit != 0 {
            return None; // a duplicate: the general decoder names it
        }
        seen |= bit;
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
    /// Reads the value of `key` at the cursor; the field's bit.
    fn read(&mut self, key: &[u8], c: &mut Cursor) -> Option<u16> {
        Some(match key {
            b"event_id" => {
                self.event_id = c.uint()?;
                1
            }
            b"user_id" => {
                self.user_id = c.uint()?;
                1 << 1
            }
            b"content_id" => {
                self.content_id = c.uint()?;
                1 << 2
            }
            b"event_type" => {
                self.event_type = Some(EventType::parse(c.name()?)?);
                1 << 3
            }
            b"event_time" => {
                self.event_time = i64::try_from(c.uint()?).ok()?;
                1 << 4
            }
            b"watched_ms" => {
                self.watched_ms = i64::try_from(c.uint()?).ok()?;
                1 << 5
            }
            b"region" => {
                self.region = Some(Region::parse(c.name()?)?);
                1 << 6
            }
            b"tier" => {
                self.tier = Some(Tier::parse(c.name()?)?);
                1 << 7
            }
            b"device" => {
                self.device = Some(Device::parse(c.name()?)?);
                1 << 8
            }
            _ => return None,
        })
    }
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
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' | 0..=0x1f => return None,
                _ => self.i += 1,
            }
        }
        let s = &self.b[start..self.i];
        self.i += 1;
        Some(s)
    }

    /// A plain string as text (the closed sets' names are ASCII).
    fn name(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.plain_str()?).ok()
    }

    /// A non-negative integer: digits only, no leading zero, no fraction or
    /// exponent after it, at most `u64::MAX`.
    fn uint(&mut self) -> Option<u64> {
        let first = *self.b.get(self.i)?;
        if !first.is_ascii_digit() {
            return None;
        }
        self.i += 1;
        let mut v = u64::from(first - b'0');
        while let Some(&d) = self.b.get(self.i).filter(|d| d.is_ascii_digit()) {
            if first == b'0' {
                return None;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.i += 1;
        }
        match self.b.get(self.i) {
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
}
