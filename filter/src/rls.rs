//! Global limits through Envoy's rate limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), served by
//! envoyproxy/ratelimit or Limitador: the messages the filter sends, and what
//! it makes of the answers. The service keeps the numbers; the filter names
//! the descriptors.
//!
//! Descriptors per request: `agent` = `namespace/name` and `kind` (plus
//! `client` for a per-client limit). A token budget adds a second
//! descriptor with `budget` = `tokens`, checked with `hits_addend` 0 at
//! admission and debited with the answer's `usage.total_tokens` after it.

use prost::Message;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;

use crate::reply::{self as replies, LimitStatus, Limited, LocalReply};

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// The protobuf messages of `rls.proto` and `ratelimit.proto` the filter
/// uses, with their field numbers; prost encodes and decodes them (fields
/// the filter does not read are skipped on decode).
pub mod pb {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RateLimitRequest {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<RateLimitDescriptor>,
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RateLimitDescriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
        /// `google.protobuf.UInt64Value`: overrides the request's
        /// `hits_addend` for this descriptor; `Some(0)` checks only.
        #[prost(message, optional, tag = "3")]
        pub hits_addend: Option<UInt64Value>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, Copy, PartialEq, ::prost::Message)]
    pub struct UInt64Value {
        #[prost(uint64, tag = "1")]
        pub value: u64,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RateLimitResponse {
        /// `UNKNOWN` 0, `OK` 1, `OVER_LIMIT` 2.
        #[prost(int32, tag = "1")]
        pub overall_code: i32,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<DescriptorStatus>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct DescriptorStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<Duration>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct RateLimit {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        /// `SECOND` 1, `MINUTE` 2, `HOUR` 3, `DAY` 4, `MONTH` 5, `YEAR` 6,
        /// `WEEK` 7.
        #[prost(int32, tag = "2")]
        pub unit: i32,
    }

    #[derive(Clone, Copy, PartialEq, ::prost::Message)]
    pub struct Duration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `envoy.config.core.v3.GrpcService` with its `envoy_grpc` target.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct GrpcService {
        #[prost(message, optional, tag = "1")]
        pub envoy_grpc: Option<EnvoyGrpc>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct EnvoyGrpc {
        #[prost(string, tag = "1")]
        pub cluster_name: String,
        /// The calls' `:authority`; the cluster name when empty.
        #[prost(string, tag = "2")]
        pub authority: String,
    }
}

const OVER_LIMIT: i32 = 2;

/// What `proxy_grpc_call` is given to reach the service: a serialised
/// `GrpcService`. Envoy also takes a bare cluster name, but tries it as
/// protobuf first, and some names (`agentroute-rls`) happen to parse as an
/// empty `GrpcService`, which crashes Envoy.
///
/// The SDK takes it as a `&str`: the encoding is valid UTF-8 while it is
/// shorter than 128 bytes (its length prefixes stay single bytes), so a long
/// authority gives way to a shorter one ([`authorities`]).
pub fn grpc_service(cluster: &str) -> Vec<u8> {
    let encode = |authority: &str| {
        pb::GrpcService {
            envoy_grpc: Some(pb::EnvoyGrpc {
                cluster_name: cluster.to_string(),
                authority: authority.to_string(),
            }),
        }
        .encode_to_vec()
    };
    let candidates = authorities(cluster);
    candidates
        .iter()
        .map(|a| encode(a))
        .find(|bytes| bytes.len() < MAX_UTF8_SAFE_SERVICE)
        .unwrap_or_else(|| encode(candidates.last().map_or("", String::as_str)))
}

/// Below this size the serialised `GrpcService` is valid UTF-8.
const MAX_UTF8_SAFE_SERVICE: usize = 128;

/// The `:authority` candidates for calls to `cluster`, best first; empty
/// means the cluster name itself. Envoy sends the cluster name unless told
/// otherwise, and its HTTP/2 codec refuses a request whose `:authority` holds
/// other characters (every call then fails with UNAVAILABLE): Istio's
/// cluster names do, `outbound|8081||ratelimit.infra.svc.cluster.local`.
/// Their last part is the service's host name, the authority the service
/// expects, else its first label (rate limit services do not route on it);
/// any other name has the offending characters replaced.
fn authorities(cluster: &str) -> Vec<String> {
    // RFC 3986 authority characters (what Envoy's codecs accept).
    let valid = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@%[]".contains(&b);
    if !cluster.is_empty() && cluster.bytes().all(valid) {
        return vec![String::new()];
    }
    let host = cluster.rsplit('|').next().unwrap_or_default();
    if !host.is_empty() && host.bytes().all(valid) {
        let label = host.split('.').next().unwrap_or(host);
        return vec![host.to_string(), label.to_string()];
    }
    vec![cluster
        .bytes()
        .map(|b| if valid(b) { char::from(b) } else { '-' })
        .collect()]
}

/// Who a request counts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    /// `namespace/name`.
    pub agent: &'a str,
    pub kind: &'a str,
    /// The client value's hash ([`client_value`]) for a per-client limit.
    pub client: Option<&'a str>,
}

fn entries(subject: &Subject<'_>, budget: bool) -> Vec<pb::Entry> {
    let mut entries = vec![
        pb::Entry {
            key: "agent".into(),
            value: subject.agent.into(),
        },
        pb::Entry {
            key: "kind".into(),
            value: subject.kind.into(),
        },
    ];
    if let Some(client) = subject.client {
        entries.push(pb::Entry {
            key: "client".into(),
            value: client.into(),
        });
    }
    if budget {
        entries.push(pb::Entry {
            key: "budget".into(),
            value: "tokens".into(),
        });
    }
    entries
}

/// The admission call: one request is counted on the request descriptor;
/// with a token budget, the budget descriptor is checked without counting.
pub fn admission(domain: &str, subject: &Subject<'_>, tokens: bool) -> Vec<u8> {
    let mut descriptors = vec![pb::RateLimitDescriptor {
        entries: entries(subject, false),
        hits_addend: None,
    }];
    if tokens {
        descriptors.push(pb::RateLimitDescriptor {
            entries: entries(subject, true),
            hits_addend: Some(pb::UInt64Value { value: 0 }),
        });
    }
    pb::RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: 1,
    }
    .encode_to_vec()
}

