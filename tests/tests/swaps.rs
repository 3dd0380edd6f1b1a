//! Configuration swaps under load: the plugin configuration delivered by
//! ECDS from a watched file (envoy/ecds.yaml) changes 100 times while
//! keep-alive clients keep sending. No request may fail; each new
//! configuration takes effect (its own routes answer, the old one's stop)
//! within a second or so; an invalid one is refused with the previous one
//! still serving; and a rate limit bucket keeps its state across swaps,
//! whether its limit changed or not (a changed limit keeps the balance,
//! capped: two configurations serving at once must not refill it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentroute_tests::{spawn_agent, try_send, Connection, Gateway, GatewayConfig, Shape};
use bytes::Bytes;

const SWAPS: usize = 100;
/// Every this many swaps, an invalid configuration is delivered too.
const INVALID_EVERY: usize = 10;
/// How long a new configuration may take to be in effect everywhere.
const TAKES_EFFECT: Duration = Duration::from_secs(2);
const LOAD_CONNECTIONS: usize = 8;

/// Entries in both configurations: `stable` (the load), `kept` (a limit
/// that stays the same), `changed` (a limit that differs); plus one entry
/// only this configuration has.
fn config(only: &str, changed_burst: u32) -> String {
    format!(
        r#"{{ "agents": [
  {{ "name": "stable", "namespace": "prod", "backend": "stable", "models": ["stable-model"],
     "hosts": ["stable.example.com"], "prefixes": [ {{ "prefix": "/support" }} ] }},
  {{ "name": "kept", "namespace": "prod", "backend": "stable",
     "rate_limit": {{ "requests_per_second": 0.001, "burst": 3 }} }},
  {{ "name": "changed", "namespace": "prod", "backend": "stable",
     "rate_limit": {{ "requests_per_second": 0.001, "burst": {changed_burst} }} }},
  {{ "name": "{only}", "namespace": "prod", "backend": "{only}" }}
] }}"#
    )
}

/// An invalid configuration, a different one each time: Envoy remembers a
/// configuration that failed and refuses it again without asking the
/// plugin (so without the plugin's log line).
fn invalid_config(n: usize) -> String {
    format!(
        r#"{{ "agents": [ {{ "name": "stable{n}", "namespace": "prod", "bakend": "stable" }} ] }}"#
    )
}
const REFUSAL: &str = "invalid configuration: agents[0].bakend: unknown field";

/// What the load sends: every layout of the entry both configurations
/// keep, and an OpenAI request dispatched by the model in its body (a
/// stream paused for its body while the configuration changes).
const LOAD: [(&str, &str, &str); 5] = [
    ("GET", "gateway.test", "/prod/agent/stable/a"),
    ("GET", "gateway.test", "/prod/stable/b?x=1"),
    ("GET", "gateway.test", "/support/c"),
    ("GET", "stable.example.com", "/d"),
    ("POST", "gateway.test", "/v1/chat/completions"),
];
const CHAT: &str = r#"{"model":"stable-model","messages":[{"role":"user","content":"hi"}]}"#;

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    reconnects: AtomicU64,
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn fail(&self, what: String) {
        if let Ok(mut failures) = self.failures.lock() {
            *failures.entry(what).or_default() += 1;
        }
    }
}

