//! One `agentroute check` run as a report: every configuration found in the
//! inputs, compiled by the filter, and the rules that need more than one
//! configuration or more than the filter sees:
//! - an input without any configuration, or a configuration without entries;
//! - shorthands the router drops because of another entry, and shorthands
//!   another namespace's paths shadow ([`paths`]);
//! - `openai.model_from: body` where the platform cannot let the filter
//!   pause for the body (an Istio WasmPlugin, an Envoy Gateway
//!   EnvoyExtensionPolicy) and no patch in the run does;
//! - an Istio WasmPlugin not in `phase: AUTHZ` next to an AuthorizationPolicy
//!   on the identity headers it sets ([`authz`]);
//! - a generated WasmPlugin or EnvoyExtensionPolicy naming the placeholder
//!   image generate wrote before `--image`;
//! - what a bootstrap around the filter lacks: the failover route, an
//!   access log, clusters for the backends ([`bootstrap`]);
//! - dispatch tokens against the HTTPRoutes that lead them to Services; with
//!   a `cluster_header` route patched in (istio/large/, envoy/gateway/large/),
//!   backends against the cluster names the controller gives those rules.
//!
//! All inputs of one run are one deployment for the rules across objects: a
//! WasmPlugin in one file and its HTTPRoutes in another are checked together.

mod authz;
mod bootstrap;
mod paths;

use std::fmt;

use agentroute::config::{ModelSource, Plan};

pub use paths::shadowed_shorthands;

use crate::check::{
    self, DispatchRoute, ExplainRequest, Found, HeaderRoute, Origin, Platform, Scan,
};

/// One input of the run: a file name (`<stdin>` for standard input) and what
/// was found in it, or why it could not be read.
#[derive(Debug)]
pub struct Input {
    pub name: String,
    pub scan: Result<Scan, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A configuration the filter loads, with its summary.
    Ok,
    /// Said for information.
    Note,
    /// Loads, but probably not what was meant.
    Warning,
    /// Refused by the filter, or broken where it is deployed.
    Error,
    /// An indented line under the one before (`--explain`).
    Detail,
}

/// One printed line: `{at}: ok: ...`, `{at}: warning: ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub at: String,
    pub level: Level,
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.level {
            Level::Ok => "ok: ",
            Level::Note | Level::Detail => "",
            Level::Warning => "warning: ",
            Level::Error => "error: ",
        };
        if self.level == Level::Detail {
            return write!(f, "  {}", self.text);
        }
        write!(f, "{}: {label}{}", self.at, self.text)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<Line>,
}

impl Report {
    /// No error: the run exits 0 (warnings allowed).
    pub fn ok(&self) -> bool {
        self.lines.iter().all(|l| l.level != Level::Error)
    }

    pub fn count(&self, level: Level) -> usize {
        self.lines.iter().filter(|l| l.level == level).count()
    }

