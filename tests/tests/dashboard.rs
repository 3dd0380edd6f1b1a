//! The Grafana dashboard (`dashboards/agentroute.json`): valid JSON whose
//! every query names a metric that exists: one the filter defines
//! (`filter/src/stats.rs`) or one a real Envoy running the demo's
//! configuration (`envoy/demo.yaml`, what `make run` starts) exports.

use std::collections::BTreeSet;

use agentroute_tests::serde_json::Value;
use agentroute_tests::{spawn_agent, workspace_root, Gateway, GatewayConfig};

#[path = "shared/dashboard.rs"]
mod shared;
use shared::{dashboard, metric_names, queries, returns_series};

fn dashboard_metrics() -> BTreeSet<String> {
    queries(&dashboard())
        .iter()
        .flat_map(|q| metric_names(q))
        .collect()
}

#[test]
fn label_names_are_not_metrics() {
    assert_eq!(
        metric_names(
            r#"sum by (namespace, envoy_response_code) (rate(envoy_x{envoy_response_code_class="5"}[5m]))"#
        ),
        ["envoy_x"]
    );
}

#[test]
fn a_query_returns_series_with_its_matchers_and_groupings() {
    let expr = r#"sum by (namespace, agent) (rate(envoy_x{envoy_response_code_class="5",namespace=~"$namespace"}[5m]))"#;
    let sample = |labels: &str| format!("envoy_x{{{labels}}} 1\n");
    let both =
        r#"envoy_cluster_name="a_b_1",namespace="b",agent="a",envoy_response_code_class="5""#;
    assert!(returns_series(expr, &sample(both)));
    // Another class, a grouping label missing, another metric: no series.
    assert!(!returns_series(
        expr,
        &sample(&both.replace("\"5\"", "\"2\""))
    ));
    assert!(!returns_series(
        expr,
        &sample(&both.replace("agent=\"a\",", ""))
    ));
    assert!(!returns_series(
        expr,
        &sample(both).replace("envoy_x", "envoy_y")
    ));
}

#[test]
fn the_dashboard_is_grafana_json_over_known_agentroute_metrics() {
    let d = dashboard();
    assert_eq!(d["uid"], "agentroute");
    let panels = d["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "ids unique"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{}", panel["title"]);
    }
    let known: BTreeSet<&str> = agentroute::stats::prometheus_names().into_iter().collect();
    let metrics = dashboard_metrics();
    for name in metrics.iter().filter(|m| m.starts_with("agentroute_")) {
        assert!(
            known.contains(name.as_str()),
            "{name}: not a stat the filter defines"
        );
    }
    // What the issue asks the dashboard to show.
    for wanted in [
        "agentroute_requests_total",
        "agentroute_input_tokens_total",
        "agentroute_output_tokens_total",
        "agentroute_ratelimit_limited_total",
        "envoy_cluster_agentroute_upstream_rq_time_bucket",
        "agentroute_in_flight",
        "agentroute_failover_ejections_total",
    ] {
        assert!(metrics.contains(wanted), "the dashboard lacks {wanted}");
    }
}

/// `envoy/demo.yaml`'s plugin configuration.
fn demo_plugin_config() -> String {
    let text = std::fs::read_to_string(workspace_root().join("envoy/demo.yaml")).expect("demo");
    let demo: Value = serde_norway::from_str(&text).expect("demo.yaml");
    let filters = &demo["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    filters
        .as_array()
        .expect("http_filters")
        .iter()
        .find(|f| f["name"] == "agentroute")
        .and_then(|f| f["typed_config"]["config"]["configuration"]["value"].as_str())
        .expect("agentroute's configuration")
        .to_string()
}

/// Metric names in Prometheus text, histograms with their sample names.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            continue;
        };
        names.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[tokio::test]
async fn the_dashboard_queries_what_the_demo_envoy_exports() {
    let mut cfg = GatewayConfig::new(demo_plugin_config());
    cfg.allow_stop_iteration = true;
    // Every backend the demo's configuration names (a canary's too).
    for name in [
        "coordinator",
        "coordinator-next",
        "researcher",
        "llm",
        "embedder",
        "tools",
        "assistant",
        "mcp-search",
        "llm-backup",
    ] {
        cfg = cfg.cluster(name, spawn_agent(name).await);
    }
    let gw = Gateway::start(cfg).await;
    assert_eq!(gw.get("/prod/agent/coordinator/hello").await.status, 200);
    let chat = r#"{"model":"gpt-demo","messages":[{"role":"user","content":"hi"}]}"#;
    assert_eq!(gw.post_json("/v1/chat/completions", chat).await.status, 200);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(gw.get("/prod/tools").await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(gw.get("/prod/coordinator/%2e%2e/admin").await.status, 400);
    gw.wait_metric(
        r#"agentroute_output_tokens_total{namespace="models",agent="llm",kind="modelapi",model="gpt-demo"}"#,
        5.0,
    )
    .await;
    let names = exported(&gw.prometheus().await);
    for name in dashboard_metrics() {
        if name.starts_with("envoy_") {
            assert!(
                names.contains(&name),
                "{name}: Envoy exports no such metric"
            );
        }
    }
    // The filter's own names, as this Envoy shows them.
    for name in [
        "agentroute_requests_total",
        "agentroute_refused_total",
        "agentroute_ratelimit_limited_total",
        "agentroute_input_tokens_total",
        "agentroute_output_tokens_total",
        "agentroute_vm_memory_bytes",
    ] {
        assert!(names.contains(name), "{name} not exported");
    }
}
