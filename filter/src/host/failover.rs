//! Failover in the host: the backends' ejection records read from and
//! written to shared data, the answer of a request of an entry with
//! failover judged (`crate::failover` says what counts), and the
//! ejected-backends gauge. Every host call goes through `abi`.

use proxy_wasm::types::MapType;

use super::active::Active;
use super::{abi, now_nanos, Stream};
use crate::failover::{self, Health, Outcome};
use crate::observe::Field;
use crate::ratelimit::{SharedStore, StoreError};
use crate::stats::{FailoverStat, Stat};

/// The ejection records of this plugin's shared data.
pub(super) struct HostHealth<'a> {
    pub prefix: &'a str,
}

impl Health for HostHealth<'_> {
    fn ejected_until(&self, backend: &str) -> Option<u64> {
        let key = failover::record_key(self.prefix, backend);
        let (value, _) = abi::get_shared_data(&key).ok()?;
        failover::decode(value.as_deref())
    }

    fn now_nanos(&self) -> u64 {
        now_nanos().unwrap_or(0)
    }
}

/// Shared data through `abi` (statuses as values, never a trap).
struct AbiStore;

impl SharedStore for AbiStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        abi::get_shared_data(key).map_err(|_| StoreError::Unavailable)
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        abi::set_shared_data(key, value, cas).map_err(|status| match status {
            abi::CAS_MISMATCH => StoreError::CasMismatch,
            _ => StoreError::Unavailable,
        })
    }
}

impl Stream {
    /// The answer of a request of an entry with failover, at its response
    /// headers (Envoy's own answers for connect failures, resets and
    /// timeouts pass here too, with their flags set): which attempt
    /// answered, and whether its backend failed. Healthy and not retried,
    /// that is one header read (two with slot headers: the attempt count).
    pub(super) fn observe_failover(&mut self, end_of_stream: bool) {
        let Some(tries) = self.failover.take() else {
            return;
        };
        let (Some(active), Some(entry)) = (self.active.clone(), self.entry) else {
            return;
        };
        let Some(e) = active.plan.entries.get(entry) else {
            return;
        };
        let Some(f) = &e.failover else {
            return;
        };
        let code = header_u64(MapType::HttpResponseHeaders, ":status").unwrap_or(0);
        let suspect = f.on.suspect(code);
        // Attempt n+1 went to slot n+1 when the route follows the slots
        // (the shipped one on Envoy >= 1.39). Which attempt answered: the
        // `x-envoy-attempt-count` Envoy adds to the answer
        // (`include_attempt_count_in_response` on the route's vhost), a
        // header read. Envoy's own answer after the last attempt failed may
        // lack it: then the `upstream.request_attempt_count` property (a
        // dearer read, on failures only). The request's copy of the header
        // is no help: the filter may see the first attempt's. A route that
        // retries on one cluster (Istio's default retries) answers from the
        // first backend whatever the count: the final attempt's cluster
        // tells them apart.
        let mut last = 0;
        if tries.slots > 0 {
            let attempts = header_u64(MapType::HttpResponseHeaders, failover::ATTEMPT_COUNT)
                .or_else(|| {
                    suspect
                        .then(|| abi::get_u64_property(&["upstream", "request_attempt_count"]))
                        .flatten()
                })
                .unwrap_or(1);
            if attempts > 1 {
                let n = usize::try_from(attempts - 1).unwrap_or(0).min(tries.slots);
                let cluster = abi::get_property(&["xds", "cluster_name"]).ok().flatten();
                if cluster.as_deref() == tries.backend(e, n).map(str::as_bytes) {
                    last = n;
                }
            }
        }
        // The clock only when something is ejected: a healthy answer
        // makes no host call for it.
        let now = || now_nanos().unwrap_or(0);
        // The attempts before the last failed (Envoy retried them); their
        // answers are gone, so `eject` applies.
        for n in 0..last {
            if let Some(b) = tries.backend(e, n) {
                eject(&active, entry, b, f.eject_ms, now());
            }
            if let Some(b) = tries.backend(e, n + 1) {
                bump(&active, entry, b, FailoverStat::Retries);
            }
        }
        if self.logs_fields() {
            let tried: Vec<&str> = (0..=last).filter_map(|n| tries.backend(e, n)).collect();
            self.set_fields(&[
                (Field::FailoverRetries, last.to_string()),
                (Field::BackendsTried, tried.join(",")),
            ]);
        }
        if suspect {
            let flags = abi::get_u64_property(&["response", "flags"]).unwrap_or(0);
            let outcome = failover::classify(code, flags);
            if f.on.counts(outcome) {
                let retry_after = match outcome {
                    Outcome::Status(_) => {
                        abi::get_header(MapType::HttpResponseHeaders, "retry-after")
                            .ok()
                            .flatten()
                    }
                    _ => None,
                };
                let now = now();
                let ms = failover::ejection_ms(f.eject_ms, retry_after.as_deref(), now / 1_000_000);
                if let Some(b) = tries.backend(e, last) {
                    eject(&active, entry, b, ms, now);
                }
            }
        } else if !end_of_stream && !self.upgrade {
            // The answer may still be cut after its headers (a stream
            // whose backend dies): `on_log` looks again if it never ended.
            // Not a WebSocket: its end is a closed connection anyway.
            self.failover_open = Some((tries, last));
        }
    }
}

