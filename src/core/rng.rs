//! Small deterministic random numbers and samplers for the generator.
//!
//! Hand-rolled so that a seed means the same stream forever, whatever
//! version of a random-number crate is current.

/// SplitMix64: tiny, fast, and good enough for synthetic workloads.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator for item `index` of stream `seed`: counter-based, so any
    /// worker can produce any item without producing the ones before it.
    pub fn for_item(seed: u64, index: u64) -> Self {
        SplitMix64 {
            state: mix(seed ^ mix(index.wrapping_add(0x9e37_79b9_7f4a_7c15))),
        }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// The SplitMix64 finalizer: a bijective bit mixer.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Walker/Vose alias table: O(1) sampling from a fixed discrete distribution.
#[derive(Clone, Debug)]
pub struct Alias {
    prob: Vec<f64>,
    alias: Vec<u32>,
}

impl Alias {
    /// Builds the table from non-negative weights (at least one positive).
    pub fn new(weights: &[f64]) -> Option<Alias> {
        let n = weights.len();
        let total: f64 = weights.iter().sum();
        if n == 0
            || total <= 0.0
            || weights.iter().any(|w| !w.is_finite() || *w < 0.0)
            || n > u32::MAX as usize
        {
            return None;
        }
        let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
        let mut prob = vec![1.0; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Some(Alias { prob, alias })
    }

    /// Zipf weights `1 / rank^s` for ranks `1..=n`.
    pub fn zipf(n: usize, s: f64) -> Option<Alias> {
        let w: Vec<f64> = (1..=n).map(|r| 1.0 / (r as f64).powf(s)).collect();
        Alias::new(&w)
    }

    /// Draws an index.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let i = rng.below(self.prob.len() as u64) as usize;
        if rng.unit() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        }
    }

    /// Number of outcomes.
    pub fn len(&self) -> usize {
        self.prob.len()
    }

    /// True if there are no outcomes (never, once built).
    pub fn is_empty(&self) -> bool {
        self.prob.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_matches_weights() {
        let a = Alias::new(&[1.0, 2.0, 0.0, 5.0]).expect("valid weights");
        let mut rng = SplitMix64::new(1);
        let mut hist = [0u32; 4];
        for _ in 0..800_000 {
            hist[a.sample(&mut rng)] += 1;
        }
        assert_eq!(hist[2], 0);
        for (i, w) in [(0, 1.0), (1, 2.0), (3, 5.0)] {
            let got = hist[i] as f64 / 800_000.0;
            assert!((got - w / 8.0).abs() < 0.005, "outcome {i}: {got}");
        }
        assert!(Alias::new(&[]).is_none());
        assert!(Alias::new(&[0.0]).is_none());
    }

    #[test]
    fn counter_based_streams_are_stable() {
        let a: Vec<u64> = (0..4)
            .map(|i| SplitMix64::for_item(9, i).next_u64())
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|i| SplitMix64::for_item(9, i).next_u64())
            .collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
    }
}
