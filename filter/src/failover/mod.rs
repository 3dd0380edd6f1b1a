//! Failover across backends, as pure logic: what counts as a failure of a
//! backend, how long a failed backend is skipped (`eject`, or a longer
//! `retry-after`), the ejection records every worker reads in shared data,
//! and the order in which a request tries an entry's backends. The host
//! glue only reads and writes what these functions say; [`peers`] is how
//! every worker knows the records without reading shared data per request.

pub mod peers;

use crate::ratelimit::{SharedStore, StoreError};

/// What a request may ask about the backends' health: their ejection
/// records (the VM's copy, [`peers::Ejections`]: no host call) and the time.
pub trait Health {
    /// Until when (Unix nanoseconds) `backend` is skipped, if a record
    /// says so (expired records included).
    fn ejected_until(&self, backend: &str) -> Option<u64>;
    fn now_nanos(&self) -> u64;
}

impl std::fmt::Debug for dyn Health + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Health")
    }
}

/// Every backend healthy (no host, `agentroute check`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllHealthy;

impl Health for AllHealthy {
    fn ejected_until(&self, _: &str) -> Option<u64> {
        None
    }

    fn now_nanos(&self) -> u64 {
        0
    }
}

/// The header Envoy's router numbers attempts in (the route's vhost has
/// `include_request_attempt_count`): a client copy would steer the first
/// attempt to a later slot.
pub const ATTEMPT_COUNT: &str = "x-envoy-attempt-count";

/// The slot header of attempt `n` (2, 3, ...): `x-agent-backend-2` for a
/// dispatch header `x-agent-backend`. Attempt 1 is the dispatch header.
pub fn slot_header(dispatch_header: &str, n: usize) -> String {
    format!("{dispatch_header}-{n}")
}

/// Whether `name` is a slot header of `dispatch_header` (any number: the
/// Envoy route may know more slots than this configuration writes).
pub fn is_slot_header(name: &str, dispatch_header: &str) -> bool {
    name.strip_prefix(dispatch_header)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The backends one request of `entry` may try, before ordering: the side
/// chosen (`first`), the stable backend after a canary, then the backups.
pub fn candidates(entry: &crate::config::Entry, canary: bool) -> Vec<&str> {
    let Some(f) = &entry.failover else {
        return vec![entry.backend.as_str()];
    };
    let first = match (&entry.canary, canary) {
        (Some(c), true) => Some(c.backend.as_str()),
        _ => None,
    };
    first
        .into_iter()
        .chain(std::iter::once(entry.backend.as_str()))
        .chain(f.backends.iter().map(String::as_str))
        .collect()
}

/// `eject` when the entry sets none.
pub const DEFAULT_EJECT_MS: u64 = 30_000;
/// The longest `eject` a configuration may set.
pub const MAX_EJECT_MS: u64 = 3_600_000;
/// A `retry-after` counts for at most this long: a backend answering
/// "come back tomorrow" must not be skipped until tomorrow on its word.
pub const MAX_RETRY_AFTER_MS: u64 = 300_000;

/// An entry's failover, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// Tried in this order after the entry's backend (or canary side).
    pub backends: Vec<String>,
    pub on: On,
    pub eject_ms: u64,
    /// The failed request itself goes to the next backend (slot headers).
    pub retry: bool,
    /// Failures within `window_ms` before a backend is ejected (1: the
    /// first failure ejects, with no shared count kept).
    pub min_failures: u32,
    pub window_ms: u64,
}

/// Default `failover.window`.
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

/// Whether an answer with a failing status came from the backend: Envoy's
/// `response.code_details` is `via_upstream` for an upstream's answer, and
/// names the filter for a local reply (`local_rate_limited`,
/// `ext_authz_denied`, `fault_filter_abort`, ...). A refusal another filter
/// made after this one says nothing about the backend's health; Envoy's own
/// answers for upstream failures are told by their response flags instead.
pub fn answered_by_upstream(code_details: Option<&[u8]>) -> bool {
    code_details == Some(b"via_upstream".as_slice())
}

