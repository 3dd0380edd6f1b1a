//! End to end: a real `redis-server` on a free loopback port, the `rls-server` binary in front of
//! it, and a tonic client speaking `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`.
//! Fails when `redis-server` is not installed (`make setup` installs it): a
//! test that passes without the service it tests proves nothing.

use std::process::Stdio;
use std::time::Duration;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::UInt64Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// The limits file the tests use: Limitador's own format, as a user would give Limitador.
const LIMITS: &str = r#"
# 3 requests a minute per agent and client; not the token-budget descriptor.
- namespace: agentroute
  name: requests-per-client
  max_value: 3
  seconds: 60
  conditions:
    - "descriptors[0].kind == 'llm'"
    - "!('budget' in descriptors[0])"
  variables:
    - "descriptors[0].agent"
    - "descriptors[0].client"
# 10 tokens a minute per agent and client, for the budget=tokens descriptor.
- namespace: agentroute
  name: tokens-per-client
  max_value: 10
  seconds: 60
  conditions:
    - "descriptors[0].budget == 'tokens'"
  variables:
    - "descriptors[0].agent"
    - "descriptors[0].client"
# agentroute's token budget: the budget=tokens descriptor is the last one, both at admission
# (after the request descriptor) and in the usage report (alone).
- namespace: agentroute
  name: budget-per-client
  max_value: 10
  seconds: 60
  conditions:
    - "descriptors[size(descriptors) - 1].budget == 'tokens'"
    - "descriptors[size(descriptors) - 1].agent == 'default/budgeted'"
  variables:
    - "descriptors[size(descriptors) - 1].client"
# A limit on a second descriptor, for the multi-descriptor request.
- namespace: agentroute
  max_value: 1
  seconds: 3600
  conditions:
    # One condition, so `&&` guards the index: conditions are evaluated in no set order, and
    # an out-of-range index is an error (Limitador panics on it), not false.
    - "size(descriptors) > 1 && descriptors[1].scope == 'team'"
  variables:
    - "descriptors[1].team"
"#;