/// The report after an answer: its tokens, debited from the budget.
pub fn usage_report(domain: &str, subject: &Subject<'_>, tokens: u64) -> Vec<u8> {
    pb::RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![pb::RateLimitDescriptor {
            entries: entries(subject, true),
            hits_addend: Some(pb::UInt64Value { value: tokens }),
        }],
        hits_addend: u32::try_from(tokens).unwrap_or(u32::MAX),
    }
    .encode_to_vec()
}

/// What the service decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on; the request limit's standing, when the service told it.
    Admit(Option<LimitStatus>),
    /// Over a limit: answer 429 ([`refusal`]).
    Deny {
        what: Limited,
        /// The refusing limit's standing; `None` when the service named no
        /// limit (Limitador sends no statuses).
        status: Option<LimitStatus>,
        /// `retry-after`: the limit's reset, or 1 s when unknown.
        retry_after_secs: u64,
    },
    /// No usable answer (down, slow, garbled): `failure_mode` decides.
    Failed(String),
}

/// Reads the service's answer to an admission call. `grpc_status` is the
/// call's gRPC status (0 = OK); `body` the response message.
pub fn verdict(grpc_status: u32, body: &[u8]) -> Verdict {
    if grpc_status != 0 {
        return Verdict::Failed(format!("gRPC status {grpc_status}"));
    }
    let response = match pb::RateLimitResponse::decode(body) {
        Ok(r) => r,
        Err(e) => return Verdict::Failed(format!("undecodable answer: {e}")),
    };
    if response.overall_code == OVER_LIMIT {
        // The first descriptor over its limit says which limit refused.
        let over = response
            .statuses
            .iter()
            .enumerate()
            .find(|(_, s)| s.code == OVER_LIMIT);
        let (what, over) = match over {
            Some((1, s)) => (Limited::Tokens, Some(s)),
            Some((_, s)) => (Limited::Requests, Some(s)),
            None => (Limited::Requests, None),
        };
        let retry_after_secs = over
            .and_then(|s| s.duration_until_reset)
            .map_or(1, |d| reset_secs(&d).max(1));
        return Verdict::Deny {
            what,
            status: over.filter(|s| s.current_limit.is_some()).map(limit_status),
            retry_after_secs,
        };
    }
    // Envoy's own rate limit filter treats anything but OVER_LIMIT as OK.
    Verdict::Admit(
        response
            .statuses
            .first()
            .filter(|s| s.current_limit.is_some())
            .map(limit_status),
    )
}

