//! Token buckets in a process-wide store, so that every Envoy worker draws
//! from the same bucket: a limit of N means N whatever the worker count.
//!
//! The store is Proxy-Wasm shared data behind [`SharedStore`]; every update
//! is a compare-and-swap on the value's version, retried on conflict.

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
    /// Compare-and-swap conflicts retried.
    pub cas_retries: u32,
}

/// Conflicts come from the few other workers of one Envoy; this many in a row
/// means something is wrong, and the caller fails open.
pub const MAX_CAS_RETRIES: u32 = 32;

/// Takes `cost` tokens if the bucket holds them. A new bucket starts full.
pub fn acquire(
    store: &dyn SharedStore,
    key: &str,
    spec: BucketSpec,
    cost: f64,
    now_nanos: u64,
) -> Result<Outcome, StoreError> {
    update(store, key, spec, now_nanos, cost, |tokens| {
        (tokens >= cost).then_some(tokens - cost)
    })
}

/// Takes `cost` tokens whatever the balance: for LLM tokens, known only once
/// the response reports its usage. The balance may go negative, down to
/// `-capacity` (a debt of at most one full budget), so that one huge answer
/// blocks the entry for a while but never for ever.
pub fn debit(
    store: &dyn SharedStore,
    key: &str,
    spec: BucketSpec,
    cost: f64,
    now_nanos: u64,
) -> Result<Outcome, StoreError> {
    update(store, key, spec, now_nanos, 1.0, |tokens| {
        Some((tokens - cost).max(-spec.capacity))
    })
}

/// Whether the bucket holds at least one token, without taking it: token
/// budgets admit while they have one and are debited afterwards.
pub fn peek(
    store: &dyn SharedStore,
    key: &str,
    spec: BucketSpec,
    now_nanos: u64,
) -> Result<Outcome, StoreError> {
    let (value, _) = store.get(key)?;
    let tokens = refilled(value.as_deref(), spec, now_nanos).0;
    Ok(outcome(spec, tokens, 1.0, tokens >= 1.0, 0))
}

