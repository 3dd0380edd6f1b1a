//! In-flight limits in the host: this VM's holds, mirrored into shared data
//! as its rows of each limit's table (`crate::concurrency`), taken at
//! admission, given back when the stream ends, rewritten on the tick so
//! that they stay fresh, and the `agentroute_in_flight` gauge recorded from
//! the shared counts.
//!
//! What a VM holds is VM-wide state (a thread-local: one VM is one
//! thread), not the root context's: while a configuration drains, streams
//! of the old one and the new one share the VM's rows, and either root
//! context's tick keeps them fresh.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use super::active::Active;
use super::limits::{client_value, HostStore};
use super::now_nanos;
use crate::concurrency::{self, REFRESH_AFTER_MS};
use crate::ratelimit;
use crate::reply::{self as replies, LocalReply};
use crate::stats::Stat;

/// A slot a stream holds until it ends.
#[derive(Debug)]
pub struct Slot {
    entry: usize,
    /// The limit's table: the entry's, or one client slot's.
    key: String,
    /// The entry's gauge table (see [`tick`]).
    gauge_key: String,
}

/// What this VM holds under one table key.
#[derive(Debug, Default)]
struct Held {
    count: u32,
    /// When this VM last wrote its row (ms).
    written_ms: u64,
    /// The row in shared data may not say `count` (a write failed).
    dirty: bool,
}

struct VmHolds {
    /// This VM's row id: random, so that a VM started after a trap never
    /// takes over the dead one's rows.
    id: u64,
    /// Holds by limit key.
    limits: RefCell<HashMap<String, Held>>,
    /// Holds by entry gauge key: published on the tick only.
    gauges: RefCell<HashMap<String, Held>>,
}

thread_local! {
    static VM: VmHolds = VmHolds {
        id: RandomState::new().hash_one(0u8),
        limits: RefCell::new(HashMap::new()),
        gauges: RefCell::new(HashMap::new()),
    };
}

/// Writes an empty table for each limited entry that has none, when a
/// configuration is applied: the first write of a key cannot be a
/// compare-and-swap (shared data has no create-if-absent), so two workers
/// taking an entry's first slots at once could each write it, one row
/// lost until its next refresh. Per-client tables are made by their first
/// request, with that caveat.
pub(super) fn create_tables(active: &Active) {
    let empty = [0u8; 20];
    for &entry in active.limited_entries() {
        let Some(e) = active.plan.entries.get(entry) else {
            continue;
        };
        let base = format!("{}/{}/inflight", active.key_prefix, e.id);
        let gauge = format!("{base}-gauge");
        let per_entry = e
            .concurrency
            .as_ref()
            .is_some_and(|c| c.per == crate::config::Per::Entry);
        let keys = [per_entry.then_some(base), Some(gauge)];
        for key in keys.into_iter().flatten() {
            let exists = ratelimit::SharedStore::get(&HostStore, &key)
                .is_ok_and(|(value, version)| value.is_some() || version.is_some());
            if !exists {
                if let Err(err) = ratelimit::SharedStore::set(&HostStore, &key, &empty, None) {
                    log::warn!("cannot create the in-flight table {key}: {err:?}");
                }
            }
        }
    }
}

fn now_ms() -> Option<u64> {
    now_nanos().map(|n| n / 1_000_000)
}

/// Takes a slot of the entry's in-flight limit: `Ok(None)` when the entry
/// has no limit (or the store failed: a broken limiter must not take the
/// agents down), `Err` the 429 when it is full.
pub(super) fn hold(
    active: &Active,
    entry: usize,
    pairs: &[(&str, &[u8])],
    claims: Option<&crate::identity::claims::Claims>,
) -> Result<Option<Slot>, LocalReply> {
    let Some(e) = active.plan.entries.get(entry) else {
        return Ok(None);
    };
    let Some(limit) = &e.concurrency else {
        return Ok(None);
    };
    let Some(now) = now_ms() else {
        return Ok(None);
    };
    let base = format!("{}/{}/inflight", active.key_prefix, e.id);
    let key = match (
        client_value(&active.plan, &limit.per, pairs, claims),
        active.secret(),
    ) {
        (Some(client), Some(secret)) => concurrency::client_table(&base, &client, &secret),
        _ => base.clone(),
    };
    VM.with(|vm| {
        let mine = vm.limits.borrow().get(&key).map_or(0, |h| h.count);
        match concurrency::admit(&HostStore, &key, limit.max_in_flight, vm.id, mine, now) {
            Ok(a) => {
                if a.cas_retries > 0 {
                    active.bump(entry, Stat::CasRetries, i64::from(a.cas_retries));
                }
                if !a.admitted {
                    active.bump(entry, Stat::ConcurrencyLimited, 1);
                    return Err(replies::concurrency_limited());
                }
                let mut limits = vm.limits.borrow_mut();
                let held = limits.entry(key.clone()).or_default();
                held.count += 1;
                held.written_ms = now;
                held.dirty = false;
                let gauge_key = format!("{base}-gauge");
                let mut gauges = vm.gauges.borrow_mut();
                let gauge = gauges.entry(gauge_key.clone()).or_default();
                gauge.count += 1;
                gauge.dirty = true;
                Ok(Some(Slot {
                    entry,
                    key,
                    gauge_key,
                }))
            }
            Err(err) => {
                log::warn!("in-flight limit unavailable, admitting: {err:?}");
                Ok(None)
            }
        }
    })
}