/// The 429 of a refusal: the limit's `x-ratelimit-*` when the service named
/// the limit, else only `retry-after` (no numbers the service did not give).
pub fn refusal(what: Limited, status: Option<&LimitStatus>, retry_after_secs: u64) -> LocalReply {
    match status {
        Some(status) => replies::rate_limited(what, status),
        None => {
            let unknown = LimitStatus {
                limit: 0,
                remaining: 0,
                reset_secs: retry_after_secs,
                retry_after_secs,
            };
            let mut reply = replies::rate_limited(what, &unknown);
            reply
                .headers
                .retain(|(name, _)| !name.starts_with("x-ratelimit-"));
            reply
        }
    }
}

/// Whole seconds, rounded up.
fn reset_secs(d: &pb::Duration) -> u64 {
    let whole = u64::try_from(d.seconds).unwrap_or(0);
    whole.saturating_add(u64::from(d.nanos > 0))
}

fn limit_status(s: &pb::DescriptorStatus) -> LimitStatus {
    let reset = s.duration_until_reset.as_ref().map_or(0, reset_secs);
    LimitStatus {
        limit: s
            .current_limit
            .as_ref()
            .map_or(0, |l| u64::from(l.requests_per_unit)),
        remaining: u64::from(s.limit_remaining),
        reset_secs: reset,
        retry_after_secs: reset.max(1),
    }
}

