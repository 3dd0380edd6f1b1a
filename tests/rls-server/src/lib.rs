//! A small Envoy rate limit service (`envoy.service.ratelimit.v3.RateLimitService`) for the
//! integration tests of agentroute's global rate limits.
//!
//! **This is test infrastructure**, not a product: a stand-in for
//! [envoyproxy/ratelimit](https://github.com/envoyproxy/ratelimit) or Kuadrant's Limitador server,
//! whose server binary (`limitador-server`) is not published on crates.io. It runs Kuadrant's
//! rate limiting engine, the [`limitador`] crate, with its Redis counter storage
//! ([`AsyncRedisStorage`]) against a real `redis-server`, and reads limits from Limitador's own
//! limits file format, so the same YAML works with a real Limitador.
//!
//! # How a `RateLimitRequest` maps onto Limitador
//!
//! Exactly as `limitador-server` does it in `limitador-server/src/envoy_rls/server.rs`
//! (`MyRateLimiter::should_rate_limit`, github.com/Kuadrant/limitador):
//!
//! - the request's `domain` is the Limitador **namespace**; an empty domain is answered with
//!   `overall_code: UNKNOWN` and no statuses;
//! - every descriptor becomes one map of its entries (`key -> value`), and the list of maps is
//!   bound as the CEL variable `descriptors`
//!   (`ctx.list_binding("descriptors", values)` on a default [`Context`]), so a limit refers to
//!   an entry as `descriptors[0].agent` or `descriptors[0]['agent']`;
//! - the whole request is one Limitador check over that context
//!   (`check_rate_limited_and_update(namespace, ctx, hits_addend)`): every limit of the namespace
//!   whose conditions hold and whose variables resolve gets a counter, and the request is
//!   OVER_LIMIT if any counter would go over. Counting is all-or-nothing: an over-limit request
//!   counts nothing;
//! - a storage error is answered with gRPC `UNAVAILABLE`, as Limitador does, so Envoy's
//!   `failure_mode_deny` decides.
//!
//! # Where this server differs from `limitador-server`
//!
//! - **`hits_addend`.** `limitador-server` turns a request-level `hits_addend` of 0 into 1 (and
//!   so does envoyproxy/ratelimit), and ignores the descriptor-level `hits_addend`. Here a
//!   descriptor-level `hits_addend` (`google.protobuf.UInt64Value`, field 3 of
//!   `RateLimitDescriptor`) wins when set, as envoyproxy/ratelimit does (`utils.GetHitsAddends`),
//!   and a resulting 0 means **check only**: the answer is whether one more hit would fit,
//!   nothing is counted (Limitador's `is_rate_limited(namespace, ctx, 1)`, which is what
//!   Kuadrant's own `kuadrant.service.ratelimit.v1/CheckRateLimit` does). A request-level 0 also
//!   means check only, unless the server runs with `--unset-hits-addend-is-one`, which restores
//!   the behaviour of both real servers. Descriptors whose effective `hits_addend` differ (a
//!   request counted while its token budget is only checked, as agentroute asks at admission)
//!   are split into one group per `hits_addend`; each group is checked over the request's
//!   descriptor list with the other groups' descriptors emptied (indices stay put), and only
//!   when every group fits are the counting groups counted. That is envoyproxy/ratelimit's
//!   per-descriptor behaviour, not atomic across groups (a test stand-in), and a limit that
//!   names no descriptor index is counted once per group. `is_negative_hits` is rejected with
//!   `INVALID_ARGUMENT`.
//! - **Over-limit counting.** With `--count-over-limit`, hits that are over the limit are counted
//!   anyway (Limitador's `update_counters`), as envoyproxy/ratelimit does by default
//!   (`INCRBY` whatever the verdict) and as Kuadrant's `Report` call does; a usage report after
//!   the response (tokens already spent) needs that to be seen by the next check.
//! - **Statuses.** `limitador-server` sends no `statuses`. Here there is one `DescriptorStatus`
//!   per descriptor, in request order, filled from the counters Limitador returns: a counter
//!   belongs to descriptor `i` when its limit's conditions or variables mention
//!   `descriptors[i]` (or `descriptors[size(descriptors) - 1]` and `i` is the last one), and to
//!   every descriptor when they mention no index. The most restrictive
//!   counter (over the limit first, then the least remaining) gives `code`, `current_limit`
//!   (`requests_per_unit` = `max_value`, `unit` from `seconds` when it is exactly one second,
//!   minute, hour, day or week, else `UNKNOWN`; `name` = the limit's name or
//!   `"<max_value>/<seconds>s"`), `limit_remaining` and `duration_until_reset`. A descriptor no
//!   limit applies to gets `OK` with no `current_limit`, as envoyproxy/ratelimit answers.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::counter::Counter;
use limitador::limit::{Context, Limit, Namespace};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// Behaviour switches (see the crate docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Count hits even when they are over the limit (envoyproxy/ratelimit's default).
    pub count_over_limit: bool,
    /// A request-level `hits_addend` of 0 counts 1, as in limitador-server and
    /// envoyproxy/ratelimit; without it, 0 means check only.
    pub unset_hits_addend_is_one: bool,
}

