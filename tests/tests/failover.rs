//! Failover across backends through a real Envoy with two workers: a
//! backend answering 503, 429 (with and without `retry-after`), a closed
//! port and a timeout is ejected for every worker; the failed request
//! itself reaches the next backend on Envoy >= 1.39 (the matcher route of
//! envoy/demo.yaml, `refresh_cluster_on_retry`), while older Envoys show
//! passive ejection only; the ejection ends after its window; all ejected,
//! the one back first is used; an SSE stream failing before its first
//! byte is retried, one failing after it is not; client-sent slot headers
//! never steer anything.
//!
//! The demo agents fail on demand: `?fail=NAME` makes the agent NAME fail
//! while the others answer (agent/src/lib.rs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use agentroute::observe::Field;
use agentroute_tests::{envoy_bin, spawn_agent, Gateway, GatewayConfig, Response};
use serde_json::{json, Value};

/// The Envoy under test is at least 1.39 (`refresh_cluster_on_retry`).
fn retries_across_clusters() -> bool {
    let out = std::process::Command::new(envoy_bin())
        .arg("--version")
        .output()
        .expect("envoy --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "/path/to/envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL" (the
    // program's path has slashes too: read after "version:").
    let version = text
        .split("version:")
        .nth(1)
        .and_then(|v| v.trim().split('/').nth(1))
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    let number = |p: Option<&str>| -> u32 {
        p.and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no version in {text:?}"))
    };
    let mut parts = version.split('.');
    let (major, minor) = (number(parts.next()), number(parts.next()));
    (major, minor) >= (1, 39)
}

/// A `HttpRequestHeaderMatchInput` matcher from `header`'s value to the
/// cluster of that name.
fn slot_matcher(header: &str, clusters: &[&str]) -> Value {
    let map: serde_json::Map<String, Value> = clusters
        .iter()
        .map(|c| {
            (
                c.to_string(),
                json!({ "action": { "name": c, "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction",
                    "cluster": c } } }),
            )
        })
        .collect();
    json!({ "matcher_tree": {
        "input": { "name": header, "typed_config": {
            "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
            "header_name": header } },
        "exact_match_map": { "map": map } } })
}

/// The failover routes of envoy/demo.yaml for `backups` backups: attempt 1
/// from `x-agent-backend`, attempt n+1 from `x-agent-backend-(n+1)` (at
/// the refresh, `x-envoy-attempt-count` still holds the attempt that
/// failed).
fn failover_route(backups: usize, clusters: &[&str]) -> Value {
    let mut attempts = serde_json::Map::new();
    for n in 1..=backups {
        attempts.insert(
            n.to_string(),
            json!({ "matcher": slot_matcher(&format!("x-agent-backend-{}", n + 1), clusters) }),
        );
    }
    json!({
        "match": { "prefix": "/", "headers": [
            { "name": format!("x-agent-backend-{}", backups + 1), "present_match": true } ] },
        "route": {
            "timeout": "0s",
            "inline_cluster_specifier_plugin": { "extension": {
                "name": "envoy.router.cluster_specifier_plugin.matcher",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier",
                    "cluster_matcher": {
                        "matcher_tree": {
                            "input": { "name": "attempt", "typed_config": {
                                "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                                "header_name": "x-envoy-attempt-count" } },
                            "exact_match_map": { "map": attempts } },
                        "on_no_match": { "matcher": slot_matcher("x-agent-backend", clusters) } } } } },
            "retry_policy": {
                "retry_on": "5xx,reset,connect-failure,retriable-status-codes",
                "retriable_status_codes": [429],
                "num_retries": backups,
                "refresh_cluster_on_retry": true } }
    })
}

/// Closed port: bound, then dropped.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Agents `a`, `b`, `c` (demo agents named so), `dead` (closed port);
/// entries as `agents`. On Envoy >= 1.39 the failover routes go in front.
async fn start(agents: Value) -> Gateway {
    start_logged(agents, None).await
}

/// [`start`], with a JSON access log of the failover fields to `log`.
async fn start_logged(agents: Value, log: Option<PathBuf>) -> Gateway {
    let plugin = json!({ "observability": { "access_log": true }, "agents": agents }).to_string();
    let cfg = GatewayConfig::new(plugin)
        .cluster("a", spawn_agent("a").await)
        .cluster("b", spawn_agent("b").await)
        .cluster("c", spawn_agent("c").await)
        .cluster("dead", closed_port())
        .cluster("cut", cut_mid_headers().await);
    let retries = retries_across_clusters();
    let cfg = cfg.patch_bootstrap(move |b| {
        let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        if let Some(path) = &log {
            let format: serde_json::Map<String, Value> = [
                Field::Backend,
                Field::FailoverRetries,
                Field::BackendsTried,
            ]
            .iter()
            .map(|f| (f.json_key().to_string(), json!(f.access_log_command())))
            .chain([("path".to_string(), json!("%REQ(:PATH)%"))])
            .collect();
            hcm["access_log"] = json!([ { "name": "envoy.access_loggers.file", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path, "log_format": { "json_format": format } } } ]);
        }
        if retries {
            let vhost = &mut hcm["route_config"]["virtual_hosts"][0];
            vhost["include_request_attempt_count"] = json!(true);
            vhost["include_attempt_count_in_response"] = json!(true);
            let clusters = ["a", "b", "c", "dead", "cut"];
            if let Some(routes) = vhost["routes"].as_array_mut() {
                routes.insert(0, failover_route(1, &clusters));
                routes.insert(0, failover_route(2, &clusters));
            }
        }
    });
    Gateway::start(cfg).await
}

