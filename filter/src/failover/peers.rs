//! How every worker learns of an ejection at once without a shared-data
//! read per request. Each VM keeps the ejection records it knows in memory
//! ([`Ejections`]): a request asks them, not shared data. The VM that
//! ejects a backend writes the record to shared data (the truth a VM
//! starting later loads) and tells every other VM through that VM's own
//! shared queue: Envoy posts `on_queue_ready` to the VM that registered the
//! queue, on its worker thread, so the others know before the failed
//! request's answer has reached its client.
//!
//! The queues are found in a registry kept in shared data: every VM with a
//! failover entry writes its queue and a heartbeat into it each tick, and
//! drops the peers whose heartbeat is older than [`STALE_SECS`] (their VM is
//! gone: a queue nobody reads only grows).
//!
//! No message can be missed: a VM joins the registry before it loads the
//! records, and an ejecting VM writes the record before it reads the
//! registry (shared data is one lock), so either the ejector saw the new
//! peer or the peer's load sees the record.

use crate::fasthash::{FastMap, FastSet};

/// A peer whose heartbeat is older than this is dropped from the registry.
pub const STALE_SECS: u32 = 10;

/// The ejection records one VM knows: backend → until when (Unix
/// nanoseconds) it is skipped. Expired records stay until [`prune`]d.
///
/// [`prune`]: Ejections::prune
#[derive(Debug, Default)]
pub struct Ejections {
    until: FastMap<String, u64>,
}

impl Ejections {
    /// Records an ejection, unless a later one is known already. Returns
    /// whether the record changed.
    pub fn note(&mut self, backend: &str, until: u64) -> bool {
        match self.until.get_mut(backend) {
            Some(known) if *known >= until => false,
            Some(known) => {
                *known = until;
                true
            }
            None => {
                self.until.insert(backend.to_string(), until);
                true
            }
        }
    }

    /// Until when `backend` is skipped, if a record says so (expired ones
    /// included). Nothing ejected (the usual case): no hashing at all.
    pub fn until(&self, backend: &str) -> Option<u64> {
        if self.until.is_empty() {
            return None;
        }
        self.until.get(backend).copied()
    }