struct Harness {
    _dir: tempfile::TempDir,
    _redis: Child,
    _rls: Child,
    client: RateLimitServiceClient<Channel>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_installed() -> bool {
    std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn start(extra_args: &[&str]) -> Harness {
    assert!(
        redis_installed(),
        "redis-server is not installed (Debian: apt-get install redis-server; `make setup` installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redis = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start redis-server");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis-server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let limits = dir.path().join("limits.yaml");
    std::fs::write(&limits, LIMITS).unwrap();
    let mut rls = Command::new(env!("CARGO_BIN_EXE_rls-server"))
        .args(["--listen", "127.0.0.1:0"])
        .arg("--redis")
        .arg(format!("redis://127.0.0.1:{port}"))
        .arg("--limits")
        .arg(&limits)
        .args(extra_args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start rls-server");
    let mut lines = BufReader::new(rls.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("rls-server did not say it was listening")
        .unwrap()
        .expect("rls-server exited");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let client = RateLimitServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Harness {
        _dir: dir,
        _redis: redis,
        _rls: rls,
        client,
    }
}

fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

fn request_desc(client: &str) -> RateLimitDescriptor {
    descriptor(&[
        ("agent", "default/chat"),
        ("kind", "llm"),
        ("client", client),
    ])
}

fn tokens_desc(client: &str) -> RateLimitDescriptor {
    descriptor(&[
        ("agent", "default/chat"),
        ("kind", "llm"),
        ("client", client),
        ("budget", "tokens"),
    ])
}

impl Harness {
    async fn call(
        &mut self,
        descriptors: Vec<RateLimitDescriptor>,
        hits_addend: u32,
    ) -> RateLimitResponse {
        self.client
            .should_rate_limit(RateLimitRequest {
                domain: "agentroute".into(),
                descriptors,
                hits_addend,
            })
            .await
            .expect("ShouldRateLimit")
            .into_inner()
    }
}

fn code(r: &RateLimitResponse) -> Code {
    Code::try_from(r.overall_code).unwrap()
}

#[tokio::test]
async fn admits_three_then_over_limit_with_statuses() {
    let mut h = start(&[]).await;
    for remaining in [2, 1, 0] {
        let r = h.call(vec![request_desc("a")], 1).await;
        assert_eq!(code(&r), Code::Ok);
        assert_eq!(r.statuses.len(), 1);
        let s = &r.statuses[0];
        assert_eq!(Code::try_from(s.code).unwrap(), Code::Ok);
        let limit = s.current_limit.as_ref().unwrap();
        assert_eq!(limit.requests_per_unit, 3);
        assert_eq!(Unit::try_from(limit.unit).unwrap(), Unit::Minute);
        assert_eq!(limit.name, "requests-per-client");
        assert_eq!(s.limit_remaining, remaining);
        let reset = s.duration_until_reset.unwrap();
        assert!((1..=60).contains(&reset.seconds), "{reset:?}");
    }
    let r = h.call(vec![request_desc("a")], 1).await;
    assert_eq!(code(&r), Code::OverLimit);
    assert_eq!(Code::try_from(r.statuses[0].code).unwrap(), Code::OverLimit);
    assert_eq!(r.statuses[0].limit_remaining, 0);
}

#[tokio::test]
async fn hits_addend_zero_checks_without_counting() {
    let mut h = start(&[]).await;
    for _ in 0..5 {
        let r = h.call(vec![request_desc("a")], 0).await;
        assert_eq!(code(&r), Code::Ok);
        assert_eq!(r.statuses[0].limit_remaining, 3);
    }
    // A descriptor-level hits_addend of 0 (UInt64Value) is check-only too.
    let mut d = request_desc("a");
    d.hits_addend = Some(UInt64Value { value: 0 });
    let r = h.call(vec![d], 7).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 3);
    // Nothing was counted: three real hits still fit.
    for _ in 0..3 {
        assert_eq!(code(&h.call(vec![request_desc("a")], 1).await), Code::Ok);
    }
    // Exhausted: the check-only call now says OVER_LIMIT.
    assert_eq!(
        code(&h.call(vec![request_desc("a")], 0).await),
        Code::OverLimit
    );
}

#[tokio::test]
async fn hits_addend_five_counts_five_token_budget() {
    let mut h = start(&[]).await;
    // Admission: check only.
    let r = h.call(vec![tokens_desc("a")], 0).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 10);
    // Usage report: 5 tokens.
    let r = h.call(vec![tokens_desc("a")], 5).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 5);
    assert_eq!(
        r.statuses[0].current_limit.as_ref().unwrap().name,
        "tokens-per-client"
    );
    let r = h.call(vec![tokens_desc("a")], 5).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 0);
    assert_eq!(
        code(&h.call(vec![tokens_desc("a")], 0).await),
        Code::OverLimit
    );
    // The token descriptor did not touch the request limit of the same client.
    let r = h.call(vec![request_desc("a")], 1).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 2);
}

#[tokio::test]
async fn over_limit_report_is_dropped_unless_count_over_limit() {
    // Limitador semantics: a report that does not fit counts nothing.
    let mut h = start(&[]).await;
    assert_eq!(code(&h.call(vec![tokens_desc("a")], 8).await), Code::Ok);
    assert_eq!(
        code(&h.call(vec![tokens_desc("a")], 5).await),
        Code::OverLimit
    );
    let r = h.call(vec![tokens_desc("a")], 0).await;
    assert_eq!(code(&r), Code::Ok, "the 5 were not counted");
    assert_eq!(r.statuses[0].limit_remaining, 2);

    // envoyproxy/ratelimit semantics: counted anyway.
    let mut h = start(&["--count-over-limit"]).await;
    assert_eq!(code(&h.call(vec![tokens_desc("a")], 8).await), Code::Ok);
    assert_eq!(
        code(&h.call(vec![tokens_desc("a")], 5).await),
        Code::OverLimit
    );
    assert_eq!(
        code(&h.call(vec![tokens_desc("a")], 0).await),
        Code::OverLimit
    );
}

#[tokio::test]
async fn unset_hits_addend_is_one_matches_real_servers() {
    let mut h = start(&["--unset-hits-addend-is-one"]).await;
    let r = h.call(vec![request_desc("a")], 0).await;
    assert_eq!(
        r.statuses[0].limit_remaining, 2,
        "request-level 0 counted 1"
    );
    let mut d = request_desc("a");
    d.hits_addend = Some(UInt64Value { value: 0 });
    let r = h.call(vec![d], 0).await;
    assert_eq!(
        r.statuses[0].limit_remaining, 2,
        "descriptor-level 0 is check-only"
    );
}

