//! In-flight limits: how many requests of an entry (or of one client of
//! it) run at once, counted across every worker of one Envoy.
//!
//! A limit's count lives in Proxy-Wasm shared data as a small table, one
//! row per VM (each Envoy worker runs its own VM): the VM's id, how many
//! requests it holds, and when it last wrote its row. Each VM knows its own
//! holds exactly and only ever writes its own row (by compare-and-swap on
//! the whole table); the count is the sum of the rows written within the
//! last [`STALE_AFTER_MS`]. A live VM rewrites its rows at least every
//! [`REFRESH_AFTER_MS`] (on its tick), so a VM that stops — a trap, a
//! configuration that replaced it — stops counting once its rows are that
//! old, without anyone having to release what it held. Rows are pruned by
//! whoever writes the table next, so it holds at most the live VMs.
//!
//! Shared data has no delete: a key names an entry (and a client slot),
//! never the limit, so the key set stays bounded and a changed limit keeps
//! its count.

use crate::ratelimit::{Secret, SharedStore, StoreError, MAX_CAS_RETRIES};

/// Rows older than this are a stopped VM's: they count for nothing.
pub const STALE_AFTER_MS: u64 = 10_000;
/// A VM rewrites a row it holds requests in at least this often.
pub const REFRESH_AFTER_MS: u64 = 2_000;
/// Rows per table: far above the workers of one Envoy (with a draining
/// configuration's VMs beside them). A full table of live rows refuses a
/// new VM's first request rather than dropping another VM's count.
pub const MAX_ROWS: usize = 64;

const ROW_BYTES: usize = 20;

/// One VM's row: its id, the requests it holds, when it wrote the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub vm: u64,
    pub held: u32,
    pub written_ms: u64,
}

