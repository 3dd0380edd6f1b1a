//! What a configuration needs from the Envoy that runs it, checked where the
//! document holding the filter says (a bootstrap; [`Surroundings`]):
//! - an entry whose failover retries the failed request needs the failover
//!   route (envoy/demo.yaml): without it the failed backend's answer
//!   reaches the client, and the backend gets the slot headers;
//! - `observability.access_log` sets properties only an access log prints;
//! - every backend needs a cluster of that name (`cluster_header`).

use agentroute::config::Plan;

use super::{dispatch_tokens, entry_name, Level};
use crate::check::{Found, Origin, Surroundings};

/// What the bootstrap around `found` lacks for `plan`.
pub(super) fn what_envoy_lacks(found: &Found, plan: &Plan) -> Vec<(Level, String)> {
    let Origin::EnvoyFilter { around, .. } = &found.origin else {
        return Vec::new();
    };
    let mut out = Vec::new();
    failover_without_route(around, plan, &mut out);
    if plan.observe.access_log && around.access_log == Some(false) {
        out.push((
            Level::Warning,
            "observability.access_log is on, but the HTTP connection manager holding the filter \
             has no access_log: the properties are set on every request and printed nowhere \
             (envoy/demo.yaml's access log prints them)"
                .to_string(),
        ));
    }
    if let Some(clusters) = &around.clusters {
        for (i, entry) in plan.entries.iter().enumerate() {
            for (what, token) in dispatch_tokens(entry) {
                if !clusters.contains(token) {
                    out.push((
                        Level::Error,
                        format!(
                            "{}: {what} {token:?} is no cluster of this bootstrap: the \
                             cluster_header route would answer its requests 503",
                            entry_name(plan, i)
                        ),
                    ));
                }
            }
        }
    }
    out
}

fn failover_without_route(around: &Surroundings, plan: &Plan, out: &mut Vec<(Level, String)>) {
    let Some(routed) = around.failover_backups else {
        return;
    };
    for (i, entry) in plan.entries.iter().enumerate() {
        let Some(failover) = entry.failover.as_ref().filter(|f| f.retry) else {
            continue;
        };
        let backups = failover.backends.len() + usize::from(entry.canary.is_some());
        if backups <= routed {
            continue;
        }
        out.push((
            Level::Error,
            format!(
                "{}: failover sends a failed request on to {backups} more backend(s), but the \
                 bootstrap has {}: a route whose inline_cluster_specifier_plugin matcher keys on \
                 x-envoy-attempt-count, with refresh_cluster_on_retry and num_retries: {backups}, \
                 in a virtual host with include_request_attempt_count (envoy/demo.yaml; \
                 `agentroute generate --target envoy` writes it). Without it the failed \
                 backend's answer reaches the client",
                entry_name(plan, i),
                if routed == 0 {
                    "no failover route".to_string()
                } else {
                    format!("a failover route for {routed} only")
                }
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::run;
    use super::super::Level;

    /// A bootstrap holding `config`; `hcm` adds keys to its connection
    /// manager, `routes` goes before the cluster_header route.
    fn bootstrap(config: &str, hcm: &str, vhost: &str, routes: &str) -> String {
        format!(
            r#"{{"static_resources": {{
  "listeners": [{{"name": "gw", "filter_chains": [{{"filters": [{{"name": "hcm", "typed_config": {{
    {hcm}
    "route_config": {{"virtual_hosts": [{{"name": "all", "domains": ["*"], {vhost}
      "routes": [{routes} {{"match": {{"prefix": "/"}}, "route": {{"cluster_header": "x-agent-backend"}}}}]}}]}},
    "http_filters": [{{"name": "agentroute", "typed_config": {{
      "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
      "config": {{"configuration": {{"@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": {config:?}}}}}}}}}]}}}}]}}]}}],
  "clusters": [{{"name": "a"}}, {{"name": "b"}}]}}}}"#
        )
    }

    const FAILOVER: &str =
        r#"{"agents": [{"name": "m", "backend": "a", "failover": {"backends": ["b"]}}]}"#;

    const ROUTE: &str = r#"{"match": {"prefix": "/"}, "route": {
        "inline_cluster_specifier_plugin": {"extension": {"typed_config": {"cluster_matcher": {
          "matcher_tree": {"input": {"typed_config": {"header_name": "x-envoy-attempt-count"}}}}}}},
        "retry_policy": {"num_retries": 1, "refresh_cluster_on_retry": true}}},"#;

    fn said(file: &str, level: Level) -> Vec<String> {
        run(&[("envoy.json", file)])
            .lines
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.text.clone())
            .collect()
    }

    #[test]
    fn a_failover_entry_needs_the_failover_route() {
        let without = bootstrap(FAILOVER, "", "", "");
        let errors = said(&without, Level::Error);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("agents[0] (default/m): failover sends a failed request on to 1 more backend(s), but the bootstrap has no failover route"),
            "{errors:?}"
        );
        let with = bootstrap(
            FAILOVER,
            "",
            r#""include_request_attempt_count": true,"#,
            ROUTE,
        );
        assert!(said(&with, Level::Error).is_empty());
        // The route without the attempt count in its virtual host is none.
        let half = bootstrap(FAILOVER, "", "", ROUTE);
        assert_eq!(said(&half, Level::Error).len(), 1);
        // Passive ejection only (retry: false) needs no route.
        let passive = FAILOVER.replace(r#"["b"]"#, r#"["b"], "retry": false"#);
        assert!(said(&bootstrap(&passive, "", "", ""), Level::Error).is_empty());
    }

    #[test]
    fn an_access_log_option_needs_a_log_and_backends_need_clusters() {
        let config = r#"{"observability": {"access_log": true},
            "agents": [{"name": "m", "backend": "a", "canary": {"backend": "c", "weight": 5}}]}"#;
        let file = bootstrap(config, "", "", "");
        assert_eq!(
            said(&file, Level::Error),
            ["agents[0] (default/m): canary backend \"c\" is no cluster of this bootstrap: the cluster_header route would answer its requests 503"]
        );
        let warnings = said(&file, Level::Warning);
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("observability.access_log is on, but")),
            "{warnings:?}"
        );
        let logged = bootstrap(config, r#""access_log": [{"name": "stdout"}],"#, "", "");
        assert!(said(&logged, Level::Warning).is_empty());
    }
}