/// One read-modify-write of a bucket; `take` returns the new balance, or
/// `None` to refuse (nothing is written then). `needed` is what a refused
/// request waits for (`retry-after`).
fn update(
    store: &dyn SharedStore,
    key: &str,
    spec: BucketSpec,
    now_nanos: u64,
    needed: f64,
    take: impl Fn(f64) -> Option<f64>,
) -> Result<Outcome, StoreError> {
    for retries in 0..=MAX_CAS_RETRIES {
        let (value, version) = store.get(key)?;
        let Some(version) = version else {
            // Shared data has no create-if-absent: write a full bucket first
            // and take from it by compare-and-swap. Workers racing on a
            // bucket's very first request can both write "full"; at worst
            // one extra request per racing worker, once per bucket.
            store.set(key, &encode(spec.capacity, now_nanos), None)?;
            continue;
        };
        let (tokens, stamp) = refilled(value.as_deref(), spec, now_nanos);
        let Some(left) = take(tokens) else {
            return Ok(outcome(spec, tokens, needed, false, retries));
        };
        match store.set(key, &encode(left, stamp), Some(version)) {
            Ok(()) => return Ok(outcome(spec, left, needed, true, retries)),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// The balance now and the time it is valid at. A stored time later than
/// `now` (another worker's clock ran ahead, or the clock stepped back) adds
/// nothing and is kept: time in a bucket never goes backwards.
fn refilled(value: Option<&[u8]>, spec: BucketSpec, now_nanos: u64) -> (f64, u64) {
    let Some((tokens, last)) = value.and_then(decode) else {
        return (spec.capacity, now_nanos);
    };
    let elapsed = now_nanos.saturating_sub(last) as f64 / 1e9;
    let tokens = (tokens + elapsed * spec.rate_per_second).min(spec.capacity);
    (tokens, now_nanos.max(last))
}

fn outcome(spec: BucketSpec, tokens: f64, needed: f64, allowed: bool, cas_retries: u32) -> Outcome {
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

fn encode(tokens: f64, stamp: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (a, b) = out.split_at_mut(8);
    a.copy_from_slice(&tokens.to_le_bytes());
    b.copy_from_slice(&stamp.to_le_bytes());
    out
}

/// Anything but 16 bytes holding a finite balance reads as a fresh bucket.
fn decode(value: &[u8]) -> Option<(f64, u64)> {
    let (a, b) = value.split_at_checked(8)?;
    let tokens = f64::from_le_bytes(a.try_into().ok()?);
    let stamp = u64::from_le_bytes(b.try_into().ok()?);
    tokens.is_finite().then_some((tokens, stamp))
}

/// Bucket slots per entry for per-client limits. Memory stays bounded by
/// this whatever the number of distinct clients: a flood of random API keys
/// lands in the same slots. Two clients whose hashes share a slot share a
/// bucket; that is the price of the bound. Idle slots need no expiry: a slot
/// idle for `capacity / rate` seconds is simply full again.
pub const CLIENT_SLOTS: u64 = 1024;

/// The key of one client's bucket: `{entry_key}/c/{slot}`. Only a hash of the
/// client value (which may be an API key) decides the slot; the value itself
/// is never stored. FNV-1a has no random seed, so every worker VM agrees.
pub fn client_key(entry_key: &str, client_value: &str) -> String {
    let hash = client_value
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{entry_key}/c/{}", hash % CLIENT_SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::{HashMap, HashSet};

    /// In-memory shared data with versions, like Envoy's.
    #[derive(Default)]
    struct Memory {
        data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        /// Writes to fail with a conflict before succeeding.
        conflicts: Cell<u32>,
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
    fn a_full_bucket_admits_exactly_capacity_then_refills() {
        let store = Memory::default();
        let now = 1_000 * SEC;
        for i in 0..10 {
            let o = take(&store, now);
            assert!(o.allowed, "request {i}");
            assert_eq!(o.remaining, 9 - i);
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
    fn clock_going_backwards_adds_nothing_and_keeps_time() {
        let store = Memory::default();
        for _ in 0..10 {
            take(&store, 100 * SEC);
        }
        assert!(
            !take(&store, 50 * SEC).allowed,
            "earlier clock refills nothing"
        );
        // The stored time stayed at 100 s: 500 ms later (not 50 s) gives one.
        assert!(take(&store, 100 * SEC + SEC / 2).allowed);
        assert!(!take(&store, 100 * SEC + SEC / 2).allowed);
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
        store.set("k", &encode(f64::NAN, 0), None).unwrap();
        assert_eq!(take(&store, 0).remaining, 9);
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
    fn debit_goes_negative_down_to_minus_capacity_and_peek_sees_it() {
        let store = Memory::default();
        let budget = BucketSpec {
            capacity: 100.0,
            rate_per_second: 100.0 / 60.0,
        };
        assert!(peek(&store, "t", budget, 0).unwrap().allowed);
        let o = debit(&store, "t", budget, 130.0, 0).unwrap();
        assert_eq!((o.allowed, o.remaining), (true, 0));
        let o = peek(&store, "t", budget, 0).unwrap();
        assert!(!o.allowed);
        assert_eq!(
            o.retry_after_secs, 19,
            "30 tokens of debt, then one token, at 100/min"
        );
        debit(&store, "t", budget, 10_000.0, 0).unwrap();
        let (value, _) = store.get("t").unwrap();
        assert_eq!(decode(&value.unwrap()).unwrap().0, -100.0);
        assert!(peek(&store, "t", budget, 61 * SEC).unwrap().allowed);
    }

    #[test]
    fn client_keys_are_bounded_stable_and_hide_the_value() {
        let key = client_key("agentroute/p/ns/a/requests", "sk-secret-123");
        assert_eq!(
            key,
            client_key("agentroute/p/ns/a/requests", "sk-secret-123")
        );
        assert!(!key.contains("secret"));
        let slots: HashSet<String> = (0..100_000)
            .map(|i| client_key("e", &format!("key-{i}-{}", i * 31)))
            .collect();
        assert!(slots.len() as u64 <= CLIENT_SLOTS);
        assert!(
            slots.len() as u64 > CLIENT_SLOTS * 9 / 10,
            "keys spread over the slots"
        );
    }
}
