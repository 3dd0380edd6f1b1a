//! Token buckets in a process-wide store, so that every Envoy worker draws
//! from the same bucket: a limit of N means N whatever the worker count.
//!
//! The store is Proxy-Wasm shared data behind [`SharedStore`]; every update
//! is a compare-and-swap on the value's version, retried on conflict.
//! Shared data has no delete, so the key set must stay bounded for the
//! life of the process: a key names an entry (and a client slot), never a
//! limit's numbers. The numbers live in the value, and a bucket whose
//! numbers changed is reset in place.

mod clients;

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

pub use clients::{
    client_slot, create_client_pages, pages_per_limit, ClientSlot, MAX_PAGES, PAGE_BUDGET,
    SLOTS_PER_PAGE,
};

/// Process-wide key/value store with versions (Proxy-Wasm shared data).
pub trait SharedStore {
    /// Current value and its version; `Ok((None, None))` for a key never set.
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Writes `value` if the stored version still equals `cas` (`None`:
    /// unconditionally).
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Another worker wrote in between.
    CasMismatch,
    Unavailable,
}

/// Capacity and continuous refill rate (which may be below 1 per second).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub rate_per_second: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Whole tokens left (`x-ratelimit-remaining`).
    pub remaining: u64,
    /// Seconds until a refused request could pass (`retry-after`): at least 1
    /// when refused, 0 when allowed.
    pub retry_after_secs: u64,
    /// Seconds until the bucket is full again (`x-ratelimit-reset`).
    pub reset_secs: u64,
    /// Compare-and-swap conflicts with other workers, retried.
    pub cas_retries: u32,
}

/// Conflicts come from the few other workers of one Envoy; this many in a row
/// means something is wrong, and the caller fails open.
pub const MAX_CAS_RETRIES: u32 = 32;

/// How far a bucket's stored time may be ahead of the clock before it is
/// taken as a clock stepped back (NTP) rather than a worker a little ahead:
/// then the bucket counts as updated now, instead of refilling nothing
/// until the clock catches up.
pub const CLOCK_TOLERANCE_NANOS: u64 = 1_000_000_000;

/// Where a bucket lives: under a key of its own (an entry's buckets), or in
/// a slot of a page of per-client buckets.
#[derive(Debug, Clone, Copy)]
pub enum Bucket<'a> {
    Key(&'a str),
    Client(&'a ClientSlot),
}

impl<'a> From<&'a str> for Bucket<'a> {
    fn from(key: &'a str) -> Self {
        Bucket::Key(key)
    }
}

impl<'a> From<&'a String> for Bucket<'a> {
    fn from(key: &'a String) -> Self {
        Bucket::Key(key)
    }
}

impl<'a> From<&'a ClientSlot> for Bucket<'a> {
    fn from(slot: &'a ClientSlot) -> Self {
        Bucket::Client(slot)
    }
}

/// Takes `cost` tokens if the bucket holds them. A new bucket starts full.
pub fn acquire<'a>(
    store: &dyn SharedStore,
    bucket: impl Into<Bucket<'a>>,
    spec: BucketSpec,
    cost: f64,
    now_nanos: u64,
) -> Result<Outcome, StoreError> {
    update(
        store,
        bucket.into(),
        Claim::Yes,
        spec,
        now_nanos,
        cost,
        |tokens| (tokens >= cost).then_some(tokens - cost),
    )
}

/// Writes a full bucket under `key` if there is none; `Ok(true)` if it did.
/// A bucket that exists (possibly for other numbers) is left as it is.
pub fn create_full(
    store: &dyn SharedStore,
    key: &str,
    spec: BucketSpec,
    now_nanos: u64,
) -> Result<bool, StoreError> {
    if store.get(key)?.0.is_some() {
        return Ok(false);
    }
    store.set(key, &encode(spec.capacity, now_nanos, spec), None)?;
    Ok(true)
}

/// How deep a balance may go into debt, in capacities: what requests used
/// beyond their holds is kept as real debt (the entry is refused until it
/// is refilled), but never more than this many budgets, so that one absurd
/// answer blocks an entry for a while (ten minutes of a per-minute budget)
/// and never for ever.
pub const MAX_DEBT_CAPACITIES: f64 = 10.0;

pub(crate) fn debt_floor(spec: BucketSpec) -> f64 {
    -MAX_DEBT_CAPACITIES * spec.capacity
}