#[tokio::test]
async fn clients_are_independent() {
    let mut h = start(&[]).await;
    for _ in 0..3 {
        assert_eq!(code(&h.call(vec![request_desc("a")], 1).await), Code::Ok);
    }
    assert_eq!(
        code(&h.call(vec![request_desc("a")], 1).await),
        Code::OverLimit
    );
    let r = h.call(vec![request_desc("b")], 1).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 2);
    // Another agent's descriptor for client "a" is a different counter too.
    let other = descriptor(&[("agent", "default/other"), ("kind", "llm"), ("client", "a")]);
    assert_eq!(code(&h.call(vec![other], 1).await), Code::Ok);
}

#[tokio::test]
async fn one_status_per_descriptor() {
    let mut h = start(&[]).await;
    let team = descriptor(&[("scope", "team"), ("team", "red")]);
    let r = h.call(vec![request_desc("a"), team.clone()], 1).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses.len(), 2);
    assert_eq!(r.statuses[0].limit_remaining, 2);
    assert_eq!(
        r.statuses[1]
            .current_limit
            .as_ref()
            .unwrap()
            .requests_per_unit,
        1
    );
    assert_eq!(
        Unit::try_from(r.statuses[1].current_limit.as_ref().unwrap().unit).unwrap(),
        Unit::Hour
    );
    assert_eq!(r.statuses[1].limit_remaining, 0);
    // The team limit (descriptor 1) is spent: the whole request is over the limit, and only
    // descriptor 1 says so; descriptor 0 counted nothing (all-or-nothing).
    let r = h.call(vec![request_desc("a"), team], 1).await;
    assert_eq!(code(&r), Code::OverLimit);
    assert_eq!(Code::try_from(r.statuses[0].code).unwrap(), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 2);
    assert_eq!(Code::try_from(r.statuses[1].code).unwrap(), Code::OverLimit);
    // A descriptor no limit applies to: OK, no current_limit.
    let r = h.call(vec![descriptor(&[("nothing", "here")])], 1).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(Code::try_from(r.statuses[0].code).unwrap(), Code::Ok);
    assert!(r.statuses[0].current_limit.is_none());
}

#[tokio::test]
async fn empty_domain_is_unknown_and_negative_hits_rejected() {
    let mut h = start(&[]).await;
    let r = h
        .client
        .should_rate_limit(RateLimitRequest {
            domain: String::new(),
            descriptors: vec![request_desc("a")],
            hits_addend: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r), Code::Unknown);
    let mut d = request_desc("a");
    d.is_negative_hits = true;
    let err = h
        .client
        .should_rate_limit(RateLimitRequest {
            domain: "agentroute".into(),
            descriptors: vec![d],
            hits_addend: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

/// agentroute's admission of a token-budgeted request: the request descriptor counts 1, the
/// budget descriptor (last) is only checked; the usage report names the budget alone.
#[tokio::test]
async fn mixed_addends_count_the_request_and_check_the_budget() {
    let mut h = start(&["--count-over-limit"]).await;
    let request = |client: &str| {
        descriptor(&[
            ("agent", "default/budgeted"),
            ("kind", "llm"),
            ("client", client),
        ])
    };
    let budget = |client: &str, hits: u64| {
        let mut d = descriptor(&[
            ("agent", "default/budgeted"),
            ("kind", "llm"),
            ("client", client),
            ("budget", "tokens"),
        ]);
        d.hits_addend = Some(UInt64Value { value: hits });
        d
    };
    let admission = |client: &str| vec![request(client), budget(client, 0)];
    let r = h.call(admission("a"), 1).await;
    assert_eq!(code(&r), Code::Ok);
    assert_eq!(r.statuses[0].limit_remaining, 2, "the request was counted");
    assert_eq!(
        r.statuses[1].current_limit.as_ref().unwrap().name,
        "budget-per-client"
    );
    assert_eq!(r.statuses[1].limit_remaining, 10, "the budget was not");
    // The report: 12 tokens on a 10-token budget, counted although over.
    h.call(vec![budget("a", 12)], 12).await;
    let r = h.call(admission("a"), 1).await;
    assert_eq!(code(&r), Code::OverLimit);
    assert_eq!(Code::try_from(r.statuses[0].code).unwrap(), Code::Ok);
    assert_eq!(Code::try_from(r.statuses[1].code).unwrap(), Code::OverLimit);
    // Refused, and counted anyway under --count-over-limit (as envoyproxy/ratelimit does).
    let r = h.call(vec![request("a")], 0).await;
    assert_eq!(r.statuses[0].limit_remaining, 1);
}
