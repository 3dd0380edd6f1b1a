//! The trust model of `agentroute generate`, as a hostile tenant tries it:
//! hosts and pattern model ids are claims the platform grants
//! (`--allow-hosts`, `--trust-namespace`), two tenants' clashing claims go
//! to the older resource without stopping anyone else, a broken resource is
//! left out (exit 3), an empty result is refused (exit 4), and a namespace
//! named like another tenant's agent is warned about.

// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use agentroute_cli::generate::{self, Options, Output, Target};
use serde_json::Value;

/// An Omnia AgentRuntime exposing its REST facade on `host`.
fn runtime(ns: &str, name: &str, created: &str, host: &str) -> String {
    format!(
        "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\n\
         metadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\n\
         spec: {{facades: [{{type: rest, expose: {{enabled: true, host: '{host}'}}}}]}}\n---\n"
    )
}

/// A KAOS Proxy ModelAPI serving `models`.
fn model_api(ns: &str, name: &str, created: &str, models: &str) -> String {
    format!(
        "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\n\
         metadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\n\
         spec: {{mode: Proxy, proxyConfig: {{models: {models}}}}}\n---\n"
    )
}

fn kaos_agent(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{modelAPI: m}}\n---\n"
    )
}

fn options(hosts: &[&str], trusted: &[&str]) -> Options {
    let mut options = Options {
        target: Target::Config,
        ..Options::default()
    };
    options.trust.allow_hosts = hosts.iter().map(|h| h.to_string()).collect();
    options.trust.trusted_namespaces = trusted.iter().map(|n| n.to_string()).collect();
    options
}

fn run(yaml: &str, options: &Options) -> (Output, Value) {
    let out = generate::generate(&[("in.yaml".to_string(), yaml.to_string())], options).unwrap();
    let config = serde_json::from_str(&out.text).unwrap();
    (out, config)
}

/// `namespace/name` → the entry.
fn entry<'c>(config: &'c Value, id: &str) -> Option<&'c Value> {
    config["agents"].as_array().unwrap().iter().find(|e| {
        format!(
            "{}/{}",
            e["namespace"].as_str().unwrap(),
            e["name"].as_str().unwrap()
        ) == id
    })
}

#[test]
fn host_claims_need_the_allow_list_and_wildcards_a_trusted_namespace() {
    let input = [
        runtime("team-evil", "grab", "2024-01-01T00:00:00Z", "*.example.com"),
        runtime(
            "team-evil",
            "gw",
            "2024-01-01T00:00:00Z",
            "agents.example.com",
        ),
        runtime(
            "team-a",
            "support",
            "2024-01-01T00:00:00Z",
            "support.agents.example.com",
        ),
        runtime(
            "team-b",
            "all",
            "2024-01-01T00:00:00Z",
            "*.agents.example.com",
        ),
        runtime(
            "platform",
            "wild",
            "2024-01-01T00:00:00Z",
            "*.tools.agents.example.com",
        ),
    ]
    .concat();
    // No --allow-hosts: no host at all; every agent still generated.
    let (out, config) = run(&input, &options(&[], &[]));
    assert_eq!(config["agents"].as_array().unwrap().len(), 5);
    assert!(!out.text.contains("\"hosts\""), "{}", out.text);
    assert!(out.left_out.is_empty());
    assert!(out.warnings.contains(&"Omnia AgentRuntime team-evil/grab: spec.facades[0].expose.host: host \"*.example.com\" not granted, no --allow-hosts is given, so no resource may claim a host; the entry is generated without it".to_string()), "{:?}", out.warnings);
    // Allowed below *.agents.example.com: the exact name only; the gateway's
    // own host and *.example.com stay out; a *. claim needs trust.
    let (out, config) = run(&input, &options(&["*.agents.example.com"], &["platform"]));
    let hosts = |id: &str| entry(&config, id).unwrap()["hosts"].clone();
    assert_eq!(
        hosts("team-a/support"),
        serde_json::json!(["support.agents.example.com"])
    );
    assert_eq!(hosts("team-evil/grab"), Value::Null);
    assert_eq!(hosts("team-evil/gw"), Value::Null);
    assert_eq!(hosts("team-b/all"), Value::Null);
    assert_eq!(
        hosts("platform/wild"),
        serde_json::json!(["*.tools.agents.example.com"])
    );
    let dropped: Vec<&String> = out
        .warnings
        .iter()
        .filter(|w| w.contains("not granted"))
        .collect();
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    assert!(dropped.iter().any(|w| w.starts_with("Omnia AgentRuntime team-b/all: spec.facades[0].expose.host: host \"*.agents.example.com\" not granted, a *. host takes every name below it: only a --trust-namespace may claim one")), "{dropped:?}");
    assert!(dropped.iter().any(|w| w.contains("host \"agents.example.com\" not granted, not within --allow-hosts *.agents.example.com")), "{dropped:?}");
}