/// What counts as a failure of a backend (`failover.on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct On {
    pub any_5xx: bool,
    /// Single statuses (`429`, `503`, ...).
    pub statuses: Vec<u16>,
    pub connect_failure: bool,
    pub reset: bool,
    pub timeout: bool,
}

impl Default for On {
    /// `5xx`, `429`, `connect-failure`, `reset`.
    fn default() -> Self {
        On {
            any_5xx: true,
            statuses: vec![429],
            connect_failure: true,
            reset: true,
            timeout: false,
        }
    }
}

/// `on` values other than single statuses.
pub const ON_NAMES: [&str; 4] = ["5xx", "connect-failure", "reset", "timeout"];

impl On {
    /// Adds one `on` value; `Err` for one that means nothing.
    pub fn add(&mut self, value: &str) -> Result<(), String> {
        match value {
            "5xx" => self.any_5xx = true,
            "connect-failure" => self.connect_failure = true,
            "reset" => self.reset = true,
            "timeout" => self.timeout = true,
            v => match v.parse::<u16>() {
                Ok(status) if v.len() == 3 && (100..=599).contains(&status) => {
                    if !self.statuses.contains(&status) {
                        self.statuses.push(status);
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown value {v:?} (expected \"5xx\", \"connect-failure\", \"reset\", \"timeout\" or a status such as \"503\")"
                    ))
                }
            },
        }
        Ok(())
    }

    /// No failure kind at all (`on: []`).
    pub fn empty() -> Self {
        On {
            any_5xx: false,
            statuses: Vec::new(),
            connect_failure: false,
            reset: false,
            timeout: false,
        }
    }

    /// Whether a final `response.code` may be a failure, so that its flags
    /// are worth reading: the healthy path stops at the code. Envoy's own
    /// answers for connect failures, resets and timeouts are 503 and 504;
    /// 0 is a stream that ended with no answer at all.
    pub fn suspect(&self, code: u64) -> bool {
        code == 0 || code >= 500 || u16::try_from(code).is_ok_and(|c| self.statuses.contains(&c))
    }

    /// Whether this outcome counts as a failure of the backend.
    pub fn counts(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::ConnectFailure => self.connect_failure,
            Outcome::Reset => self.reset,
            Outcome::Timeout => self.timeout,
            Outcome::Status(code) => {
                (self.any_5xx && (500..=599).contains(&code)) || self.statuses.contains(&code)
            }
            Outcome::None => false,
        }
    }
}

/// How a stream ended, from Envoy's `response.code` and `response.flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No connection to the backend (UF), or no healthy host (UH).
    ConnectFailure,
    /// The backend reset the stream, closed the connection or cut its
    /// answer (UR, UC, UPE).
    Reset,
    /// The request timeout fired (UT).
    Timeout,
    /// An answer with this status.
    Status(u16),
    /// No answer and no upstream failure (the client went away).
    None,
}

/// `response.flags` bits (Envoy's legacy core response flags).
pub mod flags {
    pub const NO_HEALTHY_UPSTREAM: u64 = 0x2;
    pub const UPSTREAM_TIMEOUT: u64 = 0x4;
    pub const UPSTREAM_RESET: u64 = 0x10;
    pub const CONNECTION_FAILURE: u64 = 0x20;
    pub const CONNECTION_TERMINATION: u64 = 0x40;
    /// UPE: what a backend that cuts a chunked answer short leaves.
    pub const UPSTREAM_PROTOCOL_ERROR: u64 = 0x80_0000;
}