    fn push(&mut self, at: &str, level: Level, text: impl Into<String>) {
        self.lines.push(Line {
            at: at.to_string(),
            level,
            text: text.into(),
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// A configuration of the run, compiled.
struct Compiled<'a> {
    input: usize,
    found: &'a Found,
    at: String,
    plan: Result<Plan, agentroute::config::ConfigError>,
}

/// Checks one run: `inputs` in order, and `explain` run on each valid
/// configuration.
pub fn check_run(inputs: &[Input], explain: Option<&ExplainRequest>) -> Report {
    let mut compiled = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        for found in input.scan.iter().flat_map(|s| &s.configs) {
            let at = if found.location.is_empty() {
                input.name.clone()
            } else {
                format!("{}: {}", input.name, found.location)
            };
            compiled.push(Compiled {
                input: i,
                found,
                at,
                plan: found.compile(),
            });
        }
    }
    let scans = || inputs.iter().filter_map(|i| i.scan.as_ref().ok());
    let routes: Vec<&HeaderRoute> = scans().flat_map(|s| &s.routes).collect();
    let dispatch_routes: Vec<&DispatchRoute> = scans().flat_map(|s| &s.dispatch_routes).collect();
    let identity_policies: Vec<String> = inputs
        .iter()
        .filter_map(|i| i.scan.as_ref().ok().map(|s| (i, s)))
        .flat_map(|(i, s)| {
            s.identity_policies
                .iter()
                .map(move |at| format!("{}: {at}", i.name))
        })
        .collect();
    let patched = |platform: Platform| {
        scans()
            .flat_map(|s| &s.stop_iteration)
            .any(|p| p.platform == platform)
    };
    let any_config = !compiled.is_empty();

    let mut report = Report::default();
    for (i, input) in inputs.iter().enumerate() {
        let name = input.name.as_str();
        let scan = match &input.scan {
            Ok(scan) => scan,
            Err(e) => {
                report.push(name, Level::Error, e.clone());
                continue;
            }
        };
        for note in &scan.notes {
            report.push(name, Level::Note, note.clone());
        }
        for at in &scan.placeholder_images {
            report.push(
                &format!("{name}: {at}"),
                Level::Error,
                format!(
                    "the image is {:?}, the placeholder `agentroute generate` wrote before \
                     --image: no cluster pulls it, and failing closed every request would fail. \
                     Generate again with --image REF (the plugin's image in your registry: \
                     `make oci` builds it)",
                    check::PLACEHOLDER_IMAGE
                ),
            );
        }
        if scan.configs.is_empty() && scan.notes.is_empty() {
            no_configuration(&mut report, name, scan, any_config);
        }
        for c in compiled.iter().filter(|c| c.input == i) {
            let plan = match &c.plan {
                Ok(plan) => plan,
                Err(e) => {
                    report.push(&c.at, Level::Error, e.to_string());
                    continue;
                }
            };
            report.push(&c.at, Level::Ok, check::Summary::of(plan).to_string());
            if let Some(request) = explain {
                for line in check::explain(plan, request).to_string().lines() {
                    report.push(&c.at, Level::Detail, line);
                }
            }
            if plan.entries.is_empty() {
                report.push(
                    &c.at,
                    Level::Warning,
                    "no agents: the configuration has no entries, so the filter routes nothing",
                );
            }
            for (level, text) in paths::shorthand_warnings(plan) {
                report.push(&c.at, level, text);
            }
            body_without_stop_iteration(&mut report, &c.at, c.found, plan, &patched);
            if let Some(error) = authz::phase_before_policies(c.found, &identity_policies) {
                report.push(&c.at, Level::Error, error);
            }
            for (level, text) in bootstrap::what_envoy_lacks(c.found, plan) {
                report.push(&c.at, level, text);
            }
            let fast = cluster_header_routes(c.found, plan, &dispatch_routes);
            if fast.is_empty() {
                backends_without_routes(&mut report, &c.at, c.found, plan, &routes);
            } else {
                backends_without_clusters(&mut report, &c.at, c.found, plan, &routes, &fast);
            }
        }
        for route in &scan.routes {
            orphan_route(&mut report, name, route, &compiled, &dispatch_routes);
        }
    }
    report
}

/// A file without a configuration is an error when the whole run has none;
/// next to files that have one (`agentroute check istio/*.yaml`) it is the
/// Gateway, the HTTPRoutes, the patches of the same deployment.
fn no_configuration(report: &mut Report, name: &str, scan: &Scan, any_config: bool) {
    if any_config {
        let mut text = "no agentroute configuration in this file".to_string();
        if !scan.routes.is_empty() || !scan.stop_iteration.is_empty() {
            text.push_str(&format!(
                "; its {} HTTPRoute header rule(s) and {} stop-iteration patch(es) are checked \
                 with the configurations of this run",
                scan.routes.len(),
                scan.stop_iteration.len()
            ));
        }
        for d in &scan.dispatch_routes {
            text.push_str(&format!(
                "; its cluster_header route on {} makes the backends of this run's \
                 configurations for its Gateway cluster names",
                d.header
            ));
        }
        report.push(name, Level::Note, text);
        return;
    }
    let text = if scan.empty_input {
        "empty input: no agentroute configuration to check".to_string()
    } else {
        "no agentroute configuration found (looked for a bare configuration, a WasmPlugin's \
         spec.pluginConfig, an EnvoyExtensionPolicy's spec.wasm[].config, and Envoy's Wasm \
         HTTP filter)"
            .to_string()
    };
    report.push(name, Level::Error, text);
}

pub(super) fn entry_name(plan: &Plan, i: usize) -> String {
    match plan.entries.get(i) {
        Some(e) => format!("agents[{i}] ({})", e.id),
        None => format!("agents[{i}]"),
    }
}

/// `model_from: body` needs `allow_on_headers_stop_iteration`, which neither
/// a WasmPlugin nor an EnvoyExtensionPolicy can set: OpenAI requests would
/// stall. Only a configuration that dispatches by model is affected.
fn body_without_stop_iteration(
    report: &mut Report,
    at: &str,
    found: &Found,
    plan: &Plan,
    patched: &dyn Fn(Platform) -> bool,
) {
    let platform = match found.origin {
        Origin::WasmPlugin { .. } => Platform::Istio,
        Origin::ExtensionPolicy { .. } => Platform::EnvoyGateway,
        _ => return,
    };
    // MCP entries with tool rules read their messages the same way.
    let ruled = plan.entries.iter().filter(|e| e.mcp.is_some()).count();
    if plan.openai.model_from != ModelSource::Body
        || (plan.models.is_empty() && ruled == 0)
        || patched(platform)
    {
        return;
    }
    let advice = match platform {
        Platform::Istio => {
            "a WasmPlugin cannot set allow_on_headers_stop_iteration, so every OpenAI POST \
             would stall and fail. Set `openai: {model_from: metadata}` and apply the \
             json_to_metadata EnvoyFilter (istio/envoyfilter-json-to-metadata.yaml), or check \
             this together with an EnvoyFilter that sets allow_on_headers_stop_iteration \
             (istio/body-mode/envoyfilter-agentroute.yaml)"
        }
        Platform::EnvoyGateway => {
            "an EnvoyExtensionPolicy cannot set allow_on_headers_stop_iteration, so every \
             OpenAI POST would stall and fail. Set `openai: {model_from: metadata}` and apply \
             the json_to_metadata EnvoyPatchPolicy \
             (envoy/gateway/patchpolicy-json-to-metadata.yaml), or check this together with an \
             EnvoyPatchPolicy that sets allow_on_headers_stop_iteration on the Wasm filter"
        }
    };
    let what = if plan.models.is_empty() {
        format!(
            "{ruled} MCP entr{} with tool rules read(s) JSON-RPC messages from the request body \
             (the same setting)",
            if ruled == 1 { "y" } else { "ies" }
        )
    } else {
        format!(
            "{} model id(s) dispatch by the request body",
            plan.models.len()
        )
    };
    report.push(
        at,
        Level::Error,
        format!("openai.model_from is \"body\" (the default) and {what}, but {advice}"),
    );
}

/// The Gateways a WasmPlugin or EnvoyExtensionPolicy configuration is for;
/// `None` for other configurations (bootstraps use `cluster_header`, not
/// HTTPRoutes). An empty list: any Gateway.
fn policy_gateways(found: &Found) -> Option<&[check::GatewayRef]> {
    match &found.origin {
        Origin::WasmPlugin { gateways, .. } | Origin::ExtensionPolicy { gateways } => {
            Some(gateways)
        }
        _ => None,
    }
}

fn on_same_gateway(policy: &[check::GatewayRef], route: &HeaderRoute) -> bool {
    gateways_meet(policy, &route.gateways)
}

/// Two lists of Gateways name one in common (an empty list: any Gateway).
fn gateways_meet(a: &[check::GatewayRef], b: &[check::GatewayRef]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.iter().any(|y| x.matches(y)))
}

/// The platform a WasmPlugin or EnvoyExtensionPolicy configuration runs on.
fn platform(found: &Found) -> Option<Platform> {
    match found.origin {
        Origin::WasmPlugin { .. } => Some(Platform::Istio),
        Origin::ExtensionPolicy { .. } => Some(Platform::EnvoyGateway),
        _ => None,
    }
}

/// The patched-in `cluster_header` routes this configuration's requests
/// take: same platform, same Gateway, on its dispatch header.
fn cluster_header_routes<'a>(
    found: &Found,
    plan: &Plan,
    dispatch_routes: &[&'a DispatchRoute],
) -> Vec<&'a DispatchRoute> {
    let (Some(platform), Some(gateways)) = (platform(found), policy_gateways(found)) else {
        return Vec::new();
    };
    dispatch_routes
        .iter()
        .filter(|d| {
            d.platform == platform
                && d.header == plan.dispatch_header
                && gateways_meet(gateways, &d.gateways)
        })
        .copied()
        .collect()
}

