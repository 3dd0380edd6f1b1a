//! Observability through a real Envoy: an access log configured from the
//! book's table (docs/src/observability.md) prints what the filter set (entry, kind, backend, model,
//! tokens, the refusing limit); token counters per model and the upstream
//! stats per agent appear in `/stats/prometheus` with their labels.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentroute::observe::Field;
use agentroute_tests::serde_json::{json, Map, Value};
use agentroute_tests::{spawn_agent, workspace_root, Gateway, GatewayConfig};

/// The `%FILTER_STATE(...)%` commands of the book's table
/// (docs/src/observability.md, "Access-log fields"), by JSON key.
fn readme_fields() -> Vec<(String, String)> {
    let page = "docs/src/observability.md";
    let readme = std::fs::read_to_string(workspace_root().join(page)).expect(page);
    const START: &str = "%FILTER_STATE(wasm.";
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find(START) {
        let from = &rest[at..];
        let Some(end) = from.find(")%") else { break };
        let command = &from[..end + 2];
        rest = &from[end + 2..];
        let Some(key) = command
            .strip_prefix("%FILTER_STATE(wasm.agentroute.")
            .and_then(|k| k.strip_suffix(":PLAIN)%"))
        else {
            continue;
        };
        if !fields.iter().any(|(k, _)| k == key) {
            fields.push((key.to_string(), command.to_string()));
        }
    }
    fields
}

#[test]
fn the_readme_names_every_property_as_envoy_spells_it() {
    let fields = readme_fields();
    for field in Field::ALL {
        assert!(
            fields
                .iter()
                .any(|(k, c)| k == field.json_key() && *c == field.access_log_command()),
            "docs/src/observability.md lacks {}",
            field.access_log_command()
        );
    }
    assert_eq!(
        fields.len(),
        Field::ALL.len(),
        "docs/src/observability.md: {fields:?}"
    );
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).expect(path);
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_shipped_access_logs_print_every_field_and_stats_carry_labels() {
    let demo = &yaml("envoy/demo.yaml");
    let hcm =
        &demo["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let demo_log = &hcm["access_log"];
    let istio = yaml("istio/envoyfilter-access-log.yaml");
    let istio_log =
        &istio["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["access_log"];
    assert_eq!(demo_log, istio_log, "Envoy and Istio print the same fields");
    let format = &demo_log[0]["typed_config"]["log_format"]["json_format"];
    let eg = yaml("envoy/gateway/envoyproxy-access-log.yaml");
    assert_eq!(
        &eg["spec"]["telemetry"]["accessLog"]["settings"][0]["format"]["json"], format,
        "Envoy Gateway prints the same fields"
    );
    for field in Field::ALL {
        assert_eq!(
            format[field.json_key()].as_str(),
            Some(field.access_log_command().as_str()),
            "{}",
            field.json_key()
        );
    }
    // Every bootstrap that turns tags into labels has all of them, as the
    // tests' Envoy (and `agentroute generate`) do.
    for path in [
        "envoy/demo.yaml",
        "envoy/tls.yaml",
        "envoy/global-limits.yaml",
    ] {
        let tags = &yaml(path)["stats_config"]["stats_tags"];
        assert_eq!(tags, &agentroute_tests::stats_tags(), "{path}");
    }
}

/// An HCM access log to `path`, one JSON object per request: the book's
/// fields plus Envoy's own status, path and upstream cluster.
fn with_access_log(cfg: GatewayConfig, path: PathBuf) -> GatewayConfig {
    let mut format = Map::new();
    format.insert("status".into(), json!("%RESPONSE_CODE%"));
    format.insert("path".into(), json!("%REQ(:PATH)%"));
    format.insert("upstream_cluster".into(), json!("%UPSTREAM_CLUSTER%"));
    for (key, command) in readme_fields() {
        format.insert(key, json!(command));
    }
    cfg.patch_bootstrap(move |bootstrap| {
        let hcm = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"]
            [0]["typed_config"];
        hcm["access_log"] = json!([ {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path,
                "log_format": { "json_format": format }
            }
        } ]);
    })
}

/// The access log's lines so far, once `want` of them are there.
async fn log_lines(path: &Path, want: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        lines = text
            .lines()
            .map(|l| agentroute_tests::serde_json::from_str(l).expect("a JSON log line"))
            .collect();
        if lines.len() >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines.len() >= want, "{} log lines: {lines:?}", lines.len());
    lines
}