/// Admits while the bucket holds at least one token and takes `amount` at
/// once, like a hold on a card: the balance may go below zero. LLM token
/// budgets hold an estimate at admission and settle with [`debit`] once the
/// answer reports its usage, so concurrent requests see each other's holds.
pub fn hold<'a>(
    store: &dyn SharedStore,
    bucket: impl Into<Bucket<'a>>,
    spec: BucketSpec,
    amount: f64,
    now_nanos: u64,
) -> Result<Outcome, StoreError> {
    update(
        store,
        bucket.into(),
        Claim::Yes,
        spec,
        now_nanos,
        1.0,
        |tokens| (tokens >= 1.0).then(|| (tokens - amount).max(debt_floor(spec))),
    )
}

/// Takes `cost` tokens whatever the balance (a negative cost gives tokens
/// back, up to the capacity). The balance may go negative, down to
/// [`MAX_DEBT_CAPACITIES`] budgets of debt. A client slot is never claimed
/// for this: a client whose slot went to another (it was idle, so full)
/// has nothing left to settle.
pub fn debit<'a>(
    store: &dyn SharedStore,
    bucket: impl Into<Bucket<'a>>,
    spec: BucketSpec,
    cost: f64,
    now_nanos: u64,
) -> Result<Outcome, StoreError> {
    update(
        store,
        bucket.into(),
        Claim::No,
        spec,
        now_nanos,
        1.0,
        |tokens| Some((tokens - cost).clamp(debt_floor(spec), spec.capacity)),
    )
}

/// Whether an update may give a client a slot of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Yes,
    No,
}