fn cluster_pattern(platform: Platform) -> &'static str {
    match platform {
        Platform::Istio => {
            "Istio names a rule's cluster outbound|PORT||SERVICE.NAMESPACE.svc.cluster.local"
        }
        Platform::EnvoyGateway => {
            "Envoy Gateway names a rule's cluster httproute/NAMESPACE/ROUTE/rule/INDEX"
        }
    }
}

/// With a `cluster_header` route, every entry's backend must be the cluster
/// the controller makes of one of the run's HTTPRoute rules for the policy's
/// Gateway (when the run holds any); and the rules on the dispatch header
/// belong on a host of their own, or every request still scans them.
fn backends_without_clusters(
    report: &mut Report,
    at: &str,
    found: &Found,
    plan: &Plan,
    routes: &[&HeaderRoute],
    fast: &[&DispatchRoute],
) {
    let (Some(platform), Some(gateways), Some(first)) =
        (platform(found), policy_gateways(found), fast.first())
    else {
        return;
    };
    let candidates: Vec<&&HeaderRoute> = routes
        .iter()
        .filter(|r| on_same_gateway(gateways, r))
        .collect();
    if candidates.is_empty() {
        return;
    }
    for (i, entry) in plan.entries.iter().enumerate() {
        for (what, token) in dispatch_tokens(entry) {
            if let Some(rule) = candidates
                .iter()
                .find(|r| r.clusters.on(platform) == Some(token))
            {
                if rule.clusters.backend_refs > 1 {
                    report.push(
                        at,
                        Level::Warning,
                        format!(
                            "{}: {} has {} backendRefs, but the cluster_header route of {} sends \
                             every request to one cluster, {:?}",
                            entry_name(plan, i),
                            rule.location,
                            rule.clusters.backend_refs,
                            first.location,
                            token
                        ),
                    );
                }
                continue;
            }
            let hint = candidates
                .iter()
                .find(|r| r.header == plan.dispatch_header && r.value == token)
                .and_then(|r| Some((r, r.clusters.on(platform)?)));
            let text = match hint {
                Some((rule, cluster)) => format!(
                    "{}: {what} {:?} is the header value of {}, but the cluster_header route of {} \
                     sends requests to the cluster the header names: the backend must be that \
                     rule's cluster, {cluster:?}",
                    entry_name(plan, i),
                    token,
                    rule.location,
                    first.location
                ),
                None => format!(
                    "{}: {what} {:?} is the cluster of no HTTPRoute rule in this run: the \
                     cluster_header route of {} sends requests to the cluster the header names \
                     ({}), and a cluster that does not exist answers 503",
                    entry_name(plan, i),
                    token,
                    first.location,
                    cluster_pattern(platform)
                ),
            };
            report.push(at, Level::Error, text);
        }
    }

    let shared: Vec<&&&HeaderRoute> = candidates
        .iter()
        .filter(|r| r.header == plan.dispatch_header && r.hostnames.is_empty())
        .collect();
    if let Some(example) = shared.first() {
        report.push(
            at,
            Level::Warning,
            format!(
                "{} HTTPRoute rule(s) matching {} attach to every host (e.g. {}): Envoy tries \
                 them on every request's arrival, before the filter sets the header, so \
                 dispatch still grows with their number despite the cluster_header route of {}; \
                 give their HTTPRoutes a host of their own (hostnames: \
                 [backends.agentroute.invalid], as istio/large/httproutes.yaml)",
                shared.len(),
                plan.dispatch_header,
                example.location,
                first.location
            ),
        );
    }
}