fn line_for<'a>(lines: &'a [Value], path: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["path"] == path)
        .unwrap_or_else(|| panic!("no log line for {path}: {lines:?}"))
}

const CONFIG: &str = r#"{
  "observability": { "access_log": true, "upstream_stats": true },
  "openai": { "usage_metrics": true },
  "agents": [
    { "name": "coordinator", "namespace": "prod", "backend": "coordinator" },
    { "name": "split", "namespace": "prod", "backend": "coordinator",
      "canary": { "backend": "tools", "weight": 0, "header": "x-canary" } },
    { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
      "models": ["gpt-4.1", "openai/*", "ft:gpt-4o:org:x"] },
    { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools",
      "rate_limit": { "requests_per_second": 0.001, "burst": 1 } }
  ]
}"#;

async fn gateway(config: &str, log: Option<PathBuf>) -> Gateway {
    let mut cfg = GatewayConfig::new(config);
    cfg.allow_stop_iteration = true;
    for name in ["coordinator", "llm", "tools"] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    if let Some(path) = log {
        cfg = with_access_log(cfg, path);
    }
    Gateway::start(cfg).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn the_access_log_shows_entry_backend_model_and_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let gw = gateway(CONFIG, Some(log.clone())).await;

    let routed = gw.get("/prod/agent/coordinator/hello").await;
    assert_eq!(routed.status, 200);
    let chat = r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}"#;
    let r = gw
        .request("POST", "/v1/chat/completions?json", &[JSON], chat)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = r.json()["usage"].clone();
    let stream = r#"{"model":"openai/gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let r = gw
        .request("POST", "/v1/chat/completions?sse", &[JSON], stream)
        .await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"usage\""), "{}", r.text());
    let responses = r#"{"model":"ft:gpt-4o:org:x","stream":true,"input":"hi"}"#;
    let r = gw
        .request("POST", "/v1/responses?sse", &[JSON], responses)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(gw.get("/prod/mcp/tools/a").await.status, 200);
    assert_eq!(gw.get("/prod/mcp/tools/b").await.status, 429);
    assert_eq!(gw.get("/prod/split/split-stable").await.status, 200);
    let forced = gw
        .request(
            "GET",
            "/prod/split/split-forced",
            &[("x-canary", "always")],
            "",
        )
        .await;
    assert_eq!(forced.status, 200);

    let lines = log_lines(&log, 8).await;
    let routed = line_for(&lines, "/hello");
    assert_eq!(routed["entry"], "prod/coordinator", "{routed}");
    assert_eq!(routed["kind"], "agent");
    assert_eq!(routed["backend"], "coordinator");
    assert!(
        routed["model"].is_null() && routed["total_tokens"].is_null(),
        "{routed}"
    );

    let json_answer = line_for(&lines, "/v1/chat/completions?json");
    assert_eq!(json_answer["entry"], "models/llm", "{json_answer}");
    assert_eq!(json_answer["kind"], "modelapi");
    assert_eq!(json_answer["backend"], "llm");
    assert_eq!(json_answer["model"], "gpt-4.1");
    for (key, usage_key) in [
        ("input_tokens", "prompt_tokens"),
        ("output_tokens", "completion_tokens"),
        ("total_tokens", "total_tokens"),
    ] {
        assert_eq!(
            json_answer[key],
            usage[usage_key].to_string(),
            "{key}: {json_answer}"
        );
    }

    let sse = line_for(&lines, "/v1/chat/completions?sse");
    assert_eq!(
        sse["model"], "openai/gpt-4o",
        "the model as the client named it"
    );
    assert_eq!(sse["output_tokens"], "5", "{sse}");
    let total: u64 = sse["total_tokens"].as_str().unwrap().parse().unwrap();
    let input: u64 = sse["input_tokens"].as_str().unwrap().parse().unwrap();
    assert_eq!(total, input + 5);

    let responses = line_for(&lines, "/v1/responses?sse");
    assert_eq!(responses["model"], "ft:gpt-4o:org:x");
    assert_eq!(responses["output_tokens"], "5", "{responses}");

    let admitted = line_for(&lines, "/a");
    assert!(admitted["limited"].is_null(), "{admitted}");
    let refused = line_for(&lines, "/prod/mcp/tools/b");
    assert_eq!(refused["status"], 429);
    assert_eq!(refused["limited"], "requests", "{refused}");
    assert_eq!(refused["entry"], "prod/tools");
    // The side of a split, and the side's backend.
    let stable = line_for(&lines, "/split-stable");
    assert_eq!(stable["canary"], "stable", "{stable}");
    assert_eq!(stable["backend"], "coordinator", "{stable}");
    let forced = line_for(&lines, "/split-forced");
    assert_eq!(forced["canary"], "canary", "{forced}");
    assert_eq!(forced["backend"], "tools", "{forced}");
    assert_eq!(forced["upstream_cluster"], "tools", "{forced}");
    // Entries without a split have no side; failover is not built.
    for line in &lines {
        if line["entry"] != "prod/split" {
            assert!(line["canary"].is_null(), "canary: {line}");
        }
        for key in ["failover_retries", "backends_tried"] {
            assert!(line[key].is_null(), "{key}: {line}");
        }
    }

    // Tokens per entry and model label, the label from the configuration.
    let input = usage["prompt_tokens"].as_f64().unwrap();
    gw.wait_metric(
        r#"agentroute_input_tokens_total{namespace="models",agent="llm",kind="modelapi",model="gpt-4.1"}"#,
        input,
    )
    .await;
    gw.wait_metric(
        r#"agentroute_output_tokens_total{namespace="models",agent="llm",kind="modelapi",model="openai/*"}"#,
        5.0,
    )
    .await;
    gw.wait_metric(
        r#"agentroute_output_tokens_total{namespace="models",agent="llm",kind="modelapi",model="ft_gpt-4o_org_x"}"#,
        5.0,
    )
    .await;
}

