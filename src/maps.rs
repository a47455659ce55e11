//! Capacity hygiene for the long-lived maps keyed by connection, user, room or client
//! address. A `HashMap` keeps its peak capacity after its entries go, so a map that once
//! held 20,000 connections would hold their slots for the life of the process; this
//! module decides when a map gives the spare back. It owns no map and takes no lock: the
//! caller calls it, under its own lock, right after a removal.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

/// A table is never shrunk below room for this many entries: a small one costs little and
/// would only be reallocated again by the next burst. (The std map rounds it up to its
/// bucket size, 112 entries.)
const MIN_CAPACITY: usize = 64;

/// Shrinks `map` to about twice its length once fewer than a quarter of its slots are used.
///
/// Why this stays amortised O(1): a shrink is an `O(n)` rehash, and each one at least
/// halves the table (it happens only below a quarter full, to room for twice the
/// length), so a drain from any peak costs at most about twice the peak's table in all;
/// refilling to the length at the last shrink never reallocates, because the shrunk table
/// has room for twice that; and a map going back and forth around one size
/// reallocates only when it crosses a factor of two or more. `capacity()` also falls as
/// removals leave tombstones, which only delays a shrink; `shrink_to` reallocates only
/// when the table would get fewer buckets, so a call that finds nothing to give back
/// costs a comparison.
pub fn shrink_if_sparse<K, V, S>(map: &mut HashMap<K, V, S>)
where
    K: Eq + Hash,
    S: BuildHasher,
{
    let cap = map.capacity();
    if cap > MIN_CAPACITY && map.len() < cap / 4 {
        map.shrink_to((map.len() * 2).max(MIN_CAPACITY));
    }
}

/// The same rule for a queue (`VecDeque` keeps its peak capacity too).
pub fn shrink_deque_if_sparse<T>(queue: &mut VecDeque<T>) {
    let cap = queue.capacity();
    if cap > MIN_CAPACITY && queue.len() < cap / 4 {
        queue.shrink_to((queue.len() * 2).max(MIN_CAPACITY));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `key`'s value lives: it moves only when the table is reallocated. (The
    /// table's `capacity()` cannot tell, as it also falls when removals leave tombstones.)
    fn slot<V>(map: &HashMap<u64, V>, key: u64) -> *const V {
        map.get(&key).expect("the sentinel stays") as *const V
    }

    const SENTINEL: u64 = u64::MAX;

    /// A map of `n` entries plus a sentinel that stays, to watch the table move.
    fn filled(n: u64) -> HashMap<u64, u64> {
        let mut map: HashMap<u64, u64> = (0..n).map(|i| (i, i)).collect();
        map.insert(SENTINEL, 7);
        map
    }

    /// Counts the table's reallocations, seen as moves of the sentinel's value.
    struct Moves {
        at: *const u64,
        count: usize,
    }

    impl Moves {
        fn from(map: &HashMap<u64, u64>) -> Moves {
            Moves {
                at: slot(map, SENTINEL),
                count: 0,
            }
        }

        fn check(&mut self, map: &HashMap<u64, u64>) {
            let now = slot(map, SENTINEL);
            if now != self.at {
                self.count += 1;
                self.at = now;
            }
        }
    }

    #[test]
    fn a_half_emptied_map_keeps_its_table_and_an_emptied_one_gives_it_back() {
        let mut map: HashMap<u64, [u8; 64]> = HashMap::new();
        map.insert(SENTINEL, [1; 64]);
        for i in 0..20_000 {
            map.insert(i, [0; 64]);
        }
        let peak = map.capacity();
        let before = slot(&map, SENTINEL);

        // Half gone: still well used, nothing reallocated.
        for i in 0..10_000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert_eq!(slot(&map, SENTINEL), before);

        // All but the sentinel gone: a small table, not the peak one.
        for i in 10_000..20_000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert_eq!(map.len(), 1);
        assert_ne!(slot(&map, SENTINEL), before);
        assert!(
            map.capacity() <= 2 * MIN_CAPACITY,
            "capacity {} after emptying a map of peak {peak}",
            map.capacity()
        );
        assert_eq!(map[&SENTINEL], [1; 64]);
    }

    #[test]
    fn a_draining_map_is_reallocated_a_logarithmic_number_of_times() {
        // Each reallocation at least halves the table, so draining 100,000 entries moves
        // it some 8-11 times (a shrink on every call, `shrink_to_fit`, moves it on each
        // power of two, ~15 times).
        let mut map = filled(100_000);
        let mut moves = Moves::from(&map);
        for i in 0..100_000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
            moves.check(&map);
        }
        let moves = moves.count;
        assert!(moves >= 1, "the drained table was never given back");
        assert!(moves <= 12, "{moves} reallocations while draining");
        assert_eq!(map[&SENTINEL], 7);
    }

    #[test]
    fn a_map_going_back_and_forth_is_not_reallocated_each_time() {
        // The case the hysteresis is for: a few connections come and go around a steady
        // number. Shrinking to fit on every removal would rehash on each cycle.
        let mut map = filled(20_000);
        // Down to 7,168 entries: a full 8,192-bucket table, the worst spot for a rule
        // without hysteresis (one more entry doubles it, one fewer would halve it back).
        for i in 0..12_833 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
        }
        assert_eq!(map.len(), 7_168);
        let mut moves = Moves::from(&map);
        for round in 0..2_000u64 {
            let key = 1_000_000 + round;
            map.insert(key, round);
            // Checked after each step: the allocator may hand a shrunk table back the
            // very block it had before the growth.
            moves.check(&map);
            map.remove(&key);
            shrink_if_sparse(&mut map);
            moves.check(&map);
        }
        let moves = moves.count;
        assert!(
            moves <= 2,
            "{moves} reallocations over 2,000 insert-remove cycles"
        );
    }

    #[test]
    fn an_emptied_queue_gives_its_buffer_back() {
        let mut q: VecDeque<u64> = (0..10_000).collect();
        while q.pop_front().is_some() {
            shrink_deque_if_sparse(&mut q);
        }
        assert!(
            q.capacity() <= 2 * MIN_CAPACITY,
            "capacity {}",
            q.capacity()
        );
        let mut busy: VecDeque<u64> = (0..10_000).collect();
        let peak = busy.capacity();
        for _ in 0..5_000 {
            busy.pop_front();
            shrink_deque_if_sparse(&mut busy);
        }
        assert_eq!(busy.capacity(), peak, "half full is not sparse");
    }

    #[test]
    fn a_small_map_is_left_alone() {
        let mut map: HashMap<u64, u32> = HashMap::with_capacity(MIN_CAPACITY);
        map.insert(1, 1);
        let at = slot(&map, 1);
        shrink_if_sparse(&mut map);
        assert_eq!(slot(&map, 1), at);
    }
}
