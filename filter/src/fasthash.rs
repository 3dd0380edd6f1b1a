//! A fast, unkeyed hash for the tables built from the configuration.
//!
//! The standard library's SipHash is keyed against collision floods, which
//! matter when the keys come from clients. The keys of the router's and the
//! compiler's tables come from the configuration; requests only look keys
//! up, and a lookup costs one probe sequence whatever the key, so an
//! attacker cannot make the table slow. Multiply-and-rotate over 8 bytes at
//! a time (the Fx hash rustc uses) takes a few instructions per word where
//! SipHash takes a few dozen: it is most of the cost of loading 10,000
//! agents, and every request's path lookup pays it too.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(rest) {
                *slot = *byte;
            }
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// The hash of a key in the tables that keep no key of their own (their
/// slots name where the key can be read).
pub fn hash_str(s: &str) -> u64 {
    use std::hash::BuildHasher;
    BuildHasherDefault::<FxHasher>::default().hash_one(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash_of(s: &str) -> u64 {
        BuildHasherDefault::<FxHasher>::default().hash_one(s)
    }

    #[test]
    fn equal_keys_hash_alike_and_near_keys_apart() {
        assert_eq!(
            hash_of("/ns-1/agent/agent-1"),
            hash_of("/ns-1/agent/agent-1")
        );
        let mut seen = FastSet::default();
        for i in 0..30_000 {
            // The router's keys: layout paths that differ in a digit or two.
            assert!(seen.insert(hash_of(&format!("/ns-{}/agent/agent-{i}", i % 100))));
        }
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m: FastMap<Box<str>, usize> = FastMap::default();
        for i in 0..1000 {
            m.insert(format!("/p{i}").into(), i);
        }
        assert!((0..1000).all(|i| m.get(format!("/p{i}").as_str()) == Some(&i)));
        assert_eq!(m.get("/p1000"), None);
    }

    #[test]
    fn a_short_tail_counts() {
        // Keys that differ only in their last, partial word.
        let mut a = FxHasher::default();
        "/agent-1".hash(&mut a);
        let mut b = FxHasher::default();
        "/agent-12".hash(&mut b);
        assert_ne!(a.finish(), b.finish());
    }
}
