//! [`Tally`]: a node's measures as the model holds them, one per title in a
//! shard's slots and one per row of an hour, 104 bytes where [`Measures`]
//! takes 168.
//!
//! The breakdown counts (tier, device, region) are 32-bit while they fit,
//! which is always for a title's views in one window; a count that leaves
//! `0..=u32::MAX` turns the tally's breakdown into 64-bit counts held apart,
//! so nothing is cut.

use serde::{Deserialize, Serialize};

use super::{Counts, Measures, N_BREAKDOWN, N_DEVICES, N_REGIONS, N_TIERS};

/// The breakdown counts: 32-bit while every count fits, else 64-bit.
#[derive(Clone, Debug)]
enum Cells {
    Narrow([u32; N_BREAKDOWN]),
    Wide(Box<[i64; N_BREAKDOWN]>),
}

/// A node's measures, exact, with narrow breakdown counts (see the module).
/// It reads and writes as [`Measures`] in every serialized form.
///
/// ```
/// use popularity::core::model::{Measures, Tally};
///
/// let mut m = Measures { views: 3, ..Measures::default() };
/// m.region[0] = 3;
/// m.tier[1] = 5_000_000_000; // past 32 bits: kept exactly
/// let t = Tally::from(m);
/// assert_eq!(t.region(0), 3);
/// assert_eq!(t.measures(), m);
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "Measures", into = "Measures")]
pub struct Tally {
    /// Views (`started_video`) in the window.
    pub views: i64,
    /// Milliseconds watched in the window.
    pub watch_ms: i64,
    /// Views in the score window.
    pub views_24h: i64,
    cells: Cells,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            views: 0,
            watch_ms: 0,
            views_24h: 0,
            cells: Cells::Narrow([0; N_BREAKDOWN]),
        }
    }
}

/// Shown as the measures: two tallies that show alike are equal, however
/// their breakdowns are held.
impl std::fmt::Debug for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.measures().fmt(f)
    }
}

impl PartialEq for Tally {
    fn eq(&self, other: &Tally) -> bool {
        self.measures() == other.measures()
    }
}

impl From<Measures> for Tally {
    fn from(m: Measures) -> Tally {
        let wide = m.breakdown();
        let mut narrow = [0u32; N_BREAKDOWN];
        let fits = narrow
            .iter_mut()
            .zip(wide)
            .all(|(n, w)| u32::try_from(w).map(|v| *n = v).is_ok());
        Tally {
            views: m.views,
            watch_ms: m.watch_ms,
            views_24h: m.views_24h,
            cells: if fits {
                Cells::Narrow(narrow)
            } else {
                Cells::Wide(Box::new(wide))
            },
        }
    }
}

impl From<Tally> for Measures {
    fn from(t: Tally) -> Measures {
        t.measures()
    }
}

impl Tally {
    /// Breakdown count `i` (tiers, devices, regions in one array).
    fn cell(&self, i: usize) -> i64 {
        match &self.cells {
            Cells::Narrow(c) => c.get(i).map_or(0, |v| i64::from(*v)),
            Cells::Wide(c) => c.get(i).copied().unwrap_or(0),
        }
    }

    /// Views in tier `t` (free, paid); 0 past the tiers.
    pub fn tier(&self, t: usize) -> i64 {
        if t < N_TIERS {
            self.cell(t)
        } else {
            0
        }
    }

    /// Views on device `d` (mobile, tv, web, tablet); 0 past the devices.
    pub fn device(&self, d: usize) -> i64 {
        if d < N_DEVICES {
            self.cell(N_TIERS + d)
        } else {
            0
        }
    }

    /// Views in region `r`, in [`crate::core::event::REGIONS`] order; 0
    /// past the regions.
    pub fn region(&self, r: usize) -> i64 {
        if r < N_REGIONS {
            self.cell(N_TIERS + N_DEVICES + r)
        } else {
            0
        }
    }

    /// The breakdown counts: tiers, then devices, then regions.
    pub fn breakdown(&self) -> [i64; N_BREAKDOWN] {
        match &self.cells {
            Cells::Narrow(c) => c.map(i64::from),
            Cells::Wide(c) => **c,
        }
    }

    /// The measures in full.
    pub fn measures(&self) -> Measures {
        let mut m = Measures {
            views: self.views,
            watch_ms: self.watch_ms,
            views_24h: self.views_24h,
            ..Measures::default()
        };
        let all = m.tier.iter_mut().chain(&mut m.device).chain(&mut m.region);
        for (v, x) in all.zip(self.breakdown()) {
            *v = x;
        }
        m
    }

