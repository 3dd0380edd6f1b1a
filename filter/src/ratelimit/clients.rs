//! Per-client buckets in a bounded set of pages, made when a configuration
//! is applied.
//!
//! A per-client limit keeps one bucket per client value (an API key, a
//! client address) without storing the value and without growing with the
//! number of clients: shared data has no delete, so every key ever written
//! stays for the life of the process. Clients are spread over a fixed number
//! of pages (keys), each with [`SLOTS_PER_PAGE`] slots; a slot holds a
//! client's 64-bit fingerprint (a keyed hash of its value) and its bucket.
//!
//! - A client finds its own slot by fingerprint: two clients share a bucket
//!   only when both their fingerprints collide (one in 2^64) or when more
//!   than [`SLOTS_PER_PAGE`] clients of one page are active at once (their
//!   buckets not yet refilled to full), and then only the newcomer shares:
//!   it draws from the least recently used slot.
//! - A slot whose bucket is full again is free: an idle client loses
//!   nothing, since a full bucket is exactly what a new one would be.
//! - Pages are written when a configuration is applied (before any request),
//!   so every later change is a compare-and-swap on a key that exists: no
//!   first-request race, exact from the first request (a lazily made key
//!   could be written twice by racing workers, the later write wiping what
//!   the earlier admitted).

use super::{
    debt_floor, outcome, refill, BucketSpec, Claim, Outcome, Secret, SharedStore, StoreError,
    MAX_CAS_RETRIES,
};

/// Slots per page: what one compare-and-swap carries (16 × 24 bytes).
pub const SLOTS_PER_PAGE: usize = 16;
/// Pages per per-client limit at most: 1,024 slots.
pub const MAX_PAGES: u32 = 64;
/// Pages per per-client limit at least, however many limits a plan has.
pub const MIN_PAGES: u32 = 4;
/// Pages a whole plan makes at most, over all its per-client limits: what
/// applying a configuration writes (6.5 MB of shared data at most).
pub const PAGE_BUDGET: u32 = 16_384;

/// Pages for each of `limits` per-client limits of a plan: [`MAX_PAGES`],
/// fewer when the plan has many, so that the whole stays within
/// [`PAGE_BUDGET`] (never fewer than [`MIN_PAGES`]).
pub fn pages_per_limit(limits: usize) -> u32 {
    let limits = u32::try_from(limits.max(1)).unwrap_or(u32::MAX);
    (PAGE_BUDGET / limits).clamp(MIN_PAGES, MAX_PAGES)
}

/// A client's place: the page (key) its fingerprint picks, and the
/// fingerprint it is known by there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSlot {
    pub page_key: String,
    pub fingerprint: u64,
}

/// The slot of `client_value` under a limit's key (`.../requests`,
/// `.../tokens`): only a keyed hash of the value (which may be an API key)
/// is ever stored.
pub fn client_slot(
    limit_key: &str,
    client_value: &[u8],
    secret: &Secret,
    pages: u32,
) -> ClientSlot {
    // 0 marks an empty slot.
    let fingerprint = secret.keyed_hash(client_value).max(1);
    let page = (fingerprint >> 32) % u64::from(pages.max(1));
    ClientSlot {
        page_key: format!("{limit_key}/p/{page}"),
        fingerprint,
    }
}

