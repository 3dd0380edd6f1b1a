//! `make soak`: a bounded, mixed load through real Envoys (`--concurrency
//! 2`) running the built plugin, watching memory and the log.
//!
//! Two gateways share one set of demo agents: one reads the OpenAI model
//! from the body (`allow_on_headers_stop_iteration`), the other from
//! metadata written by `json_to_metadata` placed before the filter. The mix
//! covers every URL layout, host and prefix routes, OpenAI dispatch (both
//! model sources, agents as models, `/v1/models`, unknown models), refused
//! dot-segments, unmatched paths, a rate-limited entry, server-sent events
//! (the agent's `/sse` and OpenAI `stream: true`), agent cards, and
//! WebSocket upgrades. Every answer is checked: the status the request
//! must get, the agent that must serve it and the path it must see.
//!
//! Every second it samples each Envoy's RSS (`/proc/PID/status`) and the
//! plugin's largest VM memory (the `agentroute_vm_memory_bytes` gauge). It
//! fails (exit 1) on an unexpected status or answer, a connection error or
//! hang, a rate limit admitting more than `burst + rate × elapsed` (or
//! counting other 429s than the clients saw), a trap or panic in the log,
//! or memory growing after warm-up beyond the bounds:
//!
//!     soak [--requests N] [--connections N] [--warmup FRACTION]
//!          [--max-rss-growth-mib MIB] [--max-vm-growth-mib MIB]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentroute_tests::serde_json::{self, Value};
use agentroute_tests::{
    json_to_metadata, spawn_agent, try_send, wasm_failures, Connection, Gateway, GatewayConfig,
    Response,
};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const MIB: f64 = 1024.0 * 1024.0;
/// Longer than any answer of the mix takes: past it, a request hangs.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const LIMIT_RPS: f64 = 20.0;
const LIMIT_BURST: f64 = 10.0;

struct Args {
    requests: u64,
    connections: usize,
    warmup: f64,
    max_rss_growth_mib: f64,
    max_vm_growth_mib: f64,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = Args {
            requests: 1_000_000,
            connections: 32,
            warmup: 0.1,
            max_rss_growth_mib: 4.0,
            max_vm_growth_mib: 1.0,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().ok_or(format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            match flag.as_str() {
                "--requests" => args.requests = value.parse().map_err(|e| bad(&e))?,
                "--connections" => args.connections = value.parse().map_err(|e| bad(&e))?,
                "--warmup" => args.warmup = value.parse().map_err(|e| bad(&e))?,
                "--max-rss-growth-mib" => {
                    args.max_rss_growth_mib = value.parse().map_err(|e| bad(&e))?
                }
                "--max-vm-growth-mib" => {
                    args.max_vm_growth_mib = value.parse().map_err(|e| bad(&e))?
                }
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(args)
    }
}

/// The plugin configuration of both gateways; only the model source
/// differs.
fn plugin_config(model_from: &str) -> String {
    format!(
        r#"{{
  "openai": {{ "model_from": "{model_from}" }},
  "agents": [
    {{ "name": "a1", "namespace": "prod", "backend": "a1" }},
    {{ "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools" }},
    {{ "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["m1"] }},
    {{ "name": "hosted", "namespace": "prod", "backend": "hosted", "hosts": ["hosted.example.com"] }},
    {{ "name": "support", "namespace": "prod", "backend": "support",
       "prefixes": [ {{ "prefix": "/customer-service" }} ] }},
    {{ "name": "limited", "namespace": "prod", "backend": "limited",
       "rate_limit": {{ "requests_per_second": {LIMIT_RPS}, "burst": {LIMIT_BURST} }} }}
  ]
}}"#
    )
}

const AGENTS: [&str; 6] = ["a1", "tools", "llm", "hosted", "support", "limited"];
const LIMITED_SAMPLE: &str =
    r#"agentroute_ratelimit_limited_total{namespace="prod",agent="limited",kind="agent"}"#;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    NamespaceKindName,
    Namespaced,
    Shorthand,
    Mcp,
    Prefix,
    Host,
    ModelFromBody,
    ModelFromMetadata,
    AgentAsModel,
    ModelList,
    UnknownModel,
    DotSegment,
    Unmatched,
    Limited,
    Sse,
    ChatStream,
    AgentCard,
    WebSocket,
}

/// The mix, in requests per hundred.
const MIX: [(Kind, u32); 18] = [
    (Kind::NamespaceKindName, 12),
    (Kind::Namespaced, 8),
    (Kind::Shorthand, 8),
    (Kind::Mcp, 5),
    (Kind::Prefix, 6),
    (Kind::Host, 6),
    (Kind::ModelFromBody, 10),
    (Kind::ModelFromMetadata, 10),
    (Kind::AgentAsModel, 4),
    (Kind::ModelList, 3),
    (Kind::UnknownModel, 3),
    (Kind::DotSegment, 3),
    (Kind::Unmatched, 3),
    (Kind::Limited, 6),
    (Kind::Sse, 4),
    (Kind::ChatStream, 4),
    (Kind::AgentCard, 4),
    (Kind::WebSocket, 1),
];

/// The hundred kinds in a fixed shuffled order, so every stretch of the run
/// has the whole mix.
fn schedule() -> Vec<Kind> {
    let mut kinds: Vec<Kind> = MIX
        .iter()
        .flat_map(|&(kind, n)| std::iter::repeat_n(kind, n as usize))
        .collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..kinds.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        kinds.swap(i, (state >> 33) as usize % (i + 1));
    }
    kinds
}