/// Reads a Limitador limits file: a YAML list of limits, each with `namespace`, `max_value`,
/// `seconds`, `conditions`, `variables` and optionally `name` (what `limitador-server` parses as
/// `Vec<limitador::limit::Limit>`).
pub fn load_limits(path: &Path) -> Result<Vec<Limit>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("couldn't read limits file '{}': {e}", path.display()))?;
    serde_yaml::from_reader(file)
        .map_err(|e| format!("couldn't parse limits file '{}': {e}", path.display()))
}

/// The gRPC service.
pub struct RlsService {
    limiter: Arc<AsyncRateLimiter>,
    options: Options,
}

impl RlsService {
    /// Connects to Redis (failing fast if it is not there) and installs `limits`.
    pub async fn connect(
        redis_url: &str,
        limits: Vec<Limit>,
        options: Options,
    ) -> Result<Self, String> {
        let storage = AsyncRedisStorage::new(redis_url)
            .await
            .map_err(|e| format!("couldn't connect to redis at {redis_url}: {e}"))?;
        let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
        limiter
            .configure_with(limits)
            .await
            .map_err(|e| format!("couldn't install limits: {e}"))?;
        Ok(Self {
            limiter: Arc::new(limiter),
            options,
        })
    }

    /// The effective `hits_addend` of each descriptor (0 = check only): its own
    /// `hits_addend` when set, else the request's.
    fn hits_addends(&self, req: &RateLimitRequest) -> Result<Vec<u64>, Status> {
        let request_level = match req.hits_addend {
            0 if self.options.unset_hits_addend_is_one => 1,
            n => u64::from(n),
        };
        req.descriptors
            .iter()
            .enumerate()
            .map(|(i, d)| {
                if d.is_negative_hits {
                    return Err(Status::invalid_argument(format!(
                        "descriptors[{i}]: is_negative_hits is not supported"
                    )));
                }
                Ok(d.hits_addend.as_ref().map_or(request_level, |v| v.value))
            })
            .collect()
    }
}

/// Descriptors that share one effective `hits_addend`, checked (and counted) together.
struct Group {
    hits_addend: u64,
    /// The request's descriptor maps with the other groups' descriptors emptied, so indices
    /// stay where the limits expect them and no limit matches a descriptor twice.
    ctx_maps: Vec<HashMap<String, String>>,
}

/// Groups the descriptors by effective `hits_addend`. One group (the usual case) is exactly
/// Limitador's single check; several groups are what envoyproxy/ratelimit does with a
/// descriptor-level `hits_addend`, e.g. a request counted while a token budget is only checked.
fn groups(descriptors: &[RateLimitDescriptor], addends: &[u64], request_level: u64) -> Vec<Group> {
    let maps = descriptor_maps(descriptors);
    let distinct: BTreeSet<u64> = addends.iter().copied().collect();
    if distinct.len() <= 1 {
        return vec![Group {
            hits_addend: distinct.into_iter().next().unwrap_or(request_level),
            ctx_maps: maps,
        }];
    }
    distinct
        .into_iter()
        .map(|addend| Group {
            hits_addend: addend,
            ctx_maps: maps
                .iter()
                .zip(addends)
                .map(|(m, a)| {
                    if *a == addend {
                        m.clone()
                    } else {
                        HashMap::new()
                    }
                })
                .collect(),
        })
        .collect()
}