/// What ended a stream: an upstream failure flag wins over the status,
/// which Envoy made up for it (503, 504).
pub fn classify(code: u64, response_flags: u64) -> Outcome {
    if response_flags & (flags::CONNECTION_FAILURE | flags::NO_HEALTHY_UPSTREAM) != 0 {
        Outcome::ConnectFailure
    } else if response_flags & flags::UPSTREAM_TIMEOUT != 0 {
        Outcome::Timeout
    } else if response_flags
        & (flags::UPSTREAM_RESET | flags::CONNECTION_TERMINATION | flags::UPSTREAM_PROTOCOL_ERROR)
        != 0
    {
        Outcome::Reset
    } else {
        match u16::try_from(code) {
            Ok(0) | Err(_) => Outcome::None,
            Ok(status) => Outcome::Status(status),
        }
    }
}

/// How long a failed backend is skipped: `eject`, or the answer's
/// `retry-after` (capped at five minutes) when that is longer.
pub fn ejection_ms(eject_ms: u64, retry_after: Option<&[u8]>, now_unix_ms: u64) -> u64 {
    let asked = retry_after
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| retry_after_ms(v, now_unix_ms))
        .unwrap_or(0);
    eject_ms.max(asked)
}

/// A `retry-after` value (delay seconds, or an HTTP date) as milliseconds
/// from now, capped at [`MAX_RETRY_AFTER_MS`]; `None` when unreadable.
pub fn retry_after_ms(value: &str, now_unix_ms: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 is still "a long time".
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(seconds.saturating_mul(1000).min(MAX_RETRY_AFTER_MS));
    }
    let at_ms = http_date_unix(value)?.saturating_mul(1000);
    Some(at_ms.saturating_sub(now_unix_ms).min(MAX_RETRY_AFTER_MS))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, what HTTP senders