#[tokio::test]
async fn upstream_stats_appear_per_agent() {
    let gw = gateway(CONFIG, None).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/prod/agent/coordinator/x").await.status, 200);
    }
    let chat = r#"{"model":"gpt-4.1","messages":[]}"#;
    assert_eq!(
        gw.request("POST", "/v1/chat/completions", &[JSON], chat)
            .await
            .status,
        200
    );
    // A client's own alt-stat-name does not make stats of its choosing.
    let r = gw
        .request(
            "GET",
            "/prod/agent/coordinator/x",
            &[("x-envoy-upstream-alt-stat-name", "client.chosen")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let labels =
        r#"namespace="prod",agent="coordinator",kind="agent",envoy_cluster_name="coordinator""#;
    gw.wait_metric(
        &format!("envoy_cluster_agentroute_upstream_rq_time_count{{{labels}}}"),
        4.0,
    )
    .await;
    gw.wait_metric(
        &format!(r#"envoy_cluster_agentroute_upstream_rq{{envoy_response_code="200",{labels}}}"#),
        4.0,
    )
    .await;
    let text = gw.prometheus().await;
    assert!(
        text.contains(r#"envoy_cluster_agentroute_upstream_rq_time_bucket{namespace="models",agent="llm",kind="modelapi",envoy_cluster_name="llm""#),
        "{text}"
    );
    assert!(!text.contains("chosen"), "a client-made stat name: {text}");
}

#[tokio::test]
async fn everything_stays_off_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    let plain = r#"{"agents": [
        { "name": "coordinator", "namespace": "prod", "backend": "coordinator" },
        { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm", "models": ["gpt-4.1"] }
    ]}"#;
    let gw = gateway(plain, Some(log.clone())).await;
    assert_eq!(gw.get("/prod/agent/coordinator/x").await.status, 200);
    let chat = r#"{"model":"gpt-4.1","messages":[]}"#;
    let r = gw
        .request("POST", "/v1/chat/completions", &[JSON], chat)
        .await;
    assert_eq!(r.status, 200);
    let lines = log_lines(&log, 2).await;
    for line in &lines {
        for (key, _) in readme_fields() {
            assert!(line[&key].is_null(), "{key} set without access_log: {line}");
        }
    }
    // Counters reach Envoy on the tick: wait for the request counter, then
    // look for what must not be there.
    gw.wait_metric(
        r#"agentroute_requests_total{namespace="models",agent="llm",kind="modelapi"}"#,
        1.0,
    )
    .await;
    let text = gw.prometheus().await;
    assert!(!text.contains("agentroute_input_tokens_total"), "{text}");
    assert!(!text.contains("envoy_cluster_agentroute_"), "{text}");
}