/// Every entry's backend must be matched by some HTTPRoute rule on the
/// dispatch header, when the run holds HTTPRoutes for the policy's Gateway.
fn backends_without_routes(
    report: &mut Report,
    at: &str,
    found: &Found,
    plan: &Plan,
    routes: &[&HeaderRoute],
) {
    let Some(gateways) = policy_gateways(found) else {
        return;
    };
    let candidates: Vec<&&HeaderRoute> = routes
        .iter()
        .filter(|r| on_same_gateway(gateways, r))
        .collect();
    if candidates.is_empty() {
        return;
    }
    for (i, entry) in plan.entries.iter().enumerate() {
        for (what, token) in dispatch_tokens(entry) {
            let routed = candidates
                .iter()
                .any(|r| r.header == plan.dispatch_header && r.value == token);
            if !routed {
                report.push(
                    at,
                    Level::Error,
                    format!(
                        "{}: {what} {token:?} has no HTTPRoute rule matching {}: {token} in this \
                         run: the requests the filter sends it would match no agent route",
                        entry_name(plan, i),
                        plan.dispatch_header,
                    ),
                );
            }
        }
    }
}

/// The values an entry writes to the dispatch header: its backend, its
/// canary's, and its failover backends (each leads while the ones before
/// it are ejected), each needing a rule of its own.
fn dispatch_tokens(entry: &agentroute::config::Entry) -> Vec<(&'static str, &str)> {
    let mut tokens = vec![("backend", entry.backend.as_str())];
    if let Some(canary) = &entry.canary {
        tokens.push(("canary backend", canary.backend.as_str()));
    }
    if let Some(failover) = &entry.failover {
        tokens.extend(
            failover
                .backends
                .iter()
                .map(|b| ("failover backend", b.as_str())),
        );
    }
    tokens
}