#[test]
fn pattern_model_ids_only_from_trusted_namespaces() {
    let input = [
        model_api(
            "team-evil",
            "catch",
            "2020-01-01T00:00:00Z",
            "['*', 'openai/*', gpt-evil]",
        ),
        model_api(
            "platform",
            "litellm",
            "2025-01-01T00:00:00Z",
            "['*', gpt-4o]",
        ),
    ]
    .concat();
    let (out, config) = run(&input, &options(&[], &["platform"]));
    assert_eq!(
        entry(&config, "team-evil/catch").unwrap()["models"],
        serde_json::json!(["gpt-evil"])
    );
    assert_eq!(
        entry(&config, "platform/litellm").unwrap()["models"],
        serde_json::json!(["*", "gpt-4o"])
    );
    assert_eq!(
        out.warnings,
        [
            "KAOS ModelAPI team-evil/catch: spec.proxyConfig.models[0]: model id \"*\" not granted, a pattern id takes every model no one else serves: only a --trust-namespace may claim one (team-evil is not trusted); the entry is generated without it",
            "KAOS ModelAPI team-evil/catch: spec.proxyConfig.models[1]: model id \"openai/*\" not granted, a pattern id takes every model no one else serves: only a --trust-namespace may claim one (team-evil is not trusted); the entry is generated without it",
        ]
    );
}

#[test]
fn clashes_go_to_the_older_resource_and_the_rest_is_generated() {
    let input = [
        // Newer, listed first, sorts first by namespace: still loses.
        model_api("aaa", "newer", "2025-06-01T00:00:00Z", "[gpt-4o, own-a]"),
        model_api("zzz", "older", "2024-06-01T00:00:00Z", "[gpt-4o, own-z]"),
        // A model id that is another agent's own id: never granted.
        model_api("team-evil", "steal", "2020-01-01T00:00:00Z", "[team-a/agent]"),
        kaos_agent("team-a", "agent"),
        runtime("one", "first", "2024-01-01T00:00:00Z", "x.agents.example.com"),
        runtime("two", "second", "2024-01-02T00:00:00Z", "X.agents.example.com"),
        // One entry from two resources: the older keeps it.
        "apiVersion: kaos.tools/v1alpha1\nkind: MCPServer\nmetadata: {name: dup, namespace: n, creationTimestamp: '2023-01-01T00:00:00Z'}\nspec: {}\n---\n".to_string(),
        "apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {name: dup, namespace: n, creationTimestamp: '2024-01-01T00:00:00Z'}\nspec: {}\n---\n".to_string(),
    ]
    .concat();
    let opts = options(&["*.agents.example.com"], &[]);
    let (out, config) = run(&input, &opts);
    assert!(out.left_out.is_empty(), "{:?}", out.left_out);
    assert_eq!(
        entry(&config, "aaa/newer").unwrap()["models"],
        serde_json::json!(["own-a"])
    );
    assert_eq!(
        entry(&config, "zzz/older").unwrap()["models"],
        serde_json::json!(["gpt-4o", "own-z"])
    );
    assert_eq!(
        entry(&config, "team-evil/steal").unwrap().get("models"),
        None
    );
    assert_eq!(
        entry(&config, "one/first").unwrap()["hosts"],
        serde_json::json!(["x.agents.example.com"])
    );
    assert_eq!(entry(&config, "two/second").unwrap().get("hosts"), None);
    assert_eq!(entry(&config, "n/dup").unwrap()["kind"], "mcp");
    for needle in [
        "KAOS ModelAPI aaa/newer: spec.proxyConfig.models[0]: model id \"gpt-4o\" not granted, KAOS ModelAPI zzz/older (created 2024-06-01T00:00:00Z) claims it and goes first",
        "KAOS ModelAPI team-evil/steal: spec.proxyConfig.models[0]: model id \"team-a/agent\" not granted, it is the agent id of KAOS Agent team-a/agent",
        "Omnia AgentRuntime two/second: spec.facades[0].expose.host: host \"x.agents.example.com\" not granted, Omnia AgentRuntime one/first (created 2024-01-01T00:00:00Z) claims it",
        "KAOS Agent n/dup: left out: entry n/dup is already generated from KAOS MCPServer n/dup (created 2023-01-01T00:00:00Z)",
    ] {
        assert!(out.warnings.iter().any(|w| w.starts_with(needle)), "{needle}\n{:#?}", out.warnings);
    }
    // The same bytes whatever the order of the documents.
    let mut docs: Vec<&str> = input.split("---\n").filter(|d| !d.is_empty()).collect();
    docs.reverse();
    let (again, _) = run(&docs.join("---\n"), &opts);
    assert_eq!(again.text, out.text);
    // A trusted namespace goes first whatever its age.
    let (_, config) = run(&input, &options(&[], &["aaa"]));
    assert_eq!(
        entry(&config, "aaa/newer").unwrap()["models"],
        serde_json::json!(["gpt-4o", "own-a"])
    );
}