impl Stream {
    /// The stream ended before its answer did: a reset or a timeout after
    /// the headers (nothing to retry then: the client has bytes) may still
    /// be a failure of the backend that answered.
    pub(super) fn failover_cut_short(&mut self) {
        let Some((tries, last)) = self.failover_open.take() else {
            return;
        };
        let (Some(active), Some(entry)) = (self.active.clone(), self.entry) else {
            return;
        };
        let Some(e) = active.plan.entries.get(entry) else {
            return;
        };
        let Some(f) = &e.failover else {
            return;
        };
        let flags = abi::get_u64_property(&["response", "flags"]).unwrap_or(0);
        // The status went out healthy: only the flags can tell a failure.
        let outcome = failover::classify(0, flags);
        log::debug!("failover: answer cut short, response flags {flags:#x}");
        if f.on.counts(outcome) {
            if let Some(b) = tries.backend(e, last) {
                eject(&active, entry, b, f.eject_ms, now_nanos().unwrap_or(0));
            }
        }
    }
}

/// A header's value as a number.
fn header_u64(map: MapType, name: &str) -> Option<u64> {
    let value = abi::get_header(map, name).ok()??;
    std::str::from_utf8(&value).ok()?.trim().parse().ok()
}

/// Skips `backend` for `ms` from `now`, on every worker.
fn eject(active: &Active, entry: usize, backend: &str, ms: u64, now: u64) {
    let key = failover::record_key(&active.key_prefix, backend);
    let until = now.saturating_add(ms.saturating_mul(1_000_000));
    match failover::eject(&AbiStore, &key, until) {
        Ok(true) => {
            log::info!("failover: backend {backend:?} ejected for {ms}ms");
            bump(active, entry, backend, FailoverStat::Ejections);
        }
        Ok(false) => {}
        Err(err) => log::warn!("failover: cannot eject backend {backend:?}: {err:?}"),
    }
}

fn bump(active: &Active, entry: usize, backend: &str, stat: FailoverStat) {
    let Some(e) = active.plan.entries.get(entry) else {
        return;
    };
    if let Some(label) = failover::candidates(e, true)
        .iter()
        .position(|b| *b == backend)
    {
        active.bump_failover(entry, label, stat);
    }
}

/// Records each entry's ejected-backends gauge from the shared records
/// (once a second: an ejection ends without anyone writing).
pub(super) fn tick(active: &Active) {
    let health = HostHealth {
        prefix: &active.key_prefix,
    };
    let now = health.now_nanos();
    for &entry in active.failing_over() {
        let Some(e) = active.plan.entries.get(entry) else {
            continue;
        };
        let ejected = failover::candidates(e, true)
            .iter()
            .filter(|b| health.ejected_until(b).is_some_and(|u| u > now))
            .count();
        active.set_gauge(entry, Stat::EjectedBackends, ejected as u64);
    }
}