/// An upstream that closes every connection in the middle of its
/// answer's headers.
async fn cut_mid_headers() -> SocketAddr {
    agentroute_tests::spawn_scripted(|_head, mut stream| async move {
        use tokio::io::AsyncWriteExt;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-ty").await;
        let _ = stream.flush().await;
        // Dropped here: the connection closes with the headers half sent.
    })
    .await
}

fn served_by(r: &Response) -> String {
    r.header("x-served-by").unwrap_or_default().to_string()
}

/// Which backend `n` fresh connections reach (each a new connection, so
/// both workers answer some).
async fn backends(gw: &Gateway, path: &str, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let r = gw.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        seen.push(served_by(&r));
    }
    seen.sort();
    seen.dedup();
    seen
}

const ONE: fn(&str) -> Vec<String> = |s| vec![s.to_string()];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_on_the_next_backend_and_ejects_the_first_for_every_worker() {
    let gw = start(json!([
        { "name": "main", "backend": "a", "failover": { "backends": ["b", "c"], "eject": "2s" } }
    ]))
    .await;
    // Both workers' VMs are up (one that starts later loads the records
    // instead of being told).
    gw.wait_workers_configured(2, Duration::from_secs(10))
        .await
        .unwrap_or_else(|log| panic!("{log}"));
    assert_eq!(backends(&gw, "/main/x", 4).await, ONE("a"));
    let r = gw.get("/main/x?fail=a").await;
    if retries_across_clusters() {
        assert_eq!((r.status, served_by(&r)), (200, "b".into()), "{}", r.text());
    } else {
        // Envoy < 1.39: the failure reaches the client; ejection follows.
        assert_eq!((r.status, served_by(&r)), (503, "a".into()));
    }
    // Both workers skip `a` now (many connections): the worker that
    // ejected it told the other through its queue (no worker reads the
    // records per request or on its tick while it has a queue).
    assert_eq!(backends(&gw, "/main/x", 8).await, ONE("b"));
    gw.wait_log(
        r#"failover: backend "a" ejected by another worker"#,
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|log| panic!("{log}"));
    let ejections = r#"agentroute_failover_ejections_total{namespace="default",agent="main",kind="agent",backend="a"}"#;
    gw.wait_metric(ejections, 1.0).await;
    if retries_across_clusters() {
        gw.wait_metric(
            r#"agentroute_failover_retries_total{namespace="default",agent="main",kind="agent",backend="b"}"#,
            1.0,
        )
        .await;
    }
    // The window ends: `a` again, everywhere.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(backends(&gw, "/main/x", 8).await, ONE("a"));
    assert!(
        agentroute_tests::wasm_failures(&gw.log()).is_empty(),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_ejects_for_eject_or_a_longer_retry_after() {
    let gw = start(json!([
        { "name": "main", "backend": "a", "failover": { "backends": ["b"], "eject": "2s" } }
    ]))
    .await;
    // Without retry-after: `eject` (2s).
    let r = gw.get("/main/x?fail=a&fail_status=429").await;
    let want = if retries_across_clusters() {
        (200, "b")
    } else {
        (429, "a")
    };
    assert_eq!((r.status, served_by(&r).as_str()), want);
    assert_eq!(backends(&gw, "/main/x", 4).await, ONE("b"));
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(backends(&gw, "/main/x", 4).await, ONE("a"));
    // retry-after: 3 is longer than `eject`: still skipped after 1.5 s. On
    // a retried request the retry-after of an earlier attempt is gone
    // (Envoy keeps only the last answer): `retry: false` shows it.
    let gw2 = start(json!([
        { "name": "once", "backend": "a", "failover": { "backends": ["b"], "eject": "1s", "retry": false } }
    ]))
    .await;
    let r = gw2
        .get("/once/x?fail=a&fail_status=429&retry_after=3")
        .await;
    assert_eq!(
        (r.status, r.header("retry-after")),
        (429, Some("3")),
        "the answer unchanged"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(backends(&gw2, "/once/x", 4).await, ONE("b"));
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert_eq!(backends(&gw2, "/once/x", 4).await, ONE("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_a_reset_mid_headers_and_a_timeout_are_failures_when_on_says_so() {
    let gw = start(json!([
        { "name": "down", "backend": "dead", "failover": { "backends": ["b"], "eject": "5s" } },
        { "name": "torn", "backend": "cut", "failover": { "backends": ["b"], "eject": "5s" } },
        { "name": "slow", "backend": "a", "timeout": "300ms",
          "failover": { "backends": ["b"], "on": ["5xx", "timeout"], "eject": "5s" } },
        { "name": "patient", "backend": "c", "timeout": "300ms",
          "failover": { "backends": ["b"], "eject": "5s" } }
    ]))
    .await;
    // Reset in the middle of the answer's headers: nothing reached the
    // client, so it is retried.
    let r = gw.get("/torn/x").await;
    if retries_across_clusters() {
        assert_eq!((r.status, served_by(&r)), (200, "b".into()), "{}", r.text());
    } else {
        // Envoy's answer for a torn head: 502 (protocol error) or 503.
        assert!(matches!(r.status, 502 | 503), "{}", r.status);
    }
    assert_eq!(backends(&gw, "/torn/x", 4).await, ONE("b"));

    let r = gw.get("/down/x").await;
    if retries_across_clusters() {
        assert_eq!((r.status, served_by(&r)), (200, "b".into()), "{}", r.text());
    } else {
        assert_eq!(r.status, 503);
    }
    assert_eq!(backends(&gw, "/down/x", 4).await, ONE("b"));
    // The gauge, from the shared records on each tick (`eject` 5 s here:
    // longer than the wait for a tick).
    gw.wait_metric(
        r#"agentroute_failover_ejected_backends{namespace="default",agent="down",kind="agent"}"#,
        1.0,
    )
    .await;

    // A timeout is not retried (the request's time is up) but ejects.
    let r = gw.get("/slow/x?fail=a&fail_delay_ms=1000").await;
    assert_eq!(r.status, 504);
    assert_eq!(backends(&gw, "/slow/x", 4).await, ONE("b"));
    // Not in `on` (the default): no ejection.
    let r = gw.get("/patient/x?fail=c&fail_delay_ms=1000").await;
    assert_eq!(r.status, 504);
    assert_eq!(backends(&gw, "/patient/x", 4).await, ONE("c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_ejected_the_one_back_first_answers() {
    let gw = start(json!([
        { "name": "once", "backend": "a", "failover": { "backends": ["b"], "eject": "1s", "retry": false } }
    ]))
    .await;
    // `a` out for 5 s (its retry-after), then `b` for 1 s.
    let r = gw.get("/once/x?fail=a&retry_after=5").await;
    assert_eq!(r.status, 503);
    assert_eq!(backends(&gw, "/once/x", 2).await, ONE("b"));
    let r = gw.get("/once/x?fail=b").await;
    assert_eq!((r.status, served_by(&r)), (503, "b".into()));
    // Both ejected: `b` comes back first, so it answers; never a refusal.
    assert_eq!(backends(&gw, "/once/x", 4).await, ONE("b"));
    // Retried through every backend, all failing: the last backend's
    // answer reaches the client unchanged.
    if retries_across_clusters() {
        let gw = start(json!([
            { "name": "main", "backend": "a", "failover": { "backends": ["b"], "eject": "1s" } }
        ]))
        .await;
        let r = gw.get("/main/x?fail=a,b&fail_status=502").await;
        assert_eq!((r.status, served_by(&r)), (502, "b".into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_is_retried_before_its_first_byte_only() {
    let gw = start(json!([
        { "name": "main", "backend": "a", "failover": { "backends": ["b"], "eject": "1s" } },
        { "name": "other", "backend": "c", "failover": { "backends": ["b"], "eject": "1s" } }
    ]))
    .await;
    let r = gw.get("/main/sse?chunks=3&interval_ms=10&fail=a").await;
    if retries_across_clusters() {
        assert_eq!((r.status, served_by(&r)), (200, "b".into()));
        assert!(r.text().contains("[DONE]"), "{}", r.text());
    } else {
        assert_eq!(r.status, 503);
    }
    // Failing after the first event: the client has bytes, Envoy does not
    // retry; the stream is cut.
    let raw = agentroute_tests::send_raw(
        gw.addr,
        "GET /other/sse?fail=c&fail_after=2 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("x-served-by: c"), "{raw}");
    assert!(
        raw.contains(r#"{"n":1}"#) && !raw.contains("[DONE]"),
        "{raw}"
    );
    // The cut counts as a reset of `c`: new requests go to `b`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(backends(&gw, "/other/x", 4).await, ONE("b"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_slot_headers_and_attempt_counts_steer_nothing() {
    let gw = start(json!([
        { "name": "main", "backend": "a", "failover": { "backends": ["b"] } },
        { "name": "plain", "backend": "c" }
    ]))
    .await;
    let sent = [
        ("x-agent-backend-2", "dead"),
        ("x-agent-backend-3", "dead"),
        ("x-envoy-attempt-count", "1"),
    ];
    let r = gw.request("GET", "/main/x?echo", &sent, "").await;
    assert_eq!((r.status, served_by(&r)), (200, "a".into()), "{}", r.text());
    let seen = r.json()["headers"].clone();
    assert_eq!(seen["x-agent-backend-2"], json!("b"), "{seen}");
    assert!(seen.get("x-agent-backend-3").is_none(), "{seen}");
    let r = gw.request("GET", "/plain/x?echo", &sent, "").await;
    assert_eq!((r.status, served_by(&r)), (200, "c".into()));
    let seen = r.json()["headers"].clone();
    assert!(seen.get("x-agent-backend-2").is_none(), "{seen}");
    assert!(seen.get("x-agent-backend-3").is_none(), "{seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_backends_tried() {
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("access.log");
    let gw = start_logged(
        json!([ { "name": "main", "backend": "a", "failover": { "backends": ["b", "c"] } } ]),
        Some(log.clone()),
    )
    .await;
    assert_eq!(gw.get("/main/ok").await.status, 200);
    let r = gw.get("/main/failed?fail=a").await;
    assert_eq!(gw.get("/main/after").await.status, 200);
    let mut lines: Vec<Value> = Vec::new();
    // Envoy writes access logs out every 10 s.
    for _ in 0..120 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        lines = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .cloned()
            .unwrap_or_else(|| {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("no line for {path}: {text}")
            })
    };
    let ok = line("/ok");
    assert_eq!(
        (
            &ok["backend"],
            &ok["failover_retries"],
            &ok["backends_tried"]
        ),
        (&json!("a"), &json!("0"), &json!("a"))
    );
    let failed = line("/failed?fail=a");
    if retries_across_clusters() {
        assert_eq!(r.status, 200);
        assert_eq!(
            (&failed["failover_retries"], &failed["backends_tried"]),
            (&json!("1"), &json!("a,b"))
        );
    } else {
        assert_eq!(r.status, 503);
        assert_eq!(
            (&failed["failover_retries"], &failed["backends_tried"]),
            (&json!("0"), &json!("a"))
        );
    }
}
