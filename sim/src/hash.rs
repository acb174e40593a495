//! A fast hash for the simulator's lookup-only hash maps and sets.
//!
//! The standard library's SipHash resists collision attacks, which a simulator fed its own keys
//! does not need, and costs about as much as the rest of a lookup. Tables that use this are only
//! ever looked up, never iterated, so their order cannot leak into a run.

use std::hash::{BuildHasherDefault, Hasher};

/// `BuildHasher` of [`FastHasher`].
pub type FastHash = BuildHasherDefault<FastHasher>;

/// Eight bytes per step, mixed by a multiply (as rustc's `FxHasher` does).
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.add(u64::from_le_bytes(w));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn keys_that_differ_anywhere_hash_apart() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("shardId-{i:012}")).collect();
        let hashes: HashSet<u64> = keys
            .iter()
            .map(|k| {
                let mut h = FastHasher::default();
                std::hash::Hash::hash(k.as_str(), &mut h);
                h.finish()
            })
            .collect();
        assert_eq!(hashes.len(), keys.len());
        let set: HashSet<&str, FastHash> = keys.iter().map(String::as_str).collect();
        assert!(keys.iter().all(|k| set.contains(k.as_str())));
        assert!(!set.contains("shardId-000000010000"));
    }
}