/// Gives a slot back (the stream ended, or another limit refused it).
pub(super) fn release(active: Option<&Active>, slot: Slot) {
    let now = now_ms().unwrap_or(0);
    VM.with(|vm| {
        let count = {
            let mut limits = vm.limits.borrow_mut();
            let Some(held) = limits.get_mut(&slot.key) else {
                return;
            };
            held.count = held.count.saturating_sub(1);
            held.count
        };
        let written = concurrency::publish(&HostStore, &slot.key, vm.id, count, now);
        {
            let mut limits = vm.limits.borrow_mut();
            match (&written, limits.get_mut(&slot.key)) {
                (Ok(_), Some(held)) if held.count == 0 => {
                    limits.remove(&slot.key);
                }
                (Ok(_), Some(held)) => {
                    held.written_ms = now;
                    held.dirty = false;
                }
                // The tick writes it again.
                (Err(_), Some(held)) => held.dirty = true,
                (_, None) => {}
            }
        }
        match written {
            Ok(retries) if retries > 0 => {
                if let Some(active) = active {
                    active.bump(slot.entry, Stat::CasRetries, i64::from(retries));
                }
            }
            Ok(_) => {}
            Err(err) => log::warn!("cannot release an in-flight slot now (the tick will): {err:?}"),
        }
        if let Some(g) = vm.gauges.borrow_mut().get_mut(&slot.gauge_key) {
            g.count = g.count.saturating_sub(1);
            g.dirty = true;
        }
    });
}

/// The tick: rows this VM holds are rewritten before they could look
/// stale, rows whose write failed are written again, this VM's share of
/// each entry's gauge table is published, and the gauges of the plan's
/// limited entries are recorded from the shared counts.
pub(super) fn tick(active: &Active) {
    let Some(now) = now_ms() else {
        return;
    };
    VM.with(|vm| {
        refresh(vm, &vm.limits, now, false);
        refresh(vm, &vm.gauges, now, true);
    });
    record_gauges(active, now);
}

fn refresh(vm: &VmHolds, table: &RefCell<HashMap<String, Held>>, now: u64, gauges: bool) {
    let due: Vec<(String, u32)> = table
        .borrow()
        .iter()
        .filter(|(_, h)| {
            h.dirty || (h.count > 0 && now.saturating_sub(h.written_ms) >= REFRESH_AFTER_MS)
        })
        .map(|(k, h)| (k.clone(), h.count))
        .collect();
    for (key, count) in due {
        let result = concurrency::publish(&HostStore, &key, vm.id, count, now);
        let mut table = table.borrow_mut();
        let Some(held) = table.get_mut(&key) else {
            continue;
        };
        match result {
            // A release in between made it dirty again; the next tick
            // writes that.
            Ok(_) if held.count == count => {
                held.written_ms = now;
                held.dirty = false;
                if count == 0 {
                    table.remove(&key);
                }
            }
            Ok(_) => {}
            Err(err) => {
                held.dirty = true;
                log::warn!(
                    "cannot refresh an in-flight {}: {err:?}",
                    if gauges { "gauge" } else { "row" }
                );
            }
        }
    }
}

/// How many limited entries' gauges one tick reads at most: a plan with
/// more has them recorded in turn.
const GAUGES_PER_TICK: usize = 512;

/// Records `agentroute_in_flight` of limited entries from their gauge
/// tables: every VM records the same shared count, so the gauge is the
/// whole process's, and a stopped VM's share leaves it once stale.
fn record_gauges(active: &Active, now: u64) {
    let limited = active.limited_entries();
    if limited.is_empty() {
        return;
    }
    let start = active.next_gauge(limited.len(), GAUGES_PER_TICK);
    for &entry in limited
        .iter()
        .cycle()
        .skip(start)
        .take(limited.len().min(GAUGES_PER_TICK))
    {
        let Some(e) = active.plan.entries.get(entry) else {
            continue;
        };
        let key = format!("{}/{}/inflight-gauge", active.key_prefix, e.id);
        if let Ok(count) = concurrency::in_flight(&HostStore, &key, now) {
            active.set_gauge(entry, Stat::InFlight, count);
        }
    }
}