#[test]
fn a_broken_or_refused_resource_is_left_out_alone() {
    let input = [
        kaos_agent("team-a", "fine"),
        // A field of the wrong type: unreadable, not "no models".
        "apiVersion: kaos.tools/v1alpha1\nkind: ModelAPI\nmetadata: {name: m, namespace: team-b}\nspec: {mode: Hosted, hostedConfig: 7}\n---\n".to_string(),
        // Fine as a resource, refused by the filter: /v1/models is OpenAI's.
        kaos_agent("v1", "models"),
        "apiVersion: omnia.altairalabs.ai/v1alpha1\nkind: AgentRuntime\nmetadata: {name: r, namespace: team-c}\nspec: {facades: [{type: rest, expose: 'yes'}]}\n---\n".to_string(),
    ]
    .concat();
    let (out, config) = run(&input, &options(&[], &[]));
    let ids: Vec<String> = config["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["namespace"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(ids, ["team-a/fine"]);
    assert_eq!(out.left_out.len(), 3, "{:#?}", out.left_out);
    assert_eq!(out.left_out[0], "in.yaml: document 2: kaos.tools ModelAPI team-b/m: spec.hostedConfig: expected an object, found a number");
    assert_eq!(out.left_out[1], "in.yaml: document 4: omnia.altairalabs.ai AgentRuntime team-c/r: spec.facades[0].expose: expected an object, found a string");
    assert!(out.left_out[2].starts_with("in.yaml: document 3: KAOS Agent v1/models: left out: the filter would refuse its entry: agents[1].name: "), "{}", out.left_out[2]);
}

#[test]
fn an_empty_result_is_refused_unless_allowed() {
    // A misspelt kind and group: nothing maps.
    let input =
        "apiVersion: kaos.tools/v1alpha1\nkind: Agents\nmetadata: {name: a, namespace: n}\n---\n\
                 apiVersion: kaos.tool/v1alpha1\nkind: Agent\nmetadata: {name: b, namespace: n}\n";
    let err =
        generate::generate(&[("in.yaml".into(), input.into())], &options(&[], &[])).unwrap_err();
    let generate::Refusal::Empty { why, output } = err else {
        panic!("{err:?}")
    };
    assert!(
        why.starts_with(
            "refusing to write a configuration without agents (from 2 resource(s), 0 left out)"
        ),
        "{why}"
    );
    assert!(output.text.is_empty());
    assert_eq!(output.warnings.len(), 2, "{:?}", output.warnings);
    let mut allowed = options(&[], &[]);
    allowed.allow_empty = true;
    let (out, config) = run(input, &allowed);
    assert_eq!(config["agents"], serde_json::json!([]));
    assert!(out.left_out.is_empty());
}

#[test]
fn a_namespace_named_like_an_agent_is_warned_about() {
    let input = [
        kaos_agent("team-a", "billing"),
        kaos_agent("billing", "invoices"),
    ]
    .concat();
    let (out, _) = run(&input, &options(&[], &[]));
    assert_eq!(
        out.warnings,
        ["generated configuration: agents[1] (team-a/billing): shorthand /billing is shadowed: /billing/invoices/… and /billing/agent/invoices/… go(es) to agents[0] (billing/invoices), not to this entry; its namespaced path /team-a/billing is not"]
    );
}

// --- the binary ---

fn agentroute(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentroute"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_says_claims_and_exits_by_what_it_wrote() {
    let input = [
        runtime("team-evil", "grab", "2024-01-01T00:00:00Z", "*.example.com"),
        runtime(
            "team-a",
            "support",
            "2024-01-01T00:00:00Z",
            "support.agents.example.com",
        ),
        model_api("platform", "litellm", "2025-01-01T00:00:00Z", "['*']"),
    ]
    .concat();
    let (code, out, err) = agentroute(
        &[
            "generate",
            "--allow-hosts",
            "*.agents.example.com,tools.example.com",
            "--trust-namespace",
            "platform",
            "-",
        ],
        &input,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"support.agents.example.com\""), "{out}");
    assert!(out.contains("\"*\""), "{out}");
    assert!(!out.contains("\"*.example.com\""), "{out}");
    assert!(err.contains("agentroute generate: warning: Omnia AgentRuntime team-evil/grab: spec.facades[0].expose.host: host \"*.example.com\" not granted"), "{err}");
    // Empty: exit 4 and nothing on stdout; --allow-empty writes it.
    let (code, out, err) = agentroute(&["generate"], "");
    assert_eq!((code, out.as_str()), (4, ""), "{err}");
    assert!(
        err.contains("error: refusing to write a configuration without agents"),
        "{err}"
    );
    let (code, out, _) = agentroute(&["generate", "--allow-empty"], "");
    assert_eq!((code, out.as_str()), (0, "{\n  \"agents\": []\n}\n"));
    // Bad flag values are usage errors.
    for args in [
        &["generate", "--allow-hosts", "*"][..],
        &["generate", "--allow-hosts", "a/b"],
        &["generate", "--trust-namespace", "Not_A_Namespace"],
        &["generate", "--allow-hosts"],
    ] {
        let (code, _, err) = agentroute(args, "");
        assert_eq!(code, 2, "{args:?}: {err}");
    }
}