/// What one group's check found: its counters and, for each, whether it is the one over.
struct Checked {
    counters: Vec<Counter>,
    over: Vec<bool>,
    limited: bool,
}

#[tonic::async_trait]
impl RateLimitService for RlsService {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let req = request.into_inner();
        if req.domain.is_empty() {
            return Ok(Response::new(RateLimitResponse {
                overall_code: Code::Unknown.into(),
                ..Default::default()
            }));
        }
        let addends = self.hits_addends(&req)?;
        let request_level = match req.hits_addend {
            0 if self.options.unset_hits_addend_is_one => 1,
            n => u64::from(n),
        };
        let groups = groups(&req.descriptors, &addends, request_level);
        let namespace = Namespace::from(req.domain.as_str());
        let context = |group: &Group| {
            let mut ctx = Context::default();
            ctx.list_binding("descriptors".to_string(), group.ctx_maps.clone());
            ctx
        };
        let unavailable = |e: limitador::errors::LimitadorError| {
            eprintln!("rls-server: storage error: {e}");
            Status::unavailable("Service unavailable")
        };
        let checked = |result: limitador::CheckResult, delta: u64| {
            let over = result
                .counters
                .iter()
                .map(|c| result.limited && c.remaining().unwrap_or(c.max_value()) < delta)
                .collect();
            Checked {
                limited: result.limited,
                over,
                counters: result.counters,
            }
        };

        let mut results: Vec<Checked> = Vec::with_capacity(groups.len());
        if let [group] = groups.as_slice() {
            // One check, atomic in Limitador: check only, or check and count.
            let ctx = context(group);
            let result = if group.hits_addend == 0 {
                let r = self
                    .limiter
                    .is_rate_limited(&namespace, &ctx, 1)
                    .await
                    .map_err(unavailable)?;
                checked(r, 1)
            } else {
                let r = self
                    .limiter
                    .check_rate_limited_and_update(&namespace, &ctx, group.hits_addend)
                    .await
                    .map_err(unavailable)?;
                checked(r, group.hits_addend)
            };
            results.push(result);
        } else {
            // Several addends: every group is checked first, and only a request every group
            // admits is counted (all-or-nothing, like one Limitador check).
            for group in &groups {
                let delta = group.hits_addend.max(1);
                let r = self
                    .limiter
                    .is_rate_limited(&namespace, &context(group), delta)
                    .await
                    .map_err(unavailable)?;
                results.push(checked(r, delta));
            }
            let admitted = !results.iter().any(|r| r.limited);
            for (group, result) in groups.iter().zip(results.iter_mut()) {
                if group.hits_addend == 0 || !admitted {
                    continue;
                }
                self.limiter
                    .update_counters(&namespace, &context(group), group.hits_addend)
                    .await
                    .map_err(unavailable)?;
                for c in result.counters.iter_mut() {
                    let left = c.remaining().unwrap_or(c.max_value());
                    c.set_remaining(left.saturating_sub(group.hits_addend));
                }
            }
        }
        let limited = results.iter().any(|r| r.limited);
        if limited && self.options.count_over_limit {
            for (group, result) in groups.iter().zip(results.iter_mut()) {
                if group.hits_addend == 0 {
                    continue;
                }
                self.limiter
                    .update_counters(&namespace, &context(group), group.hits_addend)
                    .await
                    .map_err(unavailable)?;
                for c in result.counters.iter_mut() {
                    let left = c.remaining().unwrap_or(c.max_value());
                    c.set_remaining(left.saturating_sub(group.hits_addend));
                }
            }
        }

        let n = req.descriptors.len();
        let counters: Vec<(&Counter, bool)> = results
            .iter()
            .flat_map(|r| r.counters.iter().zip(r.over.iter().copied()))
            .collect();
        let statuses = (0..n).map(|i| descriptor_status(i, n, &counters)).collect();
        Ok(Response::new(RateLimitResponse {
            overall_code: if limited { Code::OverLimit } else { Code::Ok }.into(),
            statuses,
            ..Default::default()
        }))
    }
}