/// An HTTPRoute rule on a dispatch header whose value no entry has (nor,
/// behind a `cluster_header` route, its cluster).
fn orphan_route(
    report: &mut Report,
    name: &str,
    route: &HeaderRoute,
    compiled: &[Compiled],
    dispatch_routes: &[&DispatchRoute],
) {
    let relevant: Vec<(&Plan, Option<&str>)> = compiled
        .iter()
        .filter_map(|c| {
            let plan = c.plan.as_ref().ok()?;
            let gateways = policy_gateways(c.found)?;
            let cluster = platform(c.found)
                .filter(|_| !cluster_header_routes(c.found, plan, dispatch_routes).is_empty())
                .and_then(|p| route.clusters.on(p));
            (plan.dispatch_header == route.header && on_same_gateway(gateways, route))
                .then_some((plan, cluster))
        })
        .collect();
    let claimed = relevant.iter().any(|(plan, cluster)| {
        plan.entries.iter().any(|e| {
            dispatch_tokens(e)
                .iter()
                .any(|(_, t)| *t == route.value || Some(*t) == *cluster)
        })
    });
    if relevant.is_empty() || claimed {
        return;
    }
    report.push(
        &format!("{name}: {}", route.location),
        Level::Warning,
        format!(
            "{}: {:?} is the backend of no entry: a leftover rule, no request carries it",
            route.header, route.value
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `files` (name, text) as one run.
    pub(crate) fn run(files: &[(&str, &str)]) -> Report {
        let inputs: Vec<Input> = files
            .iter()
            .map(|(name, text)| Input {
                name: name.to_string(),
                scan: check::scan(text).map_err(|e| e.0),
            })
            .collect();
        check_run(&inputs, None)
    }

    fn lines(report: &Report, level: Level) -> Vec<String> {
        report
            .lines
            .iter()
            .filter(|l| l.level == level)
            .map(Line::to_string)
            .collect()
    }

    const WASMPLUGIN: &str = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
        metadata: {name: agentroute, namespace: istio-ingress}\n\
        spec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agents}]\n  \
        url: oci://x/y:1\n  pluginConfig:\n    openai: {model_from: metadata}\n    agents:\n    \
        - {name: a, namespace: prod, backend: prod-a}\n    \
        - {name: b, namespace: prod, kind: mcp, backend: prod-b}\n";

    const ROUTES: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
        metadata: {name: agents, namespace: prod}\n\
        spec:\n  parentRefs: [{name: agents, namespace: istio-ingress}]\n  rules:\n  \
        - name: a\n    matches: [{headers: [{name: X-Agent-Backend, value: prod-a}]}]\n    \
          backendRefs: [{name: a, port: 8000}]\n  \
        - name: b\n    matches: [{headers: [{type: Exact, name: x-agent-backend, value: prod-b}]}]\n    \
          backendRefs: [{name: b, port: 8000}]\n";

    #[test]
    fn an_input_without_any_configuration_fails() {
        for (input, says) in [
            ("", "empty input: no agentroute configuration"),
            ("# only a comment\n---\n", "empty input"),
            (
                "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
                "no agentroute configuration found",
            ),
        ] {
            let report = run(&[("f.yaml", input)]);
            assert!(!report.ok(), "{input:?}: {report}");
            assert!(report.to_string().contains(says), "{input:?}: {report}");
        }
    }

    #[test]
    fn a_misspelt_plugin_config_key_fails_and_names_the_key() {
        for key in ["pluginconfig", "pluginConfg", "PluginConfig"] {
            let input = WASMPLUGIN.replace("pluginConfig", key);
            let report = run(&[("wp.yaml", &input)]);
            assert_eq!(
                lines(&report, Level::Error),
                [format!(
                    "wp.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: no \
                     spec.pluginConfig: the plugin would get an empty configuration and route \
                     nothing (spec.{key} is not pluginConfig: keys are case-sensitive and exact)"
                )],
                "{report}"
            );
        }
        // An EnvoyExtensionPolicy module without `config`.
        let policy = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
            metadata: {name: p, namespace: eg}\nspec:\n  wasm:\n  - name: agentroute\n    \
            confg: {agents: []}\n";
        let report = run(&[("p.yaml", policy)]);
        assert!(
            report
                .to_string()
                .contains("error: no spec.wasm[0].config: the plugin would get an empty configuration and route nothing (spec.wasm[0].confg is not config"),
            "{report}"
        );
    }

    #[test]
    fn zero_entries_pass_with_a_warning() {
        let report = run(&[("c.json", "{\"unmatched\": \"reject\"}")]);
        assert!(report.ok(), "{report}");
        assert_eq!(
            report.to_string(),
            "c.json: ok: 0 entries, 0 routes, 0 models\n\
             c.json: warning: no agents: the configuration has no entries, so the filter routes nothing\n"
        );
    }

    #[test]
    fn a_dropped_shorthand_is_a_warning_naming_both_entries() {
        let config = r#"{"agents":[
            {"name":"a","namespace":"x","backend":"1"},
            {"name":"a","namespace":"y","backend":"2"},
            {"name":"b","backend":"3"},
            {"name":"c","backend":"4","prefixes":[{"prefix":"/b"}]},
            {"name":"models","namespace":"m","kind":"modelapi","backend":"5"}]}"#;
        let report = run(&[("c.json", config)]);
        assert!(report.ok(), "{report}");
        assert_eq!(
            lines(&report, Level::Warning),
            [
                "c.json: warning: agents[0] (x/a): shorthand /a dropped: agents[1] (y/a) has the same name; the entry keeps its other paths",
                "c.json: warning: agents[1] (y/a): shorthand /a dropped: agents[0] (x/a) has the same name; the entry keeps its other paths",
                "c.json: warning: agents[2] (default/b): shorthand /b dropped: agents[3] (default/c) claims it as an explicit prefix (agents[3].prefixes[0]); the entry keeps its other paths",
                "c.json: warning: agents[4] (m/models): shorthand /models dropped: \"models\" is a segment of the OpenAI paths the gateway serves; the entry keeps its other paths",
            ]
        );
    }

    #[test]
    fn mcp_tool_rules_read_like_models() {
        let body = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: a, namespace: b}\nspec:\n  \
                    url: oci://x/y:1\n  pluginConfig:\n    agents:\n    - {name: t, kind: mcp, backend: t, mcp: {tools: {deny: [x]}}}\n";
        let report = run(&[("wasmplugin.yaml", body)]);
        let errors = lines(&report, Level::Error);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("1 MCP entry with tool rules")),
            "{report}"
        );
        let metadata = body.replace(
            "  pluginConfig:\n",
            "  pluginConfig:\n    openai: {model_from: metadata}\n",
        );
        let report = run(&[("wasmplugin.yaml", metadata.as_str())]);
        assert!(report.ok(), "{report}");
    }

    #[test]
    fn model_from_body_in_a_wasm_plugin_fails_unless_patched() {
        let body = WASMPLUGIN.replace("    openai: {model_from: metadata}\n", "");
        let report = run(&[("wp.yaml", &body)]);
        let errors = lines(&report, Level::Error);
        assert_eq!(errors.len(), 1, "{report}");
        assert!(
            errors[0].contains("openai.model_from is \"body\" (the default) and 1 model id(s)"),
            "{report}"
        );
        assert!(
            errors[0].contains(
                "Set `openai: {model_from: metadata}` and apply the json_to_metadata EnvoyFilter"
            ),
            "{report}"
        );
        // The stop-iteration EnvoyFilter in the same run (another file).
        let patch = "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\n\
            metadata: {name: body, namespace: istio-ingress}\nspec:\n  configPatches:\n  \
            - applyTo: EXTENSION_CONFIG\n    patch: {operation: ADD, value: {name: x, typed_config: \
            {\"@type\": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm, config: \
            {allow_on_headers_stop_iteration: true}}}}\n";
        let report = run(&[("wp.yaml", &body), ("ef.yaml", patch)]);
        assert!(report.ok(), "{report}");
        // No model to dispatch: nothing stalls (an mcp entry has no model id).
        let mcp_only = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n\
            metadata: {name: p}\nspec:\n  pluginConfig: {agents: [{name: t, kind: mcp, backend: t}]}\n";
        assert!(run(&[("wp.yaml", mcp_only)]).ok());
        // The same on Envoy Gateway; an Istio patch does not help there.
        let policy = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
            metadata: {name: p, namespace: eg}\nspec:\n  wasm:\n  - name: agentroute\n    \
            config: {agents: [{name: m, kind: modelapi, backend: m, models: [gpt]}]}\n";
        let report = run(&[("p.yaml", policy), ("ef.yaml", patch)]);
        assert!(
            lines(&report, Level::Error)
                .first()
                .is_some_and(|e| e.contains("envoy/gateway/patchpolicy-json-to-metadata.yaml")),
            "{report}"
        );
        // A bootstrap is not affected: it sets the flag itself.
        assert!(run(&[("c.json", r#"{"agents":[{"name":"a","backend":"b"}]}"#)]).ok());
    }

    #[test]
    fn dispatch_tokens_are_cross_checked_against_http_routes() {
        assert!(run(&[("wp.yaml", WASMPLUGIN), ("r.yaml", ROUTES)]).ok());
        // An entry without a rule fails; a rule without an entry warns.
        let routes = ROUTES.replace("value: prod-b", "value: prod-old");
        let report = run(&[("wp.yaml", WASMPLUGIN), ("r.yaml", &routes)]);
        assert_eq!(
            lines(&report, Level::Error),
            ["wp.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: agents[1] (prod/b): backend \"prod-b\" has no HTTPRoute rule matching x-agent-backend: prod-b in this run: the requests the filter sends it would match no agent route"],
            "{report}"
        );
        assert_eq!(
            lines(&report, Level::Warning),
            ["r.yaml: HTTPRoute prod/agents rules[1] (b): warning: x-agent-backend: \"prod-old\" is the backend of no entry: a leftover rule, no request carries it"],
            "{report}"
        );
        assert!(report.to_string().contains(
            "r.yaml: no agentroute configuration in this file; its 2 HTTPRoute header rule(s)"
        ));
        // Routes of another Gateway are not this configuration's.
        let elsewhere = ROUTES.replace("namespace: istio-ingress", "namespace: other");
        assert!(run(&[("wp.yaml", WASMPLUGIN), ("r.yaml", &elsewhere)]).ok());
        // Without a configuration in the run, HTTPRoutes alone are no input.
        assert!(!run(&[("r.yaml", ROUTES)]).ok());
    }

    /// An Istio EnvoyFilter inserting the cluster_header route for Gateway
    /// `agents` (istio/large/envoyfilter-dispatch-route.yaml).
    const ISTIO_DISPATCH_ROUTE: &str =
        "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\n\
        metadata: {name: dispatch, namespace: istio-ingress}\n\
        spec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agents}]\n  \
        configPatches:\n  - applyTo: HTTP_ROUTE\n    match: {context: GATEWAY}\n    \
        patch: {operation: INSERT_FIRST, value: {name: d, match: {prefix: /}, \
        route: {cluster_header: X-Agent-Backend}}}\n";

    /// The cluster names Istio gives ROUTES' rules.
    const ISTIO_A: &str = "outbound|8000||a.prod.svc.cluster.local";
    const ISTIO_B: &str = "outbound|8000||b.prod.svc.cluster.local";

    #[test]
    fn with_a_cluster_header_route_backends_are_the_controllers_cluster_names() {
        let clusters = WASMPLUGIN
            .replace("backend: prod-a", &format!("backend: \"{ISTIO_A}\""))
            .replace("backend: prod-b", &format!("backend: \"{ISTIO_B}\""));
        let own_host = ROUTES.replace(
            "  parentRefs:",
            "  hostnames: [backends.agentroute.invalid]\n  parentRefs:",
        );
        let report = run(&[
            ("wp.yaml", &clusters),
            ("ef.yaml", ISTIO_DISPATCH_ROUTE),
            ("r.yaml", &own_host),
        ]);
        assert!(report.ok(), "{report}");
        assert_eq!(report.count(Level::Warning), 0, "{report}");
        assert!(
            report.to_string().contains(
                "ef.yaml: no agentroute configuration in this file; its cluster_header route on \
                 x-agent-backend makes the backends"
            ),
            "{report}"
        );

        // Tokens left as they were: each names the cluster the rule makes.
        let report = run(&[
            ("wp.yaml", WASMPLUGIN),
            ("ef.yaml", ISTIO_DISPATCH_ROUTE),
            ("r.yaml", &own_host),
        ]);
        assert_eq!(
            lines(&report, Level::Error),
            [
                format!("wp.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: agents[0] (prod/a): backend \"prod-a\" is the header value of HTTPRoute prod/agents rules[0] (a), but the cluster_header route of EnvoyFilter istio-ingress/dispatch sends requests to the cluster the header names: the backend must be that rule's cluster, \"{ISTIO_A}\""),
                format!("wp.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: agents[1] (prod/b): backend \"prod-b\" is the header value of HTTPRoute prod/agents rules[1] (b), but the cluster_header route of EnvoyFilter istio-ingress/dispatch sends requests to the cluster the header names: the backend must be that rule's cluster, \"{ISTIO_B}\""),
            ],
            "{report}"
        );

        // A misspelt cluster; and the rules next to the cluster_header route.
        let wrong = clusters.replace("||b.prod", "||bb.prod");
        let report = run(&[
            ("wp.yaml", &wrong),
            ("ef.yaml", ISTIO_DISPATCH_ROUTE),
            ("r.yaml", ROUTES),
        ]);
        let errors = lines(&report, Level::Error);
        assert_eq!(errors.len(), 1, "{report}");
        assert!(
            errors[0].contains("agents[1] (prod/b): backend \"outbound|8000||bb.prod.svc.cluster.local\" is the cluster of no HTTPRoute rule in this run"),
            "{report}"
        );
        let warnings = lines(&report, Level::Warning);
        assert!(
            warnings
                .iter()
                .any(|w| w
                    .contains("2 HTTPRoute rule(s) matching x-agent-backend attach to every host")),
            "{report}"
        );
        // Rule a is no leftover: its cluster is agents[0]'s backend.
        assert!(
            warnings
                .iter()
                .all(|w| !w.contains("rules[0] (a): warning")),
            "{report}"
        );

        // Another Gateway's patch, or an Envoy Gateway one, changes nothing.
        let elsewhere = ISTIO_DISPATCH_ROUTE.replace("name: agents}", "name: other}");
        let report = run(&[
            ("wp.yaml", &clusters),
            ("ef.yaml", &elsewhere),
            ("r.yaml", ROUTES),
        ]);
        assert!(!report.ok(), "{report}");
        assert!(
            report
                .to_string()
                .contains("has no HTTPRoute rule matching"),
            "{report}"
        );
    }

    #[test]
    fn envoy_gateway_clusters_are_named_after_route_and_rule_index() {
        let policy = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
            metadata: {name: agentroute, namespace: istio-ingress}\nspec:\n  \
            targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: agents}]\n  \
            wasm:\n  - name: agentroute\n    config:\n      openai: {model_from: metadata}\n      agents:\n      \
            - {name: a, namespace: prod, backend: httproute/prod/agents/rule/0}\n      \
            - {name: b, namespace: prod, kind: mcp, backend: httproute/prod/agents/rule/2}\n";
        let patch = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyPatchPolicy\n\
            metadata: {name: dispatch, namespace: istio-ingress}\nspec:\n  \
            targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: agents}\n  \
            type: JSONPatch\n  jsonPatches:\n  - type: type.googleapis.com/envoy.config.route.v3.RouteConfiguration\n    \
            name: istio-ingress/agents/http\n    operation: {op: add, jsonPath: \"$.virtual_hosts[*]\", path: /routes/0, \
            value: {match: {prefix: /}, route: {cluster_header: x-agent-backend}}}\n";
        let report = run(&[("p.yaml", policy), ("epp.yaml", patch), ("r.yaml", ROUTES)]);
        assert_eq!(
            lines(&report, Level::Error),
            ["p.yaml: EnvoyExtensionPolicy istio-ingress/agentroute spec.wasm[0].config (agentroute): error: agents[1] (prod/b): backend \"httproute/prod/agents/rule/2\" is the cluster of no HTTPRoute rule in this run: the cluster_header route of EnvoyPatchPolicy istio-ingress/dispatch sends requests to the cluster the header names (Envoy Gateway names a rule's cluster httproute/NAMESPACE/ROUTE/rule/INDEX), and a cluster that does not exist answers 503"],
            "{report}"
        );
        // An Istio patch is not Envoy Gateway's: the tokens are checked.
        let report = run(&[
            ("p.yaml", policy),
            ("ef.yaml", ISTIO_DISPATCH_ROUTE),
            ("r.yaml", ROUTES),
        ]);
        assert_eq!(lines(&report, Level::Error).len(), 2, "{report}");
        // Two backendRefs in the rule an entry's cluster comes from.
        let split = ROUTES.replace(
            "backendRefs: [{name: a, port: 8000}]",
            "backendRefs: [{name: a, port: 8000}, {name: a2, port: 8000}]",
        );
        let fixed = policy.replace("rule/2", "rule/1");
        let report = run(&[("p.yaml", &fixed), ("epp.yaml", patch), ("r.yaml", &split)]);
        assert!(report.ok(), "{report}");
        assert!(
            lines(&report, Level::Warning).iter().any(|w| w.contains(
                "agents[0] (prod/a): HTTPRoute prod/agents rules[0] (a) has 2 backendRefs"
            )),
            "{report}"
        );
    }

    #[test]
    fn failover_backends_are_tokens_of_their_own() {
        let failover = WASMPLUGIN.replace(
            "backend: prod-a}",
            "backend: prod-a, failover: {backends: [prod-a-backup]}}",
        );
        let report = run(&[("wp.yaml", &failover), ("r.yaml", ROUTES)]);
        assert_eq!(
            lines(&report, Level::Error),
            ["wp.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: agents[0] (prod/a): failover backend \"prod-a-backup\" has no HTTPRoute rule matching x-agent-backend: prod-a-backup in this run: the requests the filter sends it would match no agent route"],
            "{report}"
        );
        let routes = format!(
            "{ROUTES}  - name: a-backup\n    matches: [{{headers: [{{name: x-agent-backend, value: prod-a-backup}}]}}]\n    \
             backendRefs: [{{name: a-backup, port: 8000}}]\n"
        );
        let report = run(&[("wp.yaml", &failover), ("r.yaml", &routes)]);
        assert!(report.ok(), "{report}");
    }

    #[test]
    fn a_canary_backend_is_a_token_of_its_own() {
        let split = WASMPLUGIN.replace(
            "backend: prod-a}",
            "backend: prod-a, canary: {backend: prod-a-v2, weight: 10}}",
        );
        let report = run(&[("wp.yaml", &split), ("r.yaml", ROUTES)]);
        assert_eq!(
            lines(&report, Level::Error),
            ["wp.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: agents[0] (prod/a): canary backend \"prod-a-v2\" has no HTTPRoute rule matching x-agent-backend: prod-a-v2 in this run: the requests the filter sends it would match no agent route"],
            "{report}"
        );
        // With its rule the run is clean, and the rule is no leftover.
        let routes = format!(
            "{ROUTES}  - name: a-v2\n    matches: [{{headers: [{{name: x-agent-backend, value: prod-a-v2}}]}}]\n    \
             backendRefs: [{{name: a-v2, port: 8000}}]\n"
        );
        let report = run(&[("wp.yaml", &split), ("r.yaml", &routes)]);
        assert!(report.ok(), "{report}");
        assert_eq!(report.count(Level::Warning), 0, "{report}");
    }
}