impl Row {
    fn fresh(&self, now_ms: u64) -> bool {
        // A row a little in the future (another worker's clock) is fresh.
        self.written_ms.saturating_add(STALE_AFTER_MS) > now_ms
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub admitted: bool,
    /// Requests in flight under the limit, this one included if admitted.
    pub in_flight: u64,
    /// Compare-and-swap conflicts with other workers, retried.
    pub cas_retries: u32,
}

/// Tables per per-client limit: clients are spread over this many keys by a
/// keyed hash (the process's secret), so that memory stays bounded
/// whatever the number of clients. Two clients whose hashes share a table
/// share its `max_in_flight` (one pair in 1,024).
pub const CLIENT_TABLES: u64 = 1024;

/// The table of one client of a per-client limit: `{limit_key}/c/{n}`.
/// Only a keyed hash of the client value (which may be an API key) picks
/// it; the value itself is never stored. Made by the first request that
/// needs it: two workers making it at once may each write it, one row lost
/// until its VM's next refresh (at most [`REFRESH_AFTER_MS`]).
pub fn client_table(limit_key: &str, client_value: &[u8], secret: &Secret) -> String {
    format!(
        "{limit_key}/c/{}",
        secret.keyed_hash(client_value) % CLIENT_TABLES
    )
}

/// Admits a request if the limit's fresh rows, with `mine` (what this VM
/// holds under `key` now, its own row aside), leave room under `max`; on
/// admission this VM's row becomes `mine + 1`.
pub fn admit(
    store: &dyn SharedStore,
    key: &str,
    max: u32,
    vm: u64,
    mine: u32,
    now_ms: u64,
) -> Result<Admission, StoreError> {
    let mut conflicts = 0;
    loop {
        let (value, version) = store.get(key)?;
        let others = live_rows(value.as_deref(), vm, now_ms);
        let in_flight = others.iter().map(|r| u64::from(r.held)).sum::<u64>() + u64::from(mine);
        if in_flight >= u64::from(max) || others.len() >= MAX_ROWS {
            return Ok(Admission {
                admitted: false,
                in_flight,
                cas_retries: conflicts,
            });
        }
        let mut rows = others;
        rows.push(Row {
            vm,
            held: mine.saturating_add(1),
            written_ms: now_ms,
        });
        match store.set(key, &encode(&rows), version) {
            Ok(()) => {
                return Ok(Admission {
                    admitted: true,
                    in_flight: in_flight + 1,
                    cas_retries: conflicts,
                })
            }
            Err(StoreError::CasMismatch) if conflicts < MAX_CAS_RETRIES => conflicts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Writes this VM's row as `held` (a release, or the tick's refresh); a
/// row of 0 is removed. Returns the conflicts retried.
pub fn publish(
    store: &dyn SharedStore,
    key: &str,
    vm: u64,
    held: u32,
    now_ms: u64,
) -> Result<u32, StoreError> {
    let mut conflicts = 0;
    loop {
        let (value, version) = store.get(key)?;
        let mut rows = live_rows(value.as_deref(), vm, now_ms);
        if held == 0 && value.is_none() {
            return Ok(conflicts);
        }
        if held > 0 {
            rows.push(Row {
                vm,
                held,
                written_ms: now_ms,
            });
        }
        match store.set(key, &encode(&rows), version) {
            Ok(()) => return Ok(conflicts),
            Err(StoreError::CasMismatch) if conflicts < MAX_CAS_RETRIES => conflicts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Requests in flight under `key`: the sum of its fresh rows.
pub fn in_flight(store: &dyn SharedStore, key: &str, now_ms: u64) -> Result<u64, StoreError> {
    let (value, _) = store.get(key)?;
    Ok(decode(value.as_deref().unwrap_or_default())
        .filter(|r| r.fresh(now_ms))
        .map(|r| u64::from(r.held))
        .sum())
}

/// The fresh rows of other VMs that hold something.
fn live_rows(value: Option<&[u8]>, vm: u64, now_ms: u64) -> Vec<Row> {
    decode(value.unwrap_or_default())
        .filter(|r| r.vm != vm && r.held > 0 && r.fresh(now_ms))
        .collect()
}

fn encode(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * ROW_BYTES);
    for r in rows {
        out.extend_from_slice(&r.vm.to_le_bytes());
        out.extend_from_slice(&r.held.to_le_bytes());
        out.extend_from_slice(&r.written_ms.to_le_bytes());
    }
    out
}

/// Whole rows only; a stray tail (no writer makes one) is ignored.
fn decode(value: &[u8]) -> impl Iterator<Item = Row> + '_ {
    value.chunks_exact(ROW_BYTES).filter_map(|row| {
        let (vm, rest) = row.split_first_chunk::<8>()?;
        let (held, rest) = rest.split_first_chunk::<4>()?;
        let written = rest.first_chunk::<8>()?;
        Some(Row {
            vm: u64::from_le_bytes(*vm),
            held: u32::from_le_bytes(*held),
            written_ms: u64::from_le_bytes(*written),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::tests::Memory;

    const A: u64 = 0xa;
    const B: u64 = 0xb;
    const T: u64 = 1_000_000;

    #[test]
    fn admits_up_to_max_across_vms() {
        let store = Memory::default();
        let (mut a, mut b) = (0, 0);
        let mut admitted = 0;
        for i in 0..10 {
            let (vm, mine) = if i % 2 == 0 { (A, &mut a) } else { (B, &mut b) };
            let o = admit(&store, "k", 4, vm, *mine, T).unwrap();
            if o.admitted {
                *mine += 1;
                admitted += 1;
            }
        }
        assert_eq!((admitted, a, b), (4, 2, 2));
        assert_eq!(in_flight(&store, "k", T).unwrap(), 4);
        // A release makes room for exactly one.
        a -= 1;
        publish(&store, "k", A, a, T).unwrap();
        assert!(admit(&store, "k", 4, B, b, T).unwrap().admitted);
        assert!(!admit(&store, "k", 4, A, a, T).unwrap().admitted);
        assert_eq!(in_flight(&store, "k", T).unwrap(), 4);
    }

    #[test]
    fn a_vm_that_stops_writing_stops_counting() {
        let store = Memory::default();
        for mine in 0..3 {
            assert!(admit(&store, "k", 3, A, mine, T).unwrap().admitted);
        }
        assert!(!admit(&store, "k", 3, B, 0, T).unwrap().admitted);
        // A stops (a trap): nobody releases its three. B is refused while
        // the row is fresh, admitted once it is stale.
        let stale = T + STALE_AFTER_MS;
        assert!(!admit(&store, "k", 3, B, 0, stale - 1).unwrap().admitted);
        let o = admit(&store, "k", 3, B, 0, stale).unwrap();
        assert_eq!((o.admitted, o.in_flight), (true, 1));
        // B's write pruned A's row.
        assert_eq!(store.get("k").unwrap().0.unwrap().len(), ROW_BYTES);
    }

    #[test]
    fn refreshing_keeps_a_row_alive() {
        let store = Memory::default();
        admit(&store, "k", 1, A, 0, T).unwrap();
        let mut now = T;
        for _ in 0..20 {
            now += REFRESH_AFTER_MS;
            publish(&store, "k", A, 1, now).unwrap();
            assert!(!admit(&store, "k", 1, B, 0, now).unwrap().admitted);
        }
    }

    #[test]
    fn a_pruned_row_comes_back_with_the_next_write() {
        let store = Memory::default();
        admit(&store, "k", 5, A, 0, T).unwrap();
        // A's tick was late: B pruned its row.
        admit(&store, "k", 5, B, 0, T + STALE_AFTER_MS).unwrap();
        assert_eq!(in_flight(&store, "k", T + STALE_AFTER_MS).unwrap(), 1);
        // A's own count is what it writes back.
        publish(&store, "k", A, 1, T + STALE_AFTER_MS).unwrap();
        assert_eq!(in_flight(&store, "k", T + STALE_AFTER_MS).unwrap(), 2);
    }

    #[test]
    fn releasing_to_zero_removes_the_row_and_never_goes_negative() {
        let store = Memory::default();
        admit(&store, "k", 5, A, 0, T).unwrap();
        publish(&store, "k", A, 0, T).unwrap();
        assert_eq!(store.get("k").unwrap().0, Some(Vec::new()));
        publish(&store, "k", A, 0, T).unwrap();
        assert_eq!(in_flight(&store, "k", T).unwrap(), 0);
        // Nothing is written for a key never held.
        publish(&store, "fresh", A, 0, T).unwrap();
        assert_eq!(store.get("fresh").unwrap().0, None);
    }

    #[test]
    fn conflicts_are_retried_and_bounded() {
        let store = Memory::default();
        store.conflicts.set(3);
        let o = admit(&store, "k", 5, A, 0, T).unwrap();
        assert_eq!((o.admitted, o.cas_retries), (true, 3));
        store.conflicts.set(u32::MAX);
        assert_eq!(admit(&store, "k", 5, A, 1, T), Err(StoreError::CasMismatch));
        assert_eq!(publish(&store, "k", A, 0, T), Err(StoreError::CasMismatch));
    }

    #[test]
    fn a_full_table_refuses_rather_than_forgets() {
        let store = Memory::default();
        for vm in 0..MAX_ROWS as u64 {
            assert!(admit(&store, "k", 1_000, vm, 0, T).unwrap().admitted);
        }
        let o = admit(&store, "k", 1_000, 9_999, 0, T).unwrap();
        assert!(!o.admitted);
        assert_eq!(o.in_flight, MAX_ROWS as u64);
    }

    #[test]
    fn client_tables_are_bounded_keyed_and_hide_the_value() {
        let secret = Secret(*b"0123456789abcdef");
        let key = client_table("p/ns/a/inflight", b"sk-secret-1", &secret);
        assert!(key.starts_with("p/ns/a/inflight/c/") && !key.contains("secret"));
        assert_eq!(
            key,
            client_table("p/ns/a/inflight", b"sk-secret-1", &secret)
        );
        let tables: std::collections::HashSet<String> = (0..20_000)
            .map(|i| client_table("k", format!("client-{i}").as_bytes(), &secret))
            .collect();
        assert!(tables.len() as u64 <= CLIENT_TABLES);
        assert!(
            tables.len() as u64 > CLIENT_TABLES * 9 / 10,
            "spread: {}",
            tables.len()
        );
    }

    #[test]
    fn garbage_reads_as_empty() {
        let store = Memory::default();
        store.set("k", b"not rows", None).unwrap();
        assert_eq!(in_flight(&store, "k", T).unwrap(), 0);
        assert!(admit(&store, "k", 1, A, 0, T).unwrap().admitted);
    }
}