/// One `key -> value` map per descriptor, as limitador-server builds them.
fn descriptor_maps(descriptors: &[RateLimitDescriptor]) -> Vec<HashMap<String, String>> {
    descriptors
        .iter()
        .map(|d| {
            d.entries
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect()
        })
        .collect()
}

/// The descriptor indices a limit mentions (`descriptors[N]` in its conditions or variables,
/// and `descriptors[size(descriptors) - 1]`, the last of the `count` descriptors); empty when it
/// mentions none.
fn descriptor_indices(limit: &Limit, count: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    for text in limit.conditions().into_iter().chain(limit.variables()) {
        let mut rest = text.as_str();
        while let Some(pos) = rest.find("descriptors[") {
            rest = &rest[pos + "descriptors[".len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() && rest[digits.len()..].starts_with(']') {
                if let Ok(n) = digits.parse() {
                    out.insert(n);
                }
                continue;
            }
            let spaceless: String = rest.chars().filter(|c| !c.is_whitespace()).collect();
            if spaceless.starts_with("size(descriptors)-1]") && count > 0 {
                out.insert(count - 1);
            }
        }
    }
    out
}

fn descriptor_status(
    index: usize,
    count: usize,
    counters: &[(&Counter, bool)],
) -> DescriptorStatus {
    let best = counters
        .iter()
        .filter(|(c, _)| {
            let idx = descriptor_indices(c.limit(), count);
            idx.is_empty() || idx.contains(&index)
        })
        .min_by_key(|(c, over)| (!*over, c.remaining().unwrap_or(c.max_value())));
    let Some((counter, over)) = best else {
        return DescriptorStatus {
            code: Code::Ok.into(),
            ..Default::default()
        };
    };
    let limit = counter.limit();
    let expires = counter.expires_in().unwrap_or(counter.window());
    DescriptorStatus {
        code: if *over { Code::OverLimit } else { Code::Ok }.into(),
        current_limit: Some(RateLimit {
            name: limit
                .name()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/{}s", limit.max_value(), limit.seconds())),
            requests_per_unit: u32::try_from(limit.max_value()).unwrap_or(u32::MAX),
            unit: unit_for(limit.seconds()).into(),
        }),
        limit_remaining: u32::try_from(counter.remaining().unwrap_or(counter.max_value()))
            .unwrap_or(u32::MAX),
        duration_until_reset: Some(PbDuration {
            seconds: i64::try_from(expires.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(expires.subsec_nanos()).unwrap_or(0),
        }),
        quota: None,
    }
}

fn unit_for(seconds: u64) -> Unit {
    match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3_600 => Unit::Hour,
        86_400 => Unit::Day,
        604_800 => Unit::Week,
        _ => Unit::Unknown,
    }
}

/// Serves `service` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, service: RlsService) -> Result<(), String> {
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(service))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await
        .map_err(|e| format!("server error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_descriptor_indices() {
        let limit = Limit::new(
            "ns",
            3,
            60,
            vec!["descriptors[0].agent == 'a'".try_into().unwrap()],
            vec!["descriptors[2]['client']".try_into().unwrap()],
        );
        assert_eq!(descriptor_indices(&limit, 3), BTreeSet::from([0, 2]));
        let global = Limit::new("ns", 3, 60, Vec::new(), Vec::new());
        assert!(descriptor_indices(&global, 1).is_empty());
        let last = Limit::new(
            "ns",
            3,
            60,
            vec!["descriptors[size(descriptors) - 1].budget == 'tokens'"
                .try_into()
                .unwrap()],
            Vec::new(),
        );
        assert_eq!(descriptor_indices(&last, 2), BTreeSet::from([1]));
        assert_eq!(descriptor_indices(&last, 1), BTreeSet::from([0]));
    }

    #[test]
    fn units() {
        assert_eq!(unit_for(60), Unit::Minute);
        assert_eq!(unit_for(604_800), Unit::Week);
        assert_eq!(unit_for(30), Unit::Unknown);
    }
}