/// One read-modify-write of a bucket; `take` returns the new balance, or
/// `None` to refuse (nothing is written then). `needed` is what a refused
/// request waits for (`retry-after`).
fn update(
    store: &dyn SharedStore,
    bucket: Bucket<'_>,
    claim: Claim,
    spec: BucketSpec,
    now_nanos: u64,
    needed: f64,
    take: impl Fn(f64) -> Option<f64>,
) -> Result<Outcome, StoreError> {
    let key = match bucket {
        Bucket::Key(key) => key,
        Bucket::Client(slot) => {
            return clients::update_slot(store, slot, claim, spec, now_nanos, needed, take)
        }
    };
    let mut conflicts = 0;
    loop {
        let (value, version) = store.get(key)?;
        let (tokens, stamp, stepped_back) = refilled(value.as_deref(), spec, now_nanos);
        let Some(left) = take(tokens) else {
            if stepped_back {
                // Keep the corrected time even when refusing, or the next
                // request would find the same stale future time. A conflict
                // means another worker wrote a fresher one.
                let _ = store.set(key, &encode(tokens, stamp, spec), version);
            }
            return Ok(outcome(spec, tokens, needed, false, conflicts));
        };
        // A key never written has no version to compare: the first write is
        // unconditional. Workers racing on a bucket's very first request can
        // each write it, the later wiping what the earlier admitted: up to a
        // burst more per racing worker, once per bucket (shared data has no
        // create-if-absent; `create_full` avoids it where keys are known).
        match store.set(key, &encode(left, stamp, spec), version) {
            Ok(()) => return Ok(outcome(spec, left, needed, true, conflicts)),
            Err(StoreError::CasMismatch) if conflicts < MAX_CAS_RETRIES => conflicts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// The balance now and the time it is valid at. A bucket never written is
/// full. One written for other numbers (the limit changed) keeps its
/// balance, within the new capacity and debt floor: while an old and a new
/// configuration both serve (a listener draining), each writing its own
/// numbers, neither may hand out a fresh bucket. A stored time a little
/// ahead of `now` (another worker's clock) adds nothing and is kept; one far
/// ahead (the clock stepped back) is replaced by `now`, which the third
/// value says.
fn refilled(value: Option<&[u8]>, spec: BucketSpec, now_nanos: u64) -> (f64, u64, bool) {
    let Some((tokens, last, stored_spec)) = value.and_then(decode) else {
        return (spec.capacity, now_nanos, false);
    };
    let tokens = if stored_spec == spec {
        tokens
    } else {
        tokens.clamp(debt_floor(spec), spec.capacity)
    };
    refill(tokens, last, spec, now_nanos)
}

/// A balance written at `last`, refilled to `now_nanos`: the balance, the
/// time it is valid at, and whether the clock stepped back (see
/// [`refilled`]).
pub(crate) fn refill(tokens: f64, last: u64, spec: BucketSpec, now_nanos: u64) -> (f64, u64, bool) {
    if last > now_nanos {
        return if last - now_nanos > CLOCK_TOLERANCE_NANOS {
            (tokens.min(spec.capacity), now_nanos, true)
        } else {
            (tokens.min(spec.capacity), last, false)
        };
    }
    let elapsed = (now_nanos - last) as f64 / 1e9;
    let tokens = (tokens + elapsed * spec.rate_per_second).min(spec.capacity);
    (tokens, now_nanos, false)
}

pub(crate) fn outcome(
    spec: BucketSpec,
    tokens: f64,
    needed: f64,
    allowed: bool,
    cas_retries: u32,
) -> Outcome {
    let secs_until = |target: f64| {
        let missing = (target - tokens).max(0.0);
        (missing / spec.rate_per_second).ceil().min(u64::MAX as f64) as u64
    };
    Outcome {
        allowed,
        remaining: tokens.max(0.0).floor() as u64,
        retry_after_secs: if allowed {
            0
        } else {
            secs_until(needed).max(1)
        },
        reset_secs: secs_until(spec.capacity),
        cas_retries,
    }
}

/// Balance, time, and the numbers the bucket was made for: 32 bytes.
fn encode(tokens: f64, stamp: u64, spec: BucketSpec) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (slot, bytes) in out.chunks_exact_mut(8).zip([
        tokens.to_le_bytes(),
        stamp.to_le_bytes(),
        spec.capacity.to_le_bytes(),
        spec.rate_per_second.to_le_bytes(),
    ]) {
        slot.copy_from_slice(&bytes);
    }
    out
}

/// Anything but 32 bytes holding a finite balance reads as a fresh bucket.
fn decode(value: &[u8]) -> Option<(f64, u64, BucketSpec)> {
    if value.len() != 32 {
        return None;
    }
    let mut words = value.chunks_exact(8).map(|w| <[u8; 8]>::try_from(w).ok());
    let tokens = f64::from_le_bytes(words.next()??);
    let stamp = u64::from_le_bytes(words.next()??);
    let capacity = f64::from_le_bytes(words.next()??);
    let rate_per_second = f64::from_le_bytes(words.next()??);
    tokens.is_finite().then_some((
        tokens,
        stamp,
        BucketSpec {
            capacity,
            rate_per_second,
        },
    ))
}

/// The key of a per-client hash. Each Envoy process makes its own at random
/// (shared by its workers through shared data), so nobody outside can work
/// out which client values land in a victim's page, or forge a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret(pub [u8; 16]);

impl Secret {
    pub fn keyed_hash(&self, value: &[u8]) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.0);
        hasher.write(value);
        hasher.finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// In-memory shared data with versions, like Envoy's.
    #[derive(Default)]
    pub(crate) struct Memory {
        data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Writes to fail with a conflict before succeeding.
        pub(crate) conflicts: Cell<u32>,
    }

    impl Memory {
        /// Keys written.
        pub(crate) fn len(&self) -> usize {
            self.data.borrow().len()
        }
    }

    impl SharedStore for Memory {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Ok(match self.data.borrow().get(key) {
                Some((v, version)) => (Some(v.clone()), Some(*version)),
                None => (None, None),
            })
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if self.conflicts.get() > 0 {
                self.conflicts.set(self.conflicts.get() - 1);
                return Err(StoreError::CasMismatch);
            }
            let mut data = self.data.borrow_mut();
            let current = data.get(key).map(|(_, v)| *v);
            if cas.is_some() && cas != current {
                return Err(StoreError::CasMismatch);
            }
            data.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
            Ok(())
        }
    }

    const SEC: u64 = 1_000_000_000;
    const SPEC: BucketSpec = BucketSpec {
        capacity: 10.0,
        rate_per_second: 2.0,
    };

    fn take(store: &Memory, now: u64) -> Outcome {
        acquire(store, "k", SPEC, 1.0, now).unwrap()
    }

    #[test]
    fn a_created_bucket_is_full_and_never_recreated() {
        let store = Memory::default();
        assert_eq!(create_full(&store, "k", SPEC, 0), Ok(true));
        assert!(acquire(&store, "k", SPEC, 1.0, 0).unwrap().allowed);
        // A second worker's configure leaves the drawn bucket alone.
        assert_eq!(create_full(&store, "k", SPEC, 0), Ok(false));
        assert_eq!(
            acquire(&store, "k", SPEC, 1.0, 0).unwrap().remaining,
            SPEC.capacity as u64 - 2
        );
    }

    #[test]
    fn a_full_bucket_admits_exactly_capacity_then_refills() {
        let store = Memory::default();
        let now = 1_000 * SEC;
        for i in 0..10 {
            let o = take(&store, now);
            assert!(o.allowed, "request {i}");
            assert_eq!(o.remaining, 9 - i);
            assert_eq!(o.cas_retries, 0, "creating a bucket is no conflict");
        }
        let refused = take(&store, now);
        assert!(!refused.allowed);
        assert_eq!(
            (
                refused.remaining,
                refused.retry_after_secs,
                refused.reset_secs
            ),
            (0, 1, 5)
        );
        // 2/s: one token after 500 ms, exactly one.
        assert!(take(&store, now + SEC / 2).allowed);
        assert!(!take(&store, now + SEC / 2).allowed);
    }

    #[test]
    fn fractional_rates() {
        let store = Memory::default();
        let spec = BucketSpec {
            capacity: 1.0,
            rate_per_second: 0.5,
        };
        assert!(acquire(&store, "k", spec, 1.0, 0).unwrap().allowed);
        let o = acquire(&store, "k", spec, 1.0, SEC).unwrap();
        assert_eq!((o.allowed, o.retry_after_secs), (false, 1));
        let o = acquire(&store, "k", spec, 1.0, SEC / 10).unwrap();
        assert_eq!((o.allowed, o.retry_after_secs), (false, 2));
        assert!(acquire(&store, "k", spec, 1.0, 2 * SEC).unwrap().allowed);
    }

    #[test]
    fn a_clock_a_little_behind_adds_nothing_and_keeps_time() {
        let store = Memory::default();
        for _ in 0..10 {
            take(&store, 100 * SEC);
        }
        let behind = 100 * SEC - SEC / 2;
        assert!(
            !take(&store, behind).allowed,
            "earlier clock refills nothing"
        );
        // The stored time stayed at 100 s: 500 ms later gives exactly one.
        assert!(take(&store, 100 * SEC + SEC / 2).allowed);
        assert!(!take(&store, 100 * SEC + SEC / 2).allowed);
    }

    #[test]
    fn a_clock_stepped_back_does_not_freeze_the_bucket() {
        let store = Memory::default();
        for _ in 0..10 {
            take(&store, 100 * SEC);
        }
        // NTP steps the clock back 50 s: refills resume from the new time,
        // not 50 s later.
        assert!(!take(&store, 50 * SEC).allowed);
        let o = take(&store, 50 * SEC + SEC / 2);
        assert!(o.allowed, "one token 500 ms after the step: {o:?}");
    }

    #[test]
    fn long_idle_periods_cap_at_capacity() {
        let store = Memory::default();
        for _ in 0..10 {
            take(&store, 0);
        }
        let o = take(&store, u64::MAX / 2);
        assert!(o.allowed);
        assert_eq!(o.remaining, 9);
        assert_eq!(take(&store, u64::MAX / 2).remaining, 8);
        assert_eq!(take(&store, u64::MAX).remaining, 9, "refilled, capped");
    }

    #[test]
    fn bad_stored_bytes_read_as_a_fresh_bucket() {
        let store = Memory::default();
        store.set("k", b"garbage", None).unwrap();
        assert_eq!(take(&store, 0).remaining, 9);
        store.set("k", &encode(f64::NAN, 0, SPEC), None).unwrap();
        assert_eq!(take(&store, 0).remaining, 9);
    }

    #[test]
    fn a_changed_limit_keeps_the_balance_under_the_same_key() {
        let store = Memory::default();
        for _ in 0..10 {
            take(&store, 0);
        }
        assert!(!take(&store, 0).allowed);
        let bigger = BucketSpec {
            capacity: 20.0,
            rate_per_second: 2.0,
        };
        // Empty stays empty: a new limit is no fresh bucket.
        assert!(!acquire(&store, "k", bigger, 1.0, 0).unwrap().allowed);
        assert_eq!(store.data.borrow().len(), 1, "no new key");
        // It refills at the new numbers: 1 s is 2 tokens.
        let o = acquire(&store, "k", bigger, 1.0, SEC).unwrap();
        assert_eq!((o.allowed, o.remaining), (true, 1));
        // A smaller capacity caps what is there.
        let store = Memory::default();
        take(&store, 0);
        let smaller = BucketSpec {
            capacity: 3.0,
            rate_per_second: 2.0,
        };
        assert_eq!(acquire(&store, "k", smaller, 1.0, 0).unwrap().remaining, 2);
    }

    /// During a listener drain two configurations serve at once, each with
    /// its own numbers for the same bucket: taking turns must not refill it.
    #[test]
    fn two_configurations_taking_turns_never_refill_the_bucket() {
        let store = Memory::default();
        let other = BucketSpec {
            capacity: 12.0,
            rate_per_second: 2.0,
        };
        let mut admitted = 0;
        for i in 0..100 {
            let spec = if i % 2 == 0 { SPEC } else { other };
            admitted += u32::from(acquire(&store, "k", spec, 1.0, 0).unwrap().allowed);
        }
        assert_eq!(admitted, 10, "the first configuration's burst, once");
    }

    #[test]
    fn conflicts_are_retried_and_bounded() {
        let store = Memory::default();
        take(&store, 0);
        store.conflicts.set(3);
        let o = take(&store, 0);
        assert_eq!((o.allowed, o.cas_retries), (true, 3));
        store.conflicts.set(u32::MAX);
        assert_eq!(
            acquire(&store, "k", SPEC, 1.0, 0),
            Err(StoreError::CasMismatch)
        );
    }

    /// Two workers read the same version; the other one writes first, so our
    /// write conflicts and retries on the new value. Nothing is admitted twice.
    #[test]
    fn interleaved_workers_admit_capacity_in_total() {
        struct Racing<'a> {
            inner: &'a Memory,
            other_goes_first: Cell<bool>,
            other_admitted: &'a Cell<u32>,
        }
        impl SharedStore for Racing<'_> {
            fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
                self.inner.get(key)
            }
            fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
                if self.other_goes_first.replace(false)
                    && acquire(self.inner, key, SPEC, 1.0, 0)?.allowed
                {
                    self.other_admitted.set(self.other_admitted.get() + 1);
                }
                self.inner.set(key, value, cas)
            }
        }
        let store = Memory::default();
        assert!(take(&store, 0).allowed, "the bucket exists");
        let other_admitted = Cell::new(0);
        let (mut admitted, mut retries) = (1, 0);
        for _ in 0..30 {
            let racing = Racing {
                inner: &store,
                other_goes_first: Cell::new(true),
                other_admitted: &other_admitted,
            };
            let o = acquire(&racing, "k", SPEC, 1.0, 0).unwrap();
            admitted += u32::from(o.allowed);
            retries += o.cas_retries;
        }
        assert_eq!(admitted + other_admitted.get(), 10);
        assert!(retries >= 5, "conflicts were retried: {retries}");
    }

    #[test]
    fn holds_admit_while_positive_and_settle_later() {
        let store = Memory::default();
        let budget = BucketSpec {
            capacity: 100.0,
            rate_per_second: 100.0 / 60.0,
        };
        // Three concurrent requests, each holding 40: the third finds the
        // budget already spoken for.
        assert!(hold(&store, "t", budget, 40.0, 0).unwrap().allowed);
        assert!(hold(&store, "t", budget, 40.0, 0).unwrap().allowed);
        assert!(
            hold(&store, "t", budget, 40.0, 0).unwrap().allowed,
            "20 left"
        );
        let o = hold(&store, "t", budget, 40.0, 0).unwrap();
        assert!(!o.allowed, "-20 left: refused");
        assert_eq!(o.retry_after_secs, 13, "21 tokens to refill at 100/min");
        // The answers used 10 each: 30 each comes back, capped at capacity.
        for _ in 0..3 {
            debit(&store, "t", budget, -30.0, 0).unwrap();
        }
        assert_eq!(hold(&store, "t", budget, 0.0, 0).unwrap().remaining, 70);
        // A large answer is real debt: refused until it is refilled.
        debit(&store, "t", budget, 370.0, 0).unwrap();
        let (value, _) = store.get("t").unwrap();
        assert_eq!(decode(&value.unwrap()).unwrap().0, -300.0);
        assert!(!hold(&store, "t", budget, 1.0, 180 * SEC).unwrap().allowed);
        assert!(hold(&store, "t", budget, 1.0, 181 * SEC).unwrap().allowed);
        // An absurd one: at most ten budgets of debt.
        debit(&store, "t", budget, 1e12, 181 * SEC).unwrap();
        let (value, _) = store.get("t").unwrap();
        assert_eq!(decode(&value.unwrap()).unwrap().0, -1000.0);
    }
}
