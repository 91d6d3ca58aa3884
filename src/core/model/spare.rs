//! Spare row buffers: an hour's rows, once written, hand their buffer back
//! for a later hour's rows.
//!
//! An hour holds a row per title with measures: at a million titles, about
//! 75 MB a worker. A buffer that large is mapped fresh by the allocator each
//! time and given back to the system when freed, so every hour faulted in
//! and zeroed its pages again (a sixth of the samples of a million-title run
//! with its score window running out). Like an allocator's free list, this
//! keeps a few large buffers, emptied, for the next hour.

use std::sync::Mutex;

use super::NodeRow;

/// Buffers kept at most: a few hours of a two-worker process in flight;
/// more would only hold memory.
const KEEP: usize = 4;
/// Buffers smaller than this many rows are not worth keeping: the
/// allocator reuses small blocks itself.
const WORTH: usize = 1 << 15;

static SPARE: Mutex<Vec<Vec<NodeRow>>> = Mutex::new(Vec::new());

/// An empty buffer for at least `n` rows: a spare one if one is large
/// enough, else a new one.
///
/// ```
/// use popularity::core::model::{give_back, spare_rows, NodeRow, Tally};
///
/// let mut rows = spare_rows(1 << 16);
/// let (m, kind, parent) = (Tally::default(), None, None);
/// rows.push(NodeRow { id: 7, kind, parent, m, score_ppm: 0, decay: 1.0 });
/// give_back(rows);
/// let again = spare_rows(1 << 15);
/// assert!(again.is_empty() && again.capacity() >= 1 << 16, "the spare, emptied");
/// ```
pub fn spare_rows(n: usize) -> Vec<NodeRow> {
    if n >= WORTH {
        let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest that fits: a large one stays for a larger hour.
        let fits = spare.iter().enumerate().filter(|(_, b)| b.capacity() >= n);
        if let Some((at, _)) = fits.min_by_key(|(_, b)| b.capacity()) {
            return spare.swap_remove(at);
        }
    }
    Vec::with_capacity(n)
}

/// Hands back a buffer whose rows are done with; it is emptied here, on
/// the caller's thread.
pub fn give_back(mut rows: Vec<NodeRow>) {
    if rows.capacity() < WORTH {
        return;
    }
    rows.clear();
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.len() < KEEP {
        spare.push(rows);
    } else if let Some(small) = spare.iter_mut().min_by_key(|b| b.capacity()) {
        // Keep the larger ones: a later hour is as large or larger.
        if small.capacity() < rows.capacity() {
            *small = rows;
        }
    }
}