    /// Forgets the records that ended before `now`.
    pub fn prune(&mut self, now: u64) {
        self.until.retain(|_, until| *until > now);
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// The shared-data key of the registry of one plugin's VMs.
pub fn registry_key(key_prefix: &str) -> String {
    format!("{key_prefix}/failover-peers")
}

/// The name of a VM's own queue (`id`: random, drawn once per VM).
pub fn queue_name(key_prefix: &str, id: u64) -> String {
    format!("{key_prefix}/failover-queue/{id:016x}")
}

/// One VM in the registry: its queue and when it last said it is alive
/// (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub queue: u32,
    pub seen: u32,
}

/// The registry as stored: 8 bytes per peer (queue, heartbeat; little-
/// endian). Anything that does not parse reads as no peers.
pub fn decode_registry(value: Option<&[u8]>) -> Vec<Peer> {
    let Some(bytes) = value.filter(|b| b.len() % 8 == 0) else {
        return Vec::new();
    };
    bytes
        .chunks_exact(8)
        .filter_map(|c| {
            let queue = u32::from_le_bytes(c.get(..4)?.try_into().ok()?);
            let seen = u32::from_le_bytes(c.get(4..)?.try_into().ok()?);
            Some(Peer { queue, seen })
        })
        .collect()
}

fn encode_registry(peers: &[Peer]) -> Vec<u8> {
    peers
        .iter()
        .flat_map(|p| {
            p.queue
                .to_le_bytes()
                .into_iter()
                .chain(p.seen.to_le_bytes())
        })
        .collect()
}

fn alive(peer: &Peer, now: u32) -> bool {
    now.saturating_sub(peer.seen) <= STALE_SECS
}

/// The registry after the VM of `queue` says it is alive at `now` (Unix
/// seconds): its heartbeat renewed (or added), stale peers dropped.
pub fn join(value: Option<&[u8]>, queue: u32, now: u32) -> Vec<u8> {
    let mut peers: Vec<Peer> = decode_registry(value)
        .into_iter()
        .filter(|p| p.queue != queue && alive(p, now))
        .collect();
    peers.push(Peer { queue, seen: now });
    encode_registry(&peers)
}

/// The queues to tell of an ejection: every live peer but `own`.
pub fn others(value: Option<&[u8]>, own: Option<u32>, now: u32) -> Vec<u32> {
    let mut queues: Vec<u32> = decode_registry(value)
        .into_iter()
        .filter(|p| Some(p.queue) != own && alive(p, now))
        .map(|p| p.queue)
        .collect();
    queues.sort_unstable();
    queues.dedup();
    queues
}

/// A message on a peer's queue: the backend ejected and until when.
pub fn encode_message(backend: &str, until: u64) -> Vec<u8> {
    let mut bytes = until.to_le_bytes().to_vec();
    bytes.extend_from_slice(backend.as_bytes());
    bytes
}

/// A message as [`encode_message`] wrote it; `None` for anything else.
pub fn decode_message(bytes: &[u8]) -> Option<(&str, u64)> {
    let until = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let backend = std::str::from_utf8(bytes.get(8..)?).ok()?;
    (!backend.is_empty()).then_some((backend, until))
}

/// The distinct backends whose records a VM loads when it starts: every
/// candidate of the `entries` (those with failover).
pub fn backends_to_load<'a>(
    entries: impl IntoIterator<Item = &'a crate::config::Entry>,
) -> Vec<&'a str> {
    let mut seen: FastSet<&str> = FastSet::default();
    let mut out = Vec::new();
    for e in entries {
        for b in super::candidates(e, true) {
            if seen.insert(b) {
                out.push(b);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_only_moves_later() {
        let mut e = Ejections::default();
        assert_eq!(e.until("a"), None);
        assert!(e.note("a", 100));
        assert!(!e.note("a", 50), "an earlier end never shortens a record");
        assert!(!e.note("a", 100));
        assert!(e.note("a", 200));
        assert_eq!(e.until("a"), Some(200));
        assert!(e.note("b", 10));
        e.prune(100);
        assert_eq!((e.until("a"), e.until("b"), e.len()), (Some(200), None, 1));
        e.prune(200);
        assert!(e.is_empty());
    }

    #[test]
    fn the_registry_renews_heartbeats_and_drops_stale_peers() {
        let r = join(None, 7, 1_000);
        assert_eq!(
            decode_registry(Some(&r)),
            vec![Peer {
                queue: 7,
                seen: 1_000
            }]
        );
        let r = join(Some(&r), 9, 1_005);
        let r = join(Some(&r), 7, 1_008);
        assert_eq!(
            decode_registry(Some(&r)),
            vec![
                Peer {
                    queue: 9,
                    seen: 1_005
                },
                Peer {
                    queue: 7,
                    seen: 1_008
                }
            ]
        );
        // 9 stops beating: dropped once older than STALE_SECS.
        assert_eq!(others(Some(&r), Some(7), 1_005 + STALE_SECS), vec![9]);
        assert_eq!(
            others(Some(&r), Some(7), 1_006 + STALE_SECS),
            Vec::<u32>::new()
        );
        let r = join(Some(&r), 7, 1_006 + STALE_SECS);
        assert_eq!(decode_registry(Some(&r)).len(), 1);
        // Not knowing its own queue, a VM tells everyone.
        assert_eq!(others(Some(&r), None, 1_010), vec![7]);
    }

    #[test]
    fn garbage_reads_as_no_peers_and_no_message() {
        assert!(decode_registry(Some(b"12345")).is_empty());
        assert!(decode_registry(None).is_empty());
        assert_eq!(decode_message(b"short"), None);
        assert_eq!(decode_message(&7u64.to_le_bytes()), None, "no backend");
        assert_eq!(decode_message(&[0xff; 10]), None, "not UTF-8");
        let m = encode_message("gpt-west", 123);
        assert_eq!(decode_message(&m), Some(("gpt-west", 123)));
    }

    #[test]
    fn every_candidate_is_loaded_once() {
        let plan = crate::config::Plan::from_json(
            br#"{"agents": [
              {"name": "a", "backend": "x", "failover": {"backends": ["y", "z"]}},
              {"name": "b", "backend": "y", "failover": {"backends": ["x"]}},
              {"name": "c", "backend": "w"}]}"#,
        )
        .expect("plan");
        let failing_over = plan.entries.iter().filter(|e| e.failover.is_some());
        assert_eq!(backends_to_load(failing_over), vec!["x", "y", "z"]);
    }
}
