//! Capacity hygiene for the long-lived maps keyed by connection, user, room or client
//! address. A `HashMap` keeps its peak capacity after its entries go, so a map that once
//! held 20,000 connections would hold their slots for the life of the process; this
//! module decides when a map gives the spare back. It owns no map and takes no lock: the
//! caller calls it, under its own lock, right after a removal.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Below this capacity a map is never shrunk: a small table costs little and would only
/// be reallocated again by the next burst.
const MIN_CAPACITY: usize = 64;

/// Shrinks `map` to twice its length once fewer than a quarter of its slots are used.
///
/// The gap between the two factors is the hysteresis that keeps this amortised O(1): after
/// a shrink to `2n`, the next one needs the map to fall below `n / 2`, i.e. `n / 2` more
/// removals pay for the `O(n)` rehash, and growth back to `2n` entries never reallocates.
/// `capacity()` also falls as removals leave tombstones, which only delays a shrink; and
/// `shrink_to` reallocates only when the table would get fewer buckets, so a call that
/// finds nothing to give back costs a comparison.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `key`'s value lives: it moves only when the table is reallocated. (The
    /// table's `capacity()` cannot tell, as it also falls when removals leave tombstones.)
    fn slot<V>(map: &HashMap<u64, V>, key: u64) -> *const V {
        map.get(&key).expect("the sentinel stays") as *const V
    }

    #[test]
    fn a_half_emptied_map_keeps_its_table_and_an_emptied_one_gives_it_back() {
        const SENTINEL: u64 = u64::MAX;
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
        // Each reallocation must be paid for by at least as many removals as the map then
        // holds, so draining 100,000 entries may halve the table some 11 times, not more.
        const SENTINEL: u64 = u64::MAX;
        let mut map: HashMap<u64, u64> = HashMap::new();
        map.insert(SENTINEL, 7);
        for i in 0..100_000 {
            map.insert(i, i);
        }
        let mut moves = 0;
        let mut at = slot(&map, SENTINEL);
        for i in 0..100_000 {
            map.remove(&i);
            shrink_if_sparse(&mut map);
            let now = slot(&map, SENTINEL);
            if now != at {
                moves += 1;
                at = now;
            }
        }
        assert!(moves >= 1, "the drained table was never given back");
        assert!(moves <= 16, "{moves} reallocations while draining");
        assert_eq!(map[&SENTINEL], 7);
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