/// must send) as Unix seconds.
fn http_date_unix(value: &str) -> Option<u64> {
    let (_, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    let hour: u64 = clock.next()?.parse().ok()?;
    let minute: u64 = clock.next()?.parse().ok()?;
    let second: u64 = clock.next()?.parse().ok()?;
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day)
        || !(1970..=9999).contains(&year)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (year >= 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// The shared-data key of a backend's ejection record. Per backend, not
/// per entry: two entries sending to one backend see its failures alike.
pub fn record_key(key_prefix: &str, backend: &str) -> String {
    format!("{key_prefix}/failover/{backend}")
}

/// An ejection record: until when (Unix nanoseconds) the backend is
/// skipped.
pub fn encode(until_nanos: u64) -> [u8; 8] {
    until_nanos.to_le_bytes()
}

/// A record as stored; anything else (absent, garbage) reads as "not
/// ejected".
pub fn decode(value: Option<&[u8]>) -> Option<u64> {
    let bytes: [u8; 8] = value?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// What an ejection did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejected {
    /// The record now says `until_nanos`.
    Written,
    /// A record already said this later end (another worker's longer
    /// `retry-after` stays).
    Later(u64),
}

/// Ejects a backend until `until_nanos`, unless a record already says
/// later. Compare-and-swap, a few attempts: losing a race to a later
/// ejection is fine.
pub fn eject(store: &dyn SharedStore, key: &str, until_nanos: u64) -> Result<Ejected, StoreError> {
    for _ in 0..4 {
        let (value, version) = store.get(key)?;
        if let Some(later) = decode(value.as_deref()).filter(|&u| u >= until_nanos) {
            return Ok(Ejected::Later(later));
        }
        match store.set(key, &encode(until_nanos), version) {
            Ok(()) => return Ok(Ejected::Written),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

/// The shared-data key of a backend's failure count (`min_failures`).
pub fn failures_key(key_prefix: &str, backend: &str) -> String {
    format!("{key_prefix}/failover-count/{backend}")
}

/// Counts one failure of a backend, in a window that starts at the first
/// failure after the last window ended; `true` when the count reaches
/// `min` (the backend is to be ejected, and the count starts again).
/// With `min` 1 nothing is stored. Compare-and-swap: every worker's
/// failures count.
pub fn note_failure(
    store: &dyn SharedStore,
    key: &str,
    now_nanos: u64,
    window_ms: u64,
    min: u32,
) -> Result<bool, StoreError> {
    if min <= 1 {
        return Ok(true);
    }
    let window = window_ms.saturating_mul(1_000_000);
    for _ in 0..8 {
        let (value, version) = store.get(key)?;
        let (start, count) = match value.as_deref().and_then(decode_count) {
            Some((start, count)) if now_nanos.saturating_sub(start) < window => (start, count),
            _ => (now_nanos, 0),
        };
        let count = count.saturating_add(1);
        let reached = count >= min;
        // Reaching the count starts a fresh window (the ejection follows).
        let stored = if reached { (0, 0) } else { (start, count) };
        match store.set(key, &encode_count(stored.0, stored.1), version) {
            Ok(()) => return Ok(reached),
            Err(StoreError::CasMismatch) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::CasMismatch)
}

fn encode_count(start_nanos: u64, count: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&start_nanos.to_le_bytes());
    out[8..].copy_from_slice(&count.to_le_bytes());
    out
}

fn decode_count(value: &[u8]) -> Option<(u64, u32)> {
    let start: [u8; 8] = value.get(..8)?.try_into().ok()?;
    let count: [u8; 4] = value.get(8..12)?.try_into().ok()?;
    Some((u64::from_le_bytes(start), u32::from_le_bytes(count)))
}

/// The order in which one request tries `candidates` (the side chosen
/// first, then the backends after it): the first one not ejected leads,
/// then the others not ejected in order, then the ejected ones by when
/// their ejection ends. All ejected: the one whose ejection ends first
/// leads (never a refusal for lack of health). `ejected_until` is asked
/// about the first candidate only while it is healthy. Returns indices
/// into `candidates`.
pub fn order(
    candidates: usize,
    now_nanos: impl FnOnce() -> u64,
    mut ejected_until: impl FnMut(usize) -> Option<u64>,
) -> Vec<u8> {
    let count = candidates.min(usize::from(u8::MAX));
    let mut order: Vec<u8> = (0..count).filter_map(|i| u8::try_from(i).ok()).collect();
    // No record at all (the usual case): no clock read either.
    let Some(first) = (if count == 0 { None } else { ejected_until(0) }) else {
        return order;
    };
    let now_nanos = now_nanos();
    let ejected = |until: Option<u64>| until.filter(|&u| u > now_nanos);
    let Some(first) = ejected(Some(first)) else {
        return order;
    };
    let until: Vec<Option<u64>> = (0..count)
        .map(|i| {
            if i == 0 {
                Some(first)
            } else {
                ejected(ejected_until(i))
            }
        })
        .collect();
    // Healthy ones first in the configured order (a stable sort), then the
    // ejected by the end of their ejection.
    order.sort_by_key(|&i| match until.get(usize::from(i)).copied().flatten() {
        Some(u) => (true, u),
        None => (false, 0),
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[test]
    fn on_values_and_what_counts() {
        let on = On::default();
        assert!(on.counts(Outcome::Status(503)));
        assert!(on.counts(Outcome::Status(500)));
        assert!(on.counts(Outcome::Status(429)));
        assert!(!on.counts(Outcome::Status(404)));
        assert!(!on.counts(Outcome::Status(200)));
        assert!(on.counts(Outcome::ConnectFailure));
        assert!(on.counts(Outcome::Reset));
        assert!(!on.counts(Outcome::Timeout), "timeout is not a default");
        assert!(!on.counts(Outcome::None));

        let mut only_503 = On::empty();
        only_503.add("503").unwrap();
        only_503.add("timeout").unwrap();
        assert!(only_503.counts(Outcome::Status(503)));
        assert!(!only_503.counts(Outcome::Status(500)));
        assert!(!only_503.counts(Outcome::Status(429)));
        assert!(only_503.counts(Outcome::Timeout));
        assert!(!only_503.counts(Outcome::Reset));

        for bad in [
            "4xx",
            "",
            "50",
            "600",
            "099",
            "5XX",
            "connect_failure",
            "+503",
        ] {
            assert!(On::empty().add(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_suspect_codes_cost_a_flags_read() {
        let on = On::default();
        for code in [0, 500, 503, 504, 429] {
            assert!(on.suspect(code), "{code}");
        }
        for code in [200, 201, 204, 301, 400, 404, 499] {
            assert!(!on.suspect(code), "{code}");
        }
        let mut teapot = On::empty();
        teapot.add("418").unwrap();
        assert!(teapot.suspect(418));
    }

    #[test]
    fn flags_win_over_the_made_up_status() {
        assert_eq!(classify(503, 0x20), Outcome::ConnectFailure);
        assert_eq!(classify(503, 0x20 | 0x8000), Outcome::ConnectFailure);
        assert_eq!(classify(503, 0x2), Outcome::ConnectFailure);
        assert_eq!(classify(504, 0x4), Outcome::Timeout);
        assert_eq!(classify(503, 0x10), Outcome::Reset);
        assert_eq!(classify(200, 0x40), Outcome::Reset);
        assert_eq!(
            classify(0, 0x80_0000),
            Outcome::Reset,
            "a stream cut mid-chunk"
        );
        assert_eq!(classify(503, 0), Outcome::Status(503));
        assert_eq!(
            classify(503, 0x8000),
            Outcome::Status(503),
            "URX alone: the last answer"
        );
        assert_eq!(
            classify(0, 0x1000_0000),
            Outcome::None,
            "the client went away"
        );
    }

    #[test]
    fn retry_after_seconds_and_dates_capped() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after_ms("2", now), Some(2_000));
        assert_eq!(retry_after_ms(" 120 ", now), Some(120_000));
        assert_eq!(retry_after_ms("0", now), Some(0));
        assert_eq!(retry_after_ms("86400", now), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(
            retry_after_ms("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER_MS)
        );
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(60_000)
        );
        assert_eq!(
            retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(0)
        );
        assert_eq!(
            retry_after_ms("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(0),
            "past"
        );
        assert_eq!(
            retry_after_ms("Mon, 07 Nov 1994 08:49:37 GMT", now),
            Some(MAX_RETRY_AFTER_MS)
        );
        assert_eq!(
            retry_after_ms("Tue, 29 Feb 2028 00:00:00 GMT", 1_835_395_200_000),
            Some(0)
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after_ms(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            ejection_ms(30_000, Some(b"2"), now),
            30_000,
            "eject is longer"
        );
        assert_eq!(
            ejection_ms(1_000, Some(b"2"), now),
            2_000,
            "retry-after is longer"
        );
        assert_eq!(ejection_ms(1_000, Some(b"\xff"), now), 1_000);
        assert_eq!(ejection_ms(1_000, None, now), 1_000);
    }

    #[test]
    fn records_round_trip_and_garbage_is_healthy() {
        assert_eq!(decode(Some(&encode(42))), Some(42));
        assert_eq!(decode(None), None);
        assert_eq!(decode(Some(b"garbage")), None);
        assert_eq!(
            record_key("agentroute/p", "gpt-west"),
            "agentroute/p/failover/gpt-west"
        );
    }

    #[derive(Default)]
    struct Store {
        data: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        conflicts: RefCell<u32>,
    }

    impl SharedStore for Store {
        fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            Ok(match self.data.borrow().get(key) {
                Some((v, n)) => (Some(v.clone()), Some(*n)),
                None => (None, None),
            })
        }

        fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
            if *self.conflicts.borrow() > 0 {
                *self.conflicts.borrow_mut() -= 1;
                return Err(StoreError::CasMismatch);
            }
            let mut data = self.data.borrow_mut();
            let version = data.get(key).map_or(0, |(_, n)| *n);
            if cas.is_some_and(|c| c != version) {
                return Err(StoreError::CasMismatch);
            }
            data.insert(key.to_string(), (value.to_vec(), version + 1));
            Ok(())
        }
    }

    #[test]
    fn ejection_keeps_the_later_end_and_retries_conflicts() {
        let store = Store::default();
        assert_eq!(eject(&store, "k", 100), Ok(Ejected::Written));
        assert_eq!(
            eject(&store, "k", 50),
            Ok(Ejected::Later(100)),
            "a shorter one never shortens"
        );
        *store.conflicts.borrow_mut() = 2;
        assert_eq!(eject(&store, "k", 200), Ok(Ejected::Written));
        let (value, _) = store.get("k").unwrap();
        assert_eq!(decode(value.as_deref()), Some(200));
        *store.conflicts.borrow_mut() = 10;
        assert_eq!(eject(&store, "k", 300), Err(StoreError::CasMismatch));
    }

    #[test]
    fn min_failures_counts_within_a_window_across_workers() {
        let store = Store::default();
        let ms = 1_000_000;
        // 1: every failure ejects, nothing stored.
        assert_eq!(note_failure(&store, "k", 0, 10_000, 1), Ok(true));
        assert!(store.data.borrow().is_empty());
        // 3 within 10 s.
        assert_eq!(note_failure(&store, "k", 0, 10_000, 3), Ok(false));
        *store.conflicts.borrow_mut() = 3;
        assert_eq!(note_failure(&store, "k", 2_000 * ms, 10_000, 3), Ok(false));
        assert_eq!(note_failure(&store, "k", 9_000 * ms, 10_000, 3), Ok(true));
        // The count starts again after reaching it.
        assert_eq!(note_failure(&store, "k", 9_500 * ms, 10_000, 3), Ok(false));
        // Spread out past the window: never three at once.
        for t in [30_000u64, 41_000, 52_000, 63_000] {
            assert_eq!(
                note_failure(&store, "k", t * ms, 10_000, 3),
                Ok(false),
                "{t}"
            );
        }
        store.set("k", b"garbage", Some(99)).unwrap_or(());
        assert_eq!(note_failure(&store, "j", 0, 10_000, 2), Ok(false));
    }

    #[test]
    fn only_the_upstreams_answers_judge_it() {
        assert!(answered_by_upstream(Some(b"via_upstream")));
        for local in [
            &b"local_rate_limited"[..],
            b"ext_authz_denied",
            b"ext_authz_error",
            b"fault_filter_abort",
            b"request_rate_limited",
            b"",
        ] {
            assert!(!answered_by_upstream(Some(local)), "{local:?}");
        }
        assert!(!answered_by_upstream(None));
    }

    #[test]
    fn order_reads_one_record_when_healthy() {
        let reads = RefCell::new(Vec::new());
        let got = order(
            3,
            || 1_000,
            |i| {
                reads.borrow_mut().push(i);
                None
            },
        );
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(*reads.borrow(), vec![0]);
        // An expired record is healthy too.
        assert_eq!(
            order(3, || 1_000, |i| (i == 0).then_some(999)),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn ejected_backends_go_last_by_when_they_come_back() {
        // 0 ejected: 1 leads, 2 next, 0 last.
        assert_eq!(
            order(3, || 1_000, |i| (i == 0).then_some(5_000)),
            vec![1, 2, 0]
        );
        // 0 and 1 ejected: 2 leads, then 1 (back sooner) and 0.
        let until = [9_000, 5_000, 0];
        assert_eq!(order(3, || 1_000, |i| Some(until[i])), vec![2, 1, 0]);
        // All ejected: the one back first leads.
        let until = [9_000, 5_000, 7_000];
        assert_eq!(order(3, || 1_000, |i| Some(until[i])), vec![1, 2, 0]);
        assert_eq!(order(0, || 1_000, |_| None), Vec::<u8>::new());
    }
}