/// The `client` descriptor value: a 128-bit hash of the client value, the
/// same on every replica (so the service counts one client as one), keyed by
/// the domain. The service never sees an API key itself.
pub fn client_value(domain: &str, value: &[u8]) -> String {
    let mut key_hasher = SipHasher13::new_with_keys(0x6167_656e_7472_6f75, 0x7465_2f72_6c73_2f31);
    key_hasher.write(domain.as_bytes());
    let k = key_hasher.finish();
    let hash = |salt: u64| {
        let mut h = SipHasher13::new_with_keys(k, salt);
        h.write(value);
        h.finish()
    };
    format!("{:016x}{:016x}", hash(1), hash(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            agent: "prod/llm",
            kind: "modelapi",
            client: Some("c1"),
        }
    }

    #[test]
    fn admission_counts_requests_and_checks_the_budget() {
        let msg =
            pb::RateLimitRequest::decode(&admission("agentroute", &subject(), true)[..]).unwrap();
        assert_eq!(msg.domain, "agentroute");
        assert_eq!(msg.hits_addend, 1);
        assert_eq!(msg.descriptors.len(), 2);
        let keys = |d: &pb::RateLimitDescriptor| -> Vec<(String, String)> {
            d.entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        };
        assert_eq!(
            keys(&msg.descriptors[0]),
            [
                ("agent".into(), "prod/llm".into()),
                ("kind".into(), "modelapi".into()),
                ("client".into(), "c1".into())
            ]
        );
        assert_eq!(msg.descriptors[0].hits_addend, None);
        assert_eq!(keys(&msg.descriptors[1]).last().unwrap().0, "budget");
        assert_eq!(
            msg.descriptors[1].hits_addend,
            Some(pb::UInt64Value { value: 0 })
        );
        let plain = pb::RateLimitRequest::decode(
            &admission(
                "d",
                &Subject {
                    client: None,
                    ..subject()
                },
                false,
            )[..],
        )
        .unwrap();
        assert_eq!(plain.descriptors.len(), 1);
        assert_eq!(plain.descriptors[0].entries.len(), 2);
    }

    #[test]
    fn usage_is_reported_on_the_budget_descriptor() {
        let msg = pb::RateLimitRequest::decode(&usage_report("d", &subject(), 42)[..]).unwrap();
        assert_eq!(msg.hits_addend, 42);
        assert_eq!(msg.descriptors.len(), 1);
        assert_eq!(
            msg.descriptors[0].hits_addend,
            Some(pb::UInt64Value { value: 42 })
        );
        assert_eq!(msg.descriptors[0].entries.last().unwrap().value, "tokens");
    }

    fn answer(overall: i32, statuses: Vec<pb::DescriptorStatus>) -> Vec<u8> {
        pb::RateLimitResponse {
            overall_code: overall,
            statuses,
        }
        .encode_to_vec()
    }

    fn status(code: i32, limit: u32, remaining: u32, reset: i64) -> pb::DescriptorStatus {
        pb::DescriptorStatus {
            code,
            current_limit: Some(pb::RateLimit {
                requests_per_unit: limit,
                unit: 2,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(pb::Duration {
                seconds: reset,
                nanos: 500,
            }),
        }
    }

    #[test]
    fn verdicts() {
        let ok = answer(1, vec![status(1, 5, 3, 10)]);
        assert_eq!(
            verdict(0, &ok),
            Verdict::Admit(Some(LimitStatus {
                limit: 5,
                remaining: 3,
                reset_secs: 11,
                retry_after_secs: 11
            }))
        );
        let over = answer(2, vec![status(1, 5, 0, 3), status(2, 100, 0, 30)]);
        assert!(matches!(
            verdict(0, &over),
            Verdict::Deny {
                what: Limited::Tokens,
                status: Some(LimitStatus {
                    limit: 100,
                    retry_after_secs: 31,
                    ..
                }),
                retry_after_secs: 31,
            }
        ));
        let over = answer(2, vec![status(2, 5, 0, 0)]);
        assert!(matches!(
            verdict(0, &over),
            Verdict::Deny {
                what: Limited::Requests,
                status: Some(LimitStatus {
                    retry_after_secs: 1,
                    ..
                }),
                retry_after_secs: 1,
            }
        ));
        // Limitador answers OVER_LIMIT without statuses.
        assert_eq!(
            verdict(0, &answer(2, Vec::new())),
            Verdict::Deny {
                what: Limited::Requests,
                status: None,
                retry_after_secs: 1
            }
        );
        // An all-default answer is zero bytes: UNKNOWN, which admits.
        assert_eq!(verdict(0, &[]), Verdict::Admit(None));
        assert!(matches!(verdict(14, &[]), Verdict::Failed(_)));
        assert!(matches!(verdict(0, b"\xff\xff\xff"), Verdict::Failed(_)));
    }

    #[test]
    fn refusals_give_only_the_numbers_the_service_gave() {
        let header = |r: &LocalReply, name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        let known = LimitStatus {
            limit: 6,
            remaining: 0,
            reset_secs: 42,
            retry_after_secs: 42,
        };
        let r = refusal(Limited::Requests, Some(&known), 42);
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "x-ratelimit-limit").as_deref(), Some("6"));
        assert_eq!(header(&r, "retry-after").as_deref(), Some("42"));
        let r = refusal(Limited::Tokens, None, 1);
        assert_eq!(header(&r, "retry-after").as_deref(), Some("1"));
        assert_eq!(header(&r, "x-ratelimit-limit"), None);
        assert_eq!(header(&r, "x-ratelimit-reset"), None);
        assert!(r.body.contains("\"tokens\""));
    }

    #[test]
    fn grpc_service_names_the_cluster() {
        let bytes = grpc_service("agentroute-rls");
        let parsed = pb::GrpcService::decode(&bytes[..]).unwrap();
        let grpc = parsed.envoy_grpc.unwrap();
        assert_eq!(grpc.cluster_name, "agentroute-rls");
        assert_eq!(grpc.authority, "", "a valid authority: the cluster name");
        assert!(std::str::from_utf8(&bytes).is_ok(), "the SDK takes a &str");

        let istio = "outbound|8081||ratelimit.infra.svc.cluster.local";
        let bytes = grpc_service(istio);
        let grpc = pb::GrpcService::decode(&bytes[..])
            .unwrap()
            .envoy_grpc
            .unwrap();
        assert_eq!(grpc.cluster_name, istio);
        assert_eq!(grpc.authority, "ratelimit.infra.svc.cluster.local");
        assert!(std::str::from_utf8(&bytes).is_ok());
        // Too long for the host twice: its first label.
        let long = "outbound|8081||envoy-ratelimit.envoy-gateway-system.svc.cluster.local";
        let bytes = grpc_service(long);
        assert!(std::str::from_utf8(&bytes).is_ok(), "{} bytes", bytes.len());
        let grpc = pb::GrpcService::decode(&bytes[..])
            .unwrap()
            .envoy_grpc
            .unwrap();
        assert_eq!(
            (grpc.cluster_name.as_str(), grpc.authority.as_str()),
            (long, "envoy-ratelimit")
        );
        assert_eq!(authorities("rate limit"), ["rate-limit"]);
        assert_eq!(authorities("a|b|"), ["a-b-"]);
        assert_eq!(authorities("ratelimit.infra:8081"), [""]);
    }

    #[test]
    fn client_values_are_stable_hidden_and_per_domain() {
        let a = client_value("agentroute", b"sk-secret");
        assert_eq!(a, client_value("agentroute", b"sk-secret"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("secret"));
        assert_ne!(a, client_value("other", b"sk-secret"));
        assert_ne!(a, client_value("agentroute", b"sk-secret2"));
    }
}