    /// True if every count is zero; views, watch time and 24-hour views
    /// first, as [`Measures::is_zero`].
    pub fn is_zero(&self) -> bool {
        self.views == 0
            && self.watch_ms == 0
            && self.views_24h == 0
            && match &self.cells {
                Cells::Narrow(c) => c.iter().all(|v| *v == 0),
                Cells::Wide(c) => c.iter().all(|v| *v == 0),
            }
    }
}

impl Counts for Tally {
    fn add_totals(&mut self, views: i64, watch_ms: i64, views_24h: i64) {
        self.views += views;
        self.watch_ms += watch_ms;
        self.views_24h += views_24h;
    }

    fn add_cell(&mut self, (t, d, r): (usize, usize, usize), v: i64) {
        self.bump([t, N_TIERS + d, N_TIERS + N_DEVICES + r], v);
    }

    /// Adds `add` to the breakdown counts, widening them first if any
    /// result would not fit in 32 bits.
    fn add_breakdown(&mut self, add: &[i64; N_BREAKDOWN]) {
        if let Cells::Narrow(c) = &mut self.cells {
            let mut next = *c;
            let fits = next
                .iter_mut()
                .zip(add)
                .all(|(x, v)| u32::try_from(i64::from(*x) + v).map(|y| *x = y).is_ok());
            if fits {
                *c = next;
                return;
            }
            self.cells = Cells::Wide(Box::new(c.map(i64::from)));
        }
        if let Cells::Wide(c) = &mut self.cells {
            for (x, v) in c.iter_mut().zip(add) {
                *x += v;
            }
        }
    }
}

impl Tally {
    /// Adds `v` to three distinct breakdown counts, widening them all first
    /// if any result would not fit in 32 bits.
    fn bump(&mut self, at: [usize; 3], v: i64) {
        if let Cells::Narrow(c) = &mut self.cells {
            let next = at.map(|i| c.get(i).and_then(|x| u32::try_from(i64::from(*x) + v).ok()));
            if let [Some(a), Some(b), Some(e)] = next {
                for (i, x) in at.into_iter().zip([a, b, e]) {
                    c[i] = x;
                }
                return;
            }
            let wide = c.map(i64::from);
            self.cells = Cells::Wide(Box::new(wide));
        }
        if let Cells::Wide(c) = &mut self.cells {
            for i in at {
                if let Some(x) = c.get_mut(i) {
                    *x += v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::{Delta, Obs, N_CELLS};

    /// A tally and a `Measures` given the same changes stay equal, through
    /// counts that leave 32 bits both ways and come back.
    #[test]
    fn a_tally_follows_measures_exactly_past_32_bits() {
        let mut rng = crate::core::rng::SplitMix64::new(11);
        let big = i64::from(u32::MAX);
        for round in 0..200 {
            let (mut m, mut t) = (Measures::default(), Tally::default());
            for _ in 0..50 {
                let views = match rng.below(4) {
                    0 => 1,
                    1 => -1,
                    2 => big - 1 + rng.below(3) as i64,
                    _ => -(big + rng.below(3) as i64),
                };
                let d = match rng.below(6) {
                    0 => Delta::Score(views),
                    1 => {
                        let mut w = Measures {
                            views,
                            watch_ms: -views,
                            views_24h: views,
                            ..Measures::default()
                        };
                        w.tier[rng.below(2) as usize] = views;
                        w.region[rng.below(12) as usize] = -views;
                        Delta::Whole(w)
                    }
                    _ => Delta::Cell {
                        cell: rng.below(N_CELLS as u64) as u8,
                        obs: Obs {
                            views,
                            watch_ms: views * 7,
                        },
                        score: rng.below(2) == 0,
                    },
                };
                let with_score = round % 2 == 0;
                d.apply(&mut m, with_score);
                d.apply(&mut t, with_score);
                assert_eq!(t.measures(), m, "round {round}");
                assert_eq!(t.is_zero(), m.is_zero());
            }
        }
    }

    #[test]
    fn a_tally_is_smaller_and_reads_and_writes_as_measures() {
        assert!(std::mem::size_of::<Tally>() <= 104);
        let mut m = Measures {
            views: 2,
            ..Measures::default()
        };
        m.device[3] = -1;
        m.region[11] = 2;
        let t = Tally::from(m);
        let json = serde_json::to_string(&t).expect("serializes");
        assert_eq!(json, serde_json::to_string(&m).expect("serializes"));
        let back: Tally = serde_json::from_str(&json).expect("reads");
        assert_eq!(back, t);
        assert_eq!((t.device(3), t.region(11), t.tier(2)), (-1, 2, 0));
    }
}