/// Writes the empty pages of a per-client limit that do not exist yet;
/// the number written.
pub fn create_client_pages(
    store: &dyn SharedStore,
    limit_key: &str,
    pages: u32,
    spec: BucketSpec,
) -> Result<u32, StoreError> {
    let mut created = 0;
    for page in 0..pages {
        let key = format!("{limit_key}/p/{page}");
        if store.get(&key)?.0.is_none() {
            store.set(&key, &Page::empty(spec).encode(), None)?;
            created += 1;
        }
    }
    Ok(created)
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Slot {
    /// The client's fingerprint; 0 for a slot never used.
    owner: u64,
    tokens: f64,
    /// When `tokens` was valid (nanoseconds).
    stamp: u64,
}

const SLOT_BYTES: usize = 24;
const PAGE_BYTES: usize = 16 + SLOTS_PER_PAGE * SLOT_BYTES;

#[derive(Debug, Clone, PartialEq)]
struct Page {
    /// The numbers the slots were written for.
    spec: BucketSpec,
    slots: [Slot; SLOTS_PER_PAGE],
}

impl Page {
    fn empty(spec: BucketSpec) -> Page {
        Page {
            spec,
            slots: [Slot::default(); SLOTS_PER_PAGE],
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PAGE_BYTES);
        out.extend_from_slice(&self.spec.capacity.to_le_bytes());
        out.extend_from_slice(&self.spec.rate_per_second.to_le_bytes());
        for slot in &self.slots {
            out.extend_from_slice(&slot.owner.to_le_bytes());
            out.extend_from_slice(&slot.tokens.to_le_bytes());
            out.extend_from_slice(&slot.stamp.to_le_bytes());
        }
        out
    }

    /// Anything but a page's bytes reads as `None` (and the page as empty).
    fn decode(value: &[u8]) -> Option<Page> {
        if value.len() != PAGE_BYTES {
            return None;
        }
        let mut words = value.chunks_exact(8).map(|w| <[u8; 8]>::try_from(w).ok());
        let mut next = || words.next().flatten();
        let spec = BucketSpec {
            capacity: f64::from_le_bytes(next()?),
            rate_per_second: f64::from_le_bytes(next()?),
        };
        let mut slots = [Slot::default(); SLOTS_PER_PAGE];
        for slot in &mut slots {
            let owner = u64::from_le_bytes(next()?);
            let tokens = f64::from_le_bytes(next()?);
            let stamp = u64::from_le_bytes(next()?);
            *slot = if tokens.is_finite() {
                Slot {
                    owner,
                    tokens,
                    stamp,
                }
            } else {
                Slot::default()
            };
        }
        Some(Page { spec, slots })
    }

    /// A page written for other numbers (the limit changed) keeps its
    /// clients' balances within the new capacity and debt floor, as a
    /// keyed bucket does.
    fn respec(&mut self, spec: BucketSpec) {
        if self.spec == spec {
            return;
        }
        for slot in &mut self.slots {
            slot.tokens = slot.tokens.clamp(debt_floor(spec), spec.capacity);
        }
        self.spec = spec;
    }

    fn find(&self, fingerprint: u64) -> Option<usize> {
        self.slots.iter().position(|s| s.owner == fingerprint)
    }

    /// The slot for a client without one: an empty one, else one whose
    /// bucket is full again (its client idle), else the least recently used
    /// (shared: more clients of this page are active than it has slots).
    /// The second value says whether the client takes it over.
    fn place(&self, now_nanos: u64) -> (usize, bool) {
        if let Some(i) = self.slots.iter().position(|s| s.owner == 0) {
            return (i, true);
        }
        let spec = self.spec;
        let idle = self
            .slots
            .iter()
            .position(|s| refill(s.tokens, s.stamp, spec, now_nanos).0 >= spec.capacity);
        if let Some(i) = idle {
            return (i, true);
        }
        let lru = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.stamp)
            .map_or(0, |(i, _)| i);
        (lru, false)
    }
}