/// One keep-alive client sending [`LOAD`] until `stop`; anything but a 200
/// from `stable` is a failure.
async fn load(gw: std::net::SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut conn: Option<Connection> = None;
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_none_or(Connection::is_closed) {
            if conn.is_some() {
                tally.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            match Connection::open(gw).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tally.fail(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let (method, host, path) = LOAD[n % LOAD.len()];
        n += 1;
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let (headers, body) = match method {
            "POST" => (
                vec![("host", host), ("content-type", "application/json")],
                Bytes::from_static(CHAT.as_bytes()),
            ),
            _ => (vec![("host", host)], Bytes::new()),
        };
        match c.send(method, path, &headers, body).await {
            Ok(r) if r.status == 200 && r.header("x-served-by") == Some("stable") => {}
            Ok(r) => tally.fail(format!("{host}{path}: {} {}", r.status, r.text())),
            Err(e) => {
                tally.fail(format!("{host}{path}: {e}"));
                conn = None;
            }
        }
    }
}

async fn status(gw: &Gateway, path: &str) -> u16 {
    match try_send(gw.addr, "GET", path, &[], Bytes::new()).await {
        Ok(r) => r.status,
        Err(_) => 0,
    }
}

/// Waits until `path` answers `want` three times in a row (every worker has
/// the configuration); returns how long that took.
async fn until(gw: &Gateway, path: &str, want: u16) -> Duration {
    let start = Instant::now();
    let mut in_a_row = 0;
    loop {
        let got = status(gw, path).await;
        in_a_row = if got == want { in_a_row + 1 } else { 0 };
        if in_a_row == 3 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < TAKES_EFFECT,
            "{path}: {got}, want {want} after {TAKES_EFFECT:?}\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Takes the bucket's tokens until a 429.
async fn drain(gw: &Gateway, path: &str) -> usize {
    for admitted in 0..100 {
        if status(gw, path).await == 429 {
            return admitted;
        }
    }
    panic!("{path} never limited");
}

#[tokio::test]
async fn hundred_swaps_under_load_lose_nothing() {
    let a = config("only-a", 3);
    let b = config("only-b", 4);
    let stable = spawn_agent("stable").await;
    let mut cfg = GatewayConfig::new(a.clone())
        .shape(Shape::Ecds)
        .cluster("stable", stable)
        .cluster("only-a", spawn_agent("only-a").await)
        .cluster("only-b", spawn_agent("only-b").await);
    cfg.allow_stop_iteration = true;
    let mut gw = Gateway::start(cfg).await;
    until(&gw, "/prod/agent/only-a/x", 200).await;

    // Buckets drained under A: `kept` keeps its limit in B, `changed` not.
    assert_eq!(drain(&gw, "/prod/agent/kept/x").await, 3);
    assert_eq!(drain(&gw, "/prod/agent/changed/x").await, 3);

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..LOAD_CONNECTIONS)
        .map(|_| tokio::spawn(load(gw.addr, stop.clone(), tally.clone())))
        .collect();

    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut invalid = 0;
    for swap in 1..=SWAPS {
        let (next, new, removed) = if swap % 2 == 1 {
            (&b, "/prod/agent/only-b/x", "/prod/agent/only-a/x")
        } else {
            (&a, "/prod/agent/only-a/x", "/prod/agent/only-b/x")
        };
        gw.update_plugin_config(next);
        slowest = slowest.max(until(&gw, new, 200).await);
        slowest = slowest.max(until(&gw, removed, 404).await);

        if swap == 1 {
            // B is in: both limits are still drained; the changed one kept
            // its (empty) balance rather than starting over.
            assert_eq!(status(&gw, "/prod/agent/kept/x").await, 429);
            assert_eq!(status(&gw, "/prod/agent/changed/x").await, 429);
        }
        if swap % INVALID_EVERY == 0 {
            let refusals = gw.log().matches(REFUSAL).count();
            gw.update_plugin_config(&invalid_config(swap));
            let deadline = Instant::now() + TAKES_EFFECT;
            while gw.log().matches(REFUSAL).count() == refusals {
                assert!(Instant::now() < deadline, "no refusal logged\n{}", gw.log());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            invalid += 1;
            // Refused: what `next` routes still routes, its removed entry
            // stays removed.
            assert_eq!(status(&gw, new).await, 200, "after invalid #{invalid}");
            assert_eq!(status(&gw, removed).await, 404, "after invalid #{invalid}");
        }
    }
    let elapsed = started.elapsed();
    // Back on A after an even number of swaps: neither bucket was refilled
    // by a hundred swaps between two limits.
    assert_eq!(status(&gw, "/prod/agent/kept/x").await, 429);
    assert_eq!(status(&gw, "/prod/agent/changed/x").await, 429);

    // Let the clients go on a little on the last configuration, then stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("load client");
    }
    let requests = tally.requests.load(Ordering::Relaxed);
    let failures = tally.failures.lock().map(|f| f.clone()).unwrap_or_default();
    eprintln!(
        "{SWAPS} swaps and {invalid} invalid configurations in {elapsed:.1?} under {requests} \
         requests on {LOAD_CONNECTIONS} keep-alive connections ({} reconnects): \
         {} failed; slowest swap to take effect {slowest:?}",
        tally.reconnects.load(Ordering::Relaxed),
        failures.values().sum::<u64>()
    );
    assert!(failures.is_empty(), "failed requests: {failures:#?}");
    assert!(requests > 1000, "the load did not run: {requests} requests");
    assert_eq!(invalid, SWAPS / INVALID_EVERY);
}