/// Which gateway: 0 reads the model from the body, 1 from metadata.
fn gateway_for(kind: Kind, i: u64) -> usize {
    match kind {
        Kind::ModelFromBody => 0,
        Kind::ModelFromMetadata => 1,
        _ => (i / 100 % 2) as usize,
    }
}

#[derive(Default)]
struct Tally {
    statuses: BTreeMap<Kind, BTreeMap<u16, u64>>,
    /// Wrong status or answer, connection errors, hangs: by kind and what.
    failures: BTreeMap<(Kind, String), u64>,
}

/// What each gateway's rate-limited entry admitted, and over what time
/// (nanoseconds since the run started: first request sent, last answer).
#[derive(Default)]
struct LimitWatch {
    admitted: [AtomicU64; 2],
    refused: [AtomicU64; 2],
    first_sent: [AtomicU64; 2],
    last_answered: [AtomicU64; 2],
}

struct Shared {
    gateways: [SocketAddr; 2],
    schedule: Vec<Kind>,
    next: AtomicU64,
    done: AtomicU64,
    total: u64,
    tally: Mutex<Tally>,
    limits: LimitWatch,
    t0: Instant,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("soak: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(match soak(args).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("soak FAILED: {e}");
            1
        }
    });
}

async fn soak(args: Args) -> Result<(), String> {
    let mut agents = Vec::new();
    for name in AGENTS {
        agents.push((name, spawn_agent(name).await));
    }
    let mut gateways = Vec::new();
    for model_from in ["body", "metadata"] {
        let mut cfg = GatewayConfig::new(plugin_config(model_from));
        for (name, addr) in &agents {
            cfg = cfg.cluster(name, *addr);
        }
        cfg.concurrency = 2;
        if model_from == "body" {
            cfg.allow_stop_iteration = true;
        } else {
            cfg.filters_before.push(json_to_metadata("agentroute"));
        }
        let gw = Gateway::try_start(cfg)
            .await
            .map_err(|log| format!("Envoy did not start:\n{log}"))?;
        // Every worker's VM configured before traffic: a worker configuring
        // while another already admits can recreate a bucket full once (the
        // start-up bound README "Rate limiting" states); the soak checks
        // the steady state.
        gw.wait_workers_configured(2, Duration::from_secs(60))
            .await?;
        gateways.push(gw);
    }
    let shared = Arc::new(Shared {
        gateways: [gateways[0].addr, gateways[1].addr],
        schedule: schedule(),
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        total: args.requests,
        tally: Mutex::new(Tally::default()),
        limits: LimitWatch::default(),
        t0: Instant::now(),
    });
    eprintln!(
        "soak: {} requests on {} connections through 2 Envoys (--concurrency 2), \
         model from body on {} and from metadata on {}",
        args.requests, args.connections, shared.gateways[0], shared.gateways[1]
    );

    let mut samples = vec![sample(&gateways, 0, Duration::ZERO).await];
    let workers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(worker(shared.clone())))
        .collect();
    let started = Instant::now();
    let mut next_progress = 0.1;
    while shared.done.load(Ordering::Relaxed) < args.requests
        && !workers.iter().all(|w| w.is_finished())
    {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let done = shared.done.load(Ordering::Relaxed);
        samples.push(sample(&gateways, done, started.elapsed()).await);
        let fraction = done as f64 / args.requests as f64;
        if fraction >= next_progress {
            eprintln!(
                "soak: {:>3.0}% {done} requests, {:.0} req/s",
                fraction * 100.0,
                done as f64 / started.elapsed().as_secs_f64()
            );
            next_progress = (fraction * 10.0).floor() / 10.0 + 0.1;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    let duration = started.elapsed();
    let done = shared.done.load(Ordering::Relaxed);
    // The gauge and counters reach Envoy on the plugin's next tick.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    samples.push(sample(&gateways, done, started.elapsed()).await);

    let mut broken = Vec::new();
    let tally = std::mem::take(
        &mut *shared
            .tally
            .lock()
            .map_err(|_| "a worker panicked".to_string())?,
    );

    println!(
        "\nsoak: {done} requests in {:.1} s ({:.0} req/s)\n",
        duration.as_secs_f64(),
        done as f64 / duration.as_secs_f64()
    );
    println!("{:<18} {:>9}  statuses", "kind", "requests");
    for (kind, statuses) in &tally.statuses {
        let n: u64 = statuses.values().sum();
        let list: Vec<String> = statuses.iter().map(|(s, c)| format!("{s}×{c}")).collect();
        println!("{:<18} {n:>9}  {}", format!("{kind:?}"), list.join(" "));
    }
    let failed: u64 = tally.failures.values().sum();
    println!("\nunexpected statuses, answers, connection errors and hangs: {failed}");
    for ((kind, what), n) in tally.failures.iter().take(20) {
        println!("  {n:>7} {kind:?}: {what}");
    }
    if failed > 0 {
        broken.push(format!("{failed} requests failed"));
    }
    if done < args.requests {
        broken.push(format!("only {done} of {} requests ran", args.requests));
    }

    // The rate limit: never more than the bucket allows, and Envoy counted
    // exactly the 429s the clients saw.
    println!();
    for (g, gw) in gateways.iter().enumerate() {
        let l = &shared.limits;
        let admitted = l.admitted[g].load(Ordering::Relaxed);
        let refused = l.refused[g].load(Ordering::Relaxed);
        let span = l.last_answered[g]
            .load(Ordering::Relaxed)
            .saturating_sub(l.first_sent[g].load(Ordering::Relaxed)) as f64
            / 1e9;
        let allowed = LIMIT_BURST + LIMIT_RPS * span;
        let counted = gw.metric(LIMITED_SAMPLE).await.unwrap_or(0.0) as u64;
        println!(
            "rate limit, gateway {g}: {admitted} admitted (at most {allowed:.0} in {span:.1} s), \
             {refused} answered 429, Envoy counted {counted}"
        );
        if admitted as f64 > allowed + 1.0 {
            broken.push(format!(
                "gateway {g} admitted {admitted} > {allowed:.0} on the limited entry"
            ));
        }
        if counted != refused {
            broken.push(format!(
                "gateway {g}: {refused} 429s seen, {counted} counted by the plugin"
            ));
        }
    }

    // Memory: growth from the first sample past warm-up to the end.
    let warm_index = samples
        .iter()
        .position(|s| s.done as f64 >= args.warmup * args.requests as f64)
        .unwrap_or(samples.len() - 1);
    let (first, warm, end) = (
        &samples[0],
        &samples[warm_index],
        &samples[samples.len() - 1],
    );
    println!(
        "\nmemory (MiB)           start  warm-up    end  growth  peak after warm-up   \
         (warm-up: {} requests, {:.0} s)",
        warm.done,
        warm.at.as_secs_f64()
    );
    for g in 0..2 {
        let peak_rss = samples[warm_index..]
            .iter()
            .map(|s| s.rss[g])
            .max()
            .unwrap_or(0);
        let growth = (end.rss[g] as f64 - warm.rss[g] as f64) / MIB;
        println!(
            "gateway {g} Envoy RSS   {:>7.1}  {:>7.1} {:>6.1} {:>+7.2}  {:>7.1}",
            first.rss[g] as f64 / MIB,
            warm.rss[g] as f64 / MIB,
            end.rss[g] as f64 / MIB,
            growth,
            peak_rss as f64 / MIB
        );
        if growth > args.max_rss_growth_mib {
            broken.push(format!(
                "gateway {g}: Envoy RSS grew {growth:.2} MiB after warm-up (bound {} MiB)",
                args.max_rss_growth_mib
            ));
        }
        let vm = |s: &Sample| s.vm[g].map_or(f64::NAN, |b| b as f64 / MIB);
        let vm_growth = vm(end) - vm(warm);
        // The gauge appears on the plugin's first tick, a second in.
        let shown = |mib: f64| {
            if mib.is_nan() {
                "-".to_string()
            } else {
                format!("{mib:.1}")
            }
        };
        println!(
            "gateway {g} largest VM  {:>7}  {:>7} {:>6} {:>+7.2}",
            shown(vm(first)),
            shown(vm(warm)),
            shown(vm(end)),
            vm_growth
        );
        if vm_growth.is_nan() || vm_growth > args.max_vm_growth_mib {
            broken.push(format!(
                "gateway {g}: VM memory grew {vm_growth:.2} MiB after warm-up (bound {} MiB)",
                args.max_vm_growth_mib
            ));
        }
    }

    let mut traps = 0;
    for (g, gw) in gateways.iter_mut().enumerate() {
        let log = gw.log();
        let failures = wasm_failures(&log);
        traps += failures.len();
        for line in failures.iter().take(5) {
            println!("gateway {g} log: {line}");
        }
        if !gw.running() {
            broken.push(format!("gateway {g}: Envoy exited"));
        }
    }
    println!("\ntraps and panics in the Envoy logs: {traps}");
    if traps > 0 {
        broken.push(format!("{traps} traps or panics in the Envoy logs"));
    }
    println!(
        "bounds: Envoy RSS growth <= {} MiB, VM memory growth <= {} MiB after warm-up",
        args.max_rss_growth_mib, args.max_vm_growth_mib
    );
    if broken.is_empty() {
        println!("soak: OK");
        Ok(())
    } else {
        Err(broken.join("; "))
    }
}

struct Sample {
    at: Duration,
    done: u64,
    rss: [u64; 2],
    vm: [Option<u64>; 2],
}

async fn sample(gateways: &[Gateway], done: u64, at: Duration) -> Sample {
    let mut rss = [0; 2];
    let mut vm = [None; 2];
    for (g, gw) in gateways.iter().enumerate().take(2) {
        rss[g] = rss_bytes(gw.pid()).unwrap_or(0);
        vm[g] = vm_memory(gw.admin).await;
    }
    Sample { at, done, rss, vm }
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

async fn vm_memory(admin: SocketAddr) -> Option<u64> {
    let path = "/stats?filter=agentroute_vm_memory_bytes";
    let r = try_send(admin, "GET", path, &[], Bytes::new()).await.ok()?;
    r.text()
        .lines()
        .find_map(|l| l.split_once(": ")?.1.trim().parse().ok())
}

/// One client: a keep-alive connection to each gateway, requests taken from
/// the shared schedule until the run is complete.
async fn worker(shared: Arc<Shared>) {
    let mut conns: [Option<Connection>; 2] = [None, None];
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.total {
            return;
        }
        let kind = shared.schedule[(i % shared.schedule.len() as u64) as usize];
        let g = gateway_for(kind, i);
        let outcome =
            tokio::time::timeout(REQUEST_TIMEOUT, one(&shared, &mut conns[g], g, kind, i))
                .await
                .unwrap_or_else(|_| Err((0, format!("no answer in {REQUEST_TIMEOUT:?}"))));
        let status = match &outcome {
            Ok(status) | Err((status, _)) => *status,
        };
        if let Err((_, what)) = &outcome {
            // The connection's state is unknown after a failure.
            conns[g] = None;
            if let Ok(mut t) = shared.tally.lock() {
                *t.failures.entry((kind, what.clone())).or_default() += 1;
            }
        }
        if let Ok(mut t) = shared.tally.lock() {
            *t.statuses
                .entry(kind)
                .or_default()
                .entry(status)
                .or_default() += 1;
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
}

type Outcome = Result<u16, (u16, String)>;

/// Sends request `i` of `kind` and checks the answer: `Ok(status)` when it
/// is what must come back.
async fn one(
    shared: &Shared,
    conn: &mut Option<Connection>,
    g: usize,
    kind: Kind,
    i: u64,
) -> Outcome {
    let gw = shared.gateways[g];
    if kind == Kind::WebSocket {
        return websocket(gw).await;
    }
    let chat = |model: &str, stream: bool| {
        Bytes::from(format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"request {i}"}}]}}"#
        ))
    };
    let json = ("content-type", "application/json");
    let (method, host, path, body, with_json) = match kind {
        Kind::NamespaceKindName => (
            "GET",
            None,
            format!("/prod/agent/a1/k/{i}?q=1"),
            None,
            false,
        ),
        Kind::Namespaced => ("GET", None, format!("/prod/a1/n/{i}"), None, false),
        Kind::Shorthand => ("GET", None, format!("/a1/s/{i}"), None, false),
        Kind::Mcp => ("GET", None, format!("/prod/mcp/tools/m/{i}"), None, false),
        Kind::Prefix => ("GET", None, format!("/customer-service/p/{i}"), None, false),
        Kind::Host => (
            "GET",
            Some("hosted.example.com"),
            format!("/prod/agent/a1/h/{i}"),
            None,
            false,
        ),
        Kind::ModelFromBody | Kind::ModelFromMetadata => (
            "POST",
            None,
            "/v1/chat/completions".into(),
            Some(chat("m1", false)),
            true,
        ),
        Kind::AgentAsModel => (
            "POST",
            None,
            "/v1/chat/completions".into(),
            Some(chat("prod/a1", false)),
            true,
        ),
        Kind::ModelList => ("GET", None, "/v1/models".into(), None, false),
        Kind::UnknownModel => (
            "POST",
            None,
            "/v1/chat/completions".into(),
            Some(chat("no-such-model", false)),
            true,
        ),
        Kind::DotSegment => (
            "GET",
            None,
            format!("/prod/agent/a1/x/../../{i}"),
            None,
            false,
        ),
        Kind::Unmatched => ("GET", None, format!("/nowhere/{i}"), None, false),
        Kind::Limited => (
            "GET",
            None,
            format!("/prod/agent/limited/l/{i}"),
            None,
            false,
        ),
        Kind::Sse => (
            "GET",
            None,
            "/prod/agent/a1/events/sse?chunks=3&interval_ms=0".into(),
            None,
            false,
        ),
        Kind::ChatStream => (
            "POST",
            None,
            "/v1/chat/completions?chunks=3&interval_ms=0".into(),
            Some(chat("m1", true)),
            true,
        ),
        Kind::AgentCard => (
            "GET",
            None,
            "/prod/agent/a1/.well-known/agent.json".into(),
            None,
            false,
        ),
        Kind::WebSocket => unreachable!("answered above"),
    };
    let mut headers = vec![("host", host.unwrap_or("gateway.test"))];
    if with_json {
        headers.push(json);
    }
    if conn.as_ref().is_none_or(Connection::is_closed) {
        *conn = Some(Connection::open(gw).await.map_err(|e| (0, e))?);
    }
    let Some(c) = conn.as_mut() else {
        return Err((0, "no connection".into()));
    };
    if kind == Kind::Limited {
        let now = shared.t0.elapsed().as_nanos() as u64;
        let _ = shared.limits.first_sent[g].compare_exchange(
            0,
            now.max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    let r = c
        .send(method, &path, &headers, body.unwrap_or_default())
        .await
        .map_err(|e| (0, e))?;
    check(shared, g, kind, &path, &r)
}

/// Whether `r` is what `kind` must get.
fn check(shared: &Shared, g: usize, kind: Kind, path: &str, r: &Response) -> Outcome {
    let wrong = |what: &str| Err((r.status, format!("{} {what}", r.status)));
    let served_by = r.header("x-served-by");
    let echoed = || -> Option<String> {
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        v["path"].as_str().map(str::to_string)
    };
    let routed = |agent: &str, upstream: &str| -> Outcome {
        if r.status != 200 || served_by != Some(agent) {
            return wrong(&format!("served by {served_by:?}, want {agent}"));
        }
        match echoed() {
            Some(p) if p == upstream => Ok(200),
            other => wrong(&format!("upstream path {other:?}, want {upstream}")),
        }
    };
    let tail = |prefix: &str| path.strip_prefix(prefix).unwrap_or(path).to_string();
    match kind {
        Kind::NamespaceKindName => routed("a1", &tail("/prod/agent/a1")),
        Kind::Namespaced => routed("a1", &tail("/prod/a1")),
        Kind::Shorthand => routed("a1", &tail("/a1")),
        Kind::Mcp => routed("tools", &tail("/prod/mcp/tools")),
        Kind::Prefix => routed("support", &tail("/customer-service")),
        // A host match keeps the whole path.
        Kind::Host => routed("hosted", path),
        Kind::ModelFromBody | Kind::ModelFromMetadata | Kind::AgentAsModel => {
            let agent = if kind == Kind::AgentAsModel {
                "a1"
            } else {
                "llm"
            };
            if r.status == 200 && served_by == Some(agent) {
                Ok(200)
            } else {
                wrong(&format!("served by {served_by:?}: {}", r.text()))
            }
        }
        Kind::ModelList => {
            if r.status == 200 && r.text().contains(r#""id":"m1""#) {
                Ok(200)
            } else {
                wrong(&r.text())
            }
        }
        Kind::UnknownModel => {
            if r.status == 404 && r.text().contains("model_not_found") {
                Ok(404)
            } else {
                wrong(&r.text())
            }
        }
        Kind::DotSegment => {
            if r.status == 400 && served_by.is_none() {
                Ok(400)
            } else {
                wrong("a dot-segment got through")
            }
        }
        Kind::Unmatched => {
            if r.status == 404 && r.text() == "no agent route\n" {
                Ok(404)
            } else {
                wrong(&r.text())
            }
        }
        Kind::Limited => {
            let now = shared.t0.elapsed().as_nanos() as u64;
            shared.limits.last_answered[g].fetch_max(now, Ordering::Relaxed);
            match r.status {
                200 if served_by == Some("limited") => {
                    shared.limits.admitted[g].fetch_add(1, Ordering::Relaxed);
                    Ok(200)
                }
                429 if r.header("retry-after").is_some() => {
                    shared.limits.refused[g].fetch_add(1, Ordering::Relaxed);
                    Ok(429)
                }
                _ => wrong(&format!("served by {served_by:?}")),
            }
        }
        Kind::Sse | Kind::ChatStream => {
            let text = r.text();
            let events = text.matches("data: {").count();
            if r.status == 200 && events == 3 && text.ends_with("data: [DONE]\n\n") {
                Ok(200)
            } else {
                wrong(&format!("{events} events: {text:?}"))
            }
        }
        Kind::AgentCard => {
            let card: Option<Value> = serde_json::from_slice(&r.body).ok();
            if r.status == 200 && card.is_some_and(|c| c["name"] == "a1") {
                Ok(200)
            } else {
                wrong(&r.text())
            }
        }
        Kind::WebSocket => wrong("not an upgrade"),
    }
}

/// An upgrade on its own connection: the agent's greeting names the path
/// it saw, then one message echoes back.
async fn websocket(gw: SocketAddr) -> Outcome {
    let fail = |e: &dyn std::fmt::Display| (0, format!("websocket: {e}"));
    let stream = tokio::net::TcpStream::connect(gw)
        .await
        .map_err(|e| fail(&e))?;
    let (mut ws, resp) =
        tokio_tungstenite::client_async("ws://gateway.test/prod/agent/a1/ws?room=1", stream)
            .await
            .map_err(|e| fail(&e))?;
    let status = resp.status().as_u16();
    let hello = match ws.next().await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => return Err((status, format!("websocket greeting: {other:?}"))),
    };
    let hello: Value = serde_json::from_str(&hello).map_err(|e| (status, e.to_string()))?;
    if hello["agent"] != "a1" || hello["path"] != "/ws?room=1" {
        return Err((status, format!("websocket greeting {hello}")));
    }
    ws.send(Message::text("ping")).await.map_err(|e| fail(&e))?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.as_str() == "ping" => {}
        other => return Err((status, format!("websocket echo: {other:?}"))),
    }
    let _ = ws.close(None).await;
    Ok(status)
}