/// [`super::update`] for a client's slot.
pub(super) fn update_slot(
    store: &dyn SharedStore,
    client: &ClientSlot,
    claim: Claim,
    spec: BucketSpec,
    now_nanos: u64,
    needed: f64,
    take: impl Fn(f64) -> Option<f64>,
) -> Result<Outcome, StoreError> {
    let mut conflicts = 0;
    loop {
        let (value, version) = store.get(&client.page_key)?;
        let mut page = value
            .as_deref()
            .and_then(Page::decode)
            .unwrap_or_else(|| Page::empty(spec));
        page.respec(spec);
        let (index, fresh) = match (page.find(client.fingerprint), claim) {
            (Some(i), _) => (i, false),
            (None, Claim::Yes) => {
                let (i, take_over) = page.place(now_nanos);
                (i, take_over)
            }
            // Nothing of this client's is left to settle.
            (None, Claim::No) => return Ok(outcome(spec, spec.capacity, needed, true, conflicts)),
        };
        let Some(slot) = page.slots.get_mut(index) else {
            return Err(StoreError::Unavailable);
        };
        let (tokens, stamp, stepped_back) = if fresh {
            (spec.capacity, now_nanos, false)
        } else {
            refill(slot.tokens, slot.stamp, spec, now_nanos)
        };
        let Some(left) = take(tokens) else {
            if stepped_back {
                // As for keyed buckets: keep the corrected time.
                slot.stamp = stamp;
                slot.tokens = tokens;
                let _ = store.set(&client.page_key, &page.encode(), version);
            }
            return Ok(outcome(spec, tokens, needed, false, conflicts));
        };
        if fresh {
            slot.owner = client.fingerprint;
        }
        slot.tokens = left;
        slot.stamp = stamp;
        match store.set(&client.page_key, &page.encode(), version) {
            Ok(()) => return Ok(outcome(spec, left, needed, true, conflicts)),
            Err(StoreError::CasMismatch) if conflicts < MAX_CAS_RETRIES => conflicts += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::Memory;
    use super::super::{acquire, debit, hold};
    use super::*;
    use std::collections::HashSet;

    const SEC: u64 = 1_000_000_000;
    const SPEC: BucketSpec = BucketSpec {
        capacity: 2.0,
        rate_per_second: 0.01,
    };
    const SECRET: Secret = Secret(*b"0123456789abcdef");

    fn slot(value: &str, pages: u32) -> ClientSlot {
        client_slot("e/requests", value.as_bytes(), &SECRET, pages)
    }

    fn take(store: &Memory, value: &str, now: u64) -> bool {
        acquire(store, &slot(value, 4), SPEC, 1.0, now)
            .unwrap()
            .allowed
    }

    #[test]
    fn pages_scale_down_with_many_limits_within_bounds() {
        assert_eq!(pages_per_limit(0), MAX_PAGES);
        assert_eq!(pages_per_limit(2), MAX_PAGES);
        assert_eq!(pages_per_limit(1_000), 16);
        assert_eq!(pages_per_limit(1_000_000), MIN_PAGES);
    }

    #[test]
    fn every_client_gets_its_own_bucket_exactly() {
        let store = Memory::default();
        create_client_pages(&store, "e/requests", 4, SPEC).unwrap();
        // 40 clients on 4 pages of 16 slots: each admits exactly its burst.
        for c in 0..40 {
            let value = format!("client-{c}");
            assert!(take(&store, &value, 0), "{value} first");
            assert!(take(&store, &value, 0), "{value} second");
            assert!(!take(&store, &value, 0), "{value} third");
        }
        assert_eq!(store.len(), 4, "no key beyond the pages made up front");
    }

    #[test]
    fn an_idle_clients_slot_is_reused_and_nothing_is_lost() {
        let store = Memory::default();
        create_client_pages(&store, "e/requests", 1, SPEC).unwrap();
        let one_page = |v: &str| client_slot("e/requests", v.as_bytes(), &SECRET, 1);
        // 16 clients fill the page; they drain their buckets.
        for c in 0..16 {
            let s = one_page(&format!("c{c}"));
            assert!(acquire(&store, &s, SPEC, 2.0, 0).unwrap().allowed);
        }
        // A 17th finds no free slot: it shares the least recently used one,
        // which is empty, so it is refused (the shared case).
        let newcomer = one_page("newcomer");
        assert!(!acquire(&store, &newcomer, SPEC, 1.0, SEC).unwrap().allowed);
        // Once a bucket is full again (200 s at 0.01/s), its slot is free:
        // the newcomer takes it over with a full bucket of its own.
        let later = 300 * SEC;
        assert!(
            acquire(&store, &newcomer, SPEC, 2.0, later)
                .unwrap()
                .allowed
        );
        assert!(
            !acquire(&store, &newcomer, SPEC, 1.0, later)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn holds_settle_on_the_clients_own_slot() {
        let store = Memory::default();
        let budget = BucketSpec {
            capacity: 100.0,
            rate_per_second: 0.0001,
        };
        create_client_pages(&store, "e/tokens", 4, budget).unwrap();
        let alice = client_slot("e/tokens", b"alice", &SECRET, 4);
        let bob = client_slot("e/tokens", b"bob", &SECRET, 4);
        assert!(hold(&store, &alice, budget, 80.0, 0).unwrap().allowed);
        debit(&store, &alice, budget, 150.0 - 80.0, 0).unwrap();
        assert!(
            !hold(&store, &alice, budget, 1.0, 0).unwrap().allowed,
            "alice is in debt"
        );
        assert_eq!(
            hold(&store, &bob, budget, 1.0, 0).unwrap().remaining,
            99,
            "bob is not"
        );
        // Settling for a client that has no slot claims nothing.
        let nobody = client_slot("e/tokens", b"nobody", &SECRET, 4);
        debit(&store, &nobody, budget, 5.0, 0).unwrap();
        let pages: usize = (0..4)
            .map(|p| {
                let (v, _) = store.get(&format!("e/tokens/p/{p}")).unwrap();
                Page::decode(&v.unwrap())
                    .unwrap()
                    .slots
                    .iter()
                    .filter(|s| s.owner != 0)
                    .count()
            })
            .sum();
        assert_eq!(pages, 2, "alice and bob only");
    }

    #[test]
    fn racing_workers_on_a_made_page_admit_exactly() {
        // Pages exist before any request: every write is a compare-and-swap,
        // so a conflict is retried on the fresh page and nothing is admitted
        // twice (the keyed-bucket race test of mod.rs, for a page).
        let store = Memory::default();
        create_client_pages(&store, "e/requests", 4, SPEC).unwrap();
        store.conflicts.set(5);
        let o = acquire(&store, &slot("alice", 4), SPEC, 1.0, 0).unwrap();
        assert_eq!((o.allowed, o.cas_retries), (true, 5));
        assert!(take(&store, "alice", 0));
        assert!(!take(&store, "alice", 0));
    }

    #[test]
    fn a_changed_limit_keeps_every_clients_balance() {
        let store = Memory::default();
        create_client_pages(&store, "e/requests", 4, SPEC).unwrap();
        assert!(take(&store, "alice", 0));
        assert!(take(&store, "alice", 0));
        let bigger = BucketSpec {
            capacity: 10.0,
            rate_per_second: 0.01,
        };
        assert!(
            !acquire(&store, &slot("alice", 4), bigger, 1.0, 0)
                .unwrap()
                .allowed
        );
        assert!(
            acquire(&store, &slot("bob", 4), bigger, 10.0, 0)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn fingerprints_are_keyed_spread_and_hide_the_value() {
        let a = slot("sk-secret-123", 64);
        assert_eq!(a, slot("sk-secret-123", 64));
        assert!(!a.page_key.contains("secret"));
        let pages: HashSet<String> = (0..10_000)
            .map(|i| slot(&format!("key-{i}"), 64).page_key)
            .collect();
        assert_eq!(pages.len(), 64, "keys spread over every page");
        let other = Secret(*b"fedcba9876543210");
        let moved = (0..64)
            .filter(|i| {
                let v = format!("client-{i}");
                client_slot("e", v.as_bytes(), &SECRET, 64)
                    != client_slot("e", v.as_bytes(), &other, 64)
            })
            .count();
        assert!(moved > 56, "another process places them elsewhere: {moved}");
    }

    #[test]
    fn garbage_in_a_page_reads_as_an_empty_page() {
        let store = Memory::default();
        store.set("e/requests/p/0", b"garbage", None).unwrap();
        let s = client_slot("e/requests", b"x", &SECRET, 1);
        assert!(acquire(&store, &s, SPEC, 2.0, 0).unwrap().allowed);
        let mut nan = Page::empty(SPEC);
        nan.slots[0] = Slot {
            owner: s.fingerprint,
            tokens: f64::NAN,
            stamp: 0,
        };
        store.set("e/requests/p/0", &nan.encode(), None).unwrap();
        assert!(acquire(&store, &s, SPEC, 2.0, 0).unwrap().allowed);
    }
}
