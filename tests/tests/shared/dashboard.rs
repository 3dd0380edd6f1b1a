//! The Grafana dashboard's queries (`dashboards/agentroute.json`), read by
//! the tests that run Envoys it must show: tests/dashboard.rs (the demo's
//! configuration) and tests/generate.rs (a generated bootstrap).

use agentroute_tests::serde_json::Value;
use agentroute_tests::workspace_root;

pub fn dashboard() -> Value {
    let path = workspace_root().join("dashboards/agentroute.json");
    let text = std::fs::read_to_string(&path).expect("dashboards/agentroute.json");
    agentroute_tests::serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and variable
/// queries.
pub fn queries(dashboard: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("an expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            out.push(query.to_string());
        }
    }
    out
}

/// The metric names a PromQL expression mentions (agentroute's and
/// Envoy's: every name the dashboard may use starts so).
pub fn metric_names(expr: &str) -> Vec<String> {
    // Label names are no metrics: drop label matchers (`{...}`) and
    // groupings (`by (...)`) first.
    let mut bare = String::with_capacity(expr.len());
    let mut depth = 0usize;
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        if depth == 0 && (rest.starts_with("by (") || rest.starts_with("without (")) {
            let close = rest.find(')').unwrap_or(rest.len() - 1);
            rest = &rest[close + 1..];
            continue;
        }
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => bare.push(c),
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    bare.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("agentroute_") || word.starts_with("envoy_"))
        .map(str::to_string)
        .collect()
}

/// `name="value"` pairs of a label set (`a="x",b=~"y"`): exact matchers
/// and sample labels; `=~` matchers (the dashboard's `$variables`, every
/// value when all are selected) are left out.
fn exact_labels(set: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = set;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim_matches(|c: char| c == ',' || c.is_whitespace());
        let after = &rest[eq + 1..];
        let (regex, after) = match after.strip_prefix('~') {
            Some(a) => (true, a),
            None => (false, after),
        };
        let Some(value) = after.strip_prefix('"') else {
            break;
        };
        let end = value.find('"').unwrap_or(value.len());
        if !regex {
            out.push((name.to_string(), value[..end].to_string()));
        }
        rest = &value[(end + 1).min(value.len())..];
    }
    out
}

/// Whether `expr` returns a series from `prometheus` (Envoy's text
/// format): each metric it reads has a sample with its exact matchers and
/// every label it groups by (`by (...)`, `le` aside: histograms have it).
pub fn returns_series(expr: &str, prometheus: &str) -> bool {
    let grouped: Vec<&str> = expr
        .match_indices("by (")
        .filter_map(|(at, _)| {
            let from = &expr[at + 4..];
            from.find(')').map(|end| &from[..end])
        })
        .flat_map(|list| list.split(',').map(str::trim))
        .filter(|l| *l != "le")
        .collect();
    metric_names(expr).iter().all(|metric| {
        let needle = format!("{metric}{{");
        let matchers: Vec<(String, String)> = expr
            .match_indices(&needle)
            .flat_map(|(at, _)| {
                let from = &expr[at + needle.len()..];
                exact_labels(&from[..from.find('}').unwrap_or(from.len())])
            })
            .collect();
        prometheus.lines().any(|line| {
            let Some(labels) = line
                .strip_prefix(&needle)
                .and_then(|l| l.rsplit_once('}'))
                .map(|(l, _)| exact_labels(l))
            else {
                return false;
            };
            let has = |name: &str| labels.iter().any(|(n, v)| n == name && !v.is_empty());
            matchers.iter().all(|m| labels.contains(m)) && grouped.iter().all(|g| has(g))
        })
    })
}
