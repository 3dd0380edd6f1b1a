//! `agentroute generate` on the fixtures (samples of the three platforms,
//! `fixtures/README.md` says where each came from): golden files per
//! platform and target, every output through `agentroute check` in-process,
//! the same bytes whatever the order of the input, `--base`, and the
//! binary's exit codes and messages.
//!
//! `UPDATE_GOLDEN=1 cargo test -p agentroute-cli --test generate` rewrites
//! the golden files (then review the diff).

// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use agentroute_cli::check;
use agentroute_cli::generate::{self, Dispatch, Options, Target};
use agentroute_cli::rules::{self, Input, Level};

const PLATFORMS: [&str; 3] = ["agentic-layer", "kaos", "omnia"];
const TARGETS: [Target; 4] = [
    Target::Config,
    Target::Istio,
    Target::EnvoyGateway,
    Target::Envoy,
];

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// The fixture files of a platform (sorted), as (name, text).
fn fixtures(platform: &str) -> Vec<(String, String)> {
    let dir = here().join("fixtures").join(platform);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("{platform}/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

fn all_fixtures() -> Vec<(String, String)> {
    PLATFORMS.iter().flat_map(|p| fixtures(p)).collect()
}

/// The options of the goldens: the fixtures' host (Omnia's
/// `research.agents.example.com`) allowed, the namespace of the KAOS proxy
/// serving `*` and that of the AgentGateway (whose timeout then applies to
/// every namespace) trusted, as a platform team would run it.
fn options(target: Target) -> Options {
    let image = matches!(target, Target::Istio | Target::EnvoyGateway)
        .then(|| "registry.example.com/agentroute/agentroute:0.1.0".to_string());
    let mut options = Options {
        target,
        dispatch: Dispatch::HeaderRules,
        image,
        ..Options::default()
    };
    options
        .trust
        .allow_hosts
        .push("*.agents.example.com".into());
    for namespace in ["external", "agent-gateway"] {
        options.trust.trusted_namespaces.insert(namespace.into());
    }
    options
}

/// Runs `agentroute check` on `text` as one input and fails on any error.
fn assert_checks(what: &str, text: &str) -> rules::Report {
    let input = Input {
        name: what.to_string(),
        scan: check::scan(text).map_err(|e| e.0),
    };
    let report = rules::check_run(&[input], None);
    assert!(report.ok(), "{what} does not pass check:\n{report}");
    assert!(
        report.count(Level::Ok) >= 1,
        "{what}: nothing checked:\n{report}"
    );
    report
}

/// Compares with (or, with UPDATE_GOLDEN=1, writes) a golden file.
fn golden(file: &str, text: &str) {
    let path = here().join("golden").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        want == text,
        "{file} differs from what generate writes now: review, then UPDATE_GOLDEN=1\n--- now:\n{text}"
    );
}

fn extension(target: Target) -> &'static str {
    if target == Target::Config {
        "json"
    } else {
        "yaml"
    }
}

#[test]
fn goldens_per_platform_and_target_pass_check() {
    for platform in PLATFORMS {
        for target in TARGETS {
            let out = generate::generate(&fixtures(platform), &options(target)).unwrap();
            let file = format!("{platform}.{}.{}", target.as_str(), extension(target));
            golden(&file, &out.text);
            assert_checks(&file, &out.text);
        }
    }
}

#[test]
fn tls_goldens_add_an_https_listener() {
    for target in [Target::Istio, Target::EnvoyGateway, Target::Envoy] {
        let mut opts = options(target);
        opts.tls_secret = Some("agents-tls".into());
        let out = generate::generate(&all_fixtures(), &opts).unwrap();
        let file = format!("all.{}.tls.yaml", target.as_str());
        golden(&file, &out.text);
        assert_checks(&file, &out.text);
        if target == Target::Envoy {
            assert!(out.text.contains("/etc/agentroute/tls/agents-tls/tls.crt"));
        } else {
            assert!(out.text.contains("name: agents-tls"), "{}", out.text);
            assert!(out.text.contains("protocol: HTTPS"));
        }
    }
}

/// `--dispatch cluster-header`: the wiring of istio/large/ and
/// envoy/gateway/large/, every backend a cluster the controller makes of
/// one of the generated HTTPRoute rules (check cross-checks them), the rules
/// on a host of their own (else check warns), a patch per listener.
#[test]
fn cluster_header_goldens_name_the_controllers_clusters() {
    for target in [Target::Istio, Target::EnvoyGateway] {
        let mut opts = options(target);
        opts.dispatch = Dispatch::ClusterHeader;
        opts.tls_secret = Some("agents-tls".into());
        let out = generate::generate(&all_fixtures(), &opts).unwrap();
        let file = format!("all.{}.cluster-header.tls.yaml", target.as_str());
        golden(&file, &out.text);
        let report = assert_checks(&file, &out.text);
        // (The fixtures' two weather-agents lose their shorthand: warned.)
        let dispatch_warnings = report
            .lines
            .iter()
            .filter(|l| l.level == Level::Warning && !l.text.contains("shorthand"))
            .count();
        assert_eq!(dispatch_warnings, 0, "{report}");
        let text = &out.text;
        let needles: &[&str] = if target == Target::Istio {
            &[
                "backend: outbound|8000||agent-coordinator.agentic-multi.svc.cluster.local",
                "value: outbound|8000||agent-coordinator.agentic-multi.svc.cluster.local",
                "cluster_header: x-agent-backend",
                "operation: INSERT_FIRST",
                "name: agentroute-virtual-host",
            ]
        } else {
            &[
                "backend: httproute/agentic-multi/agentroute/rule/0",
                "value: httproute/agentic-multi/agentroute/rule/0",
                "cluster_header: x-agent-backend",
                "name: envoy-gateway/agents/http\n",
                "name: envoy-gateway/agents/https\n",
                "jsonPath: $.virtual_hosts[*]",
                "envoy.filters.http.wasm/envoyextensionpolicy/envoy-gateway/agentroute/wasm/0",
            ]
        };
        for needle in needles {
            assert!(text.contains(needle), "{needle:?} in {file}");
        }
        assert!(text.contains("- backends.agentroute.invalid"), "{file}");
        // Without the patch in the run, the same backends would be checked
        // as header values, which the rules match too: still consistent.
        let without: Vec<&str> = text
            .split("\n---\n")
            .filter(|d| !d.contains("agentroute-dispatch-route"))
            .collect();
        assert_checks(&file, &without.join("\n---\n"));
    }
    // The default writes no cluster_header route, and tokens.
    let out = generate::generate(&all_fixtures(), &options(Target::Istio)).unwrap();
    assert!(!out.text.contains("cluster_header"));
    assert!(!out.text.contains("outbound|"));
    // Only for Istio and Envoy Gateway.
    for target in [Target::Config, Target::Envoy] {
        let mut opts = options(target);
        opts.dispatch = Dispatch::ClusterHeader;
        let err = generate::generate(&all_fixtures(), &opts).unwrap_err();
        assert!(
            err.to_string()
                .contains("--dispatch cluster-header is for --target istio"),
            "{err}"
        );
    }
}

/// Every Kubernetes and Envoy target has Envoy remove a client's dispatch
/// header before routing, as the shipped configurations do.
#[test]
fn every_target_removes_the_dispatch_header_early() {
    for (target, needle) in [
        (Target::Istio, "early_header_mutation_extensions"),
        (Target::EnvoyGateway, "earlyRequestHeaders"),
        (Target::Envoy, "early_header_mutation_extensions"),
    ] {
        let out = generate::generate(&all_fixtures(), &options(target)).unwrap();
        assert!(out.text.contains(needle), "{target:?}");
        assert!(
            out.text.contains("remove: x-agent-backend") || out.text.contains("- x-agent-backend"),
            "{target:?}"
        );
    }
}

#[test]
fn the_same_resources_in_any_order_give_the_same_bytes() {
    let inputs = all_fixtures();
    // Every document of every file, reversed, as one input.
    let mut docs: Vec<String> = inputs
        .iter()
        .flat_map(|(_, text)| text.split("\n---").map(str::to_string).collect::<Vec<_>>())
        .collect();
    docs.reverse();
    let shuffled = vec![("all.yaml".to_string(), docs.join("\n---\n"))];
    for target in TARGETS {
        let a = generate::generate(&inputs, &options(target)).unwrap();
        let b = generate::generate(&shuffled, &options(target)).unwrap();
        let c = generate::generate(&inputs, &options(target)).unwrap();
        assert_eq!(a.text, b.text, "{target:?}");
        assert_eq!(a.text, c.text, "{target:?}");
    }
}

#[test]
fn a_base_keeps_its_settings_and_entries() {
    let base = r#"{
        "unmatched": "reject",
        "defaults": {"timeouts": {"agent": "60s"}},
        "agents": [
            {"name": "coordinator", "namespace": "agentic-multi", "backend": "hand-written"},
            {"name": "legacy", "namespace": "ops", "backend": "legacy-svc"}
        ]
    }"#;
    let mut opts = options(Target::Config);
    opts.base = Some(generate::read_base("base.json", base).unwrap());
    let out = generate::generate(&fixtures("kaos"), &opts).unwrap();
    assert_checks("merged", &out.text);
    let config: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    assert_eq!(config["unmatched"], "reject");
    assert_eq!(config["defaults"]["timeouts"]["agent"], "60s");
    let agents = config["agents"].as_array().unwrap();
    assert_eq!(
        agents[0]["backend"], "hand-written",
        "the base's entry wins"
    );
    assert_eq!(agents[1]["name"], "legacy");
    assert_eq!(
        agents.iter().filter(|a| a["name"] == "coordinator").count(),
        1
    );
    assert_eq!(
        out.notes,
        ["KAOS Agent agentic-multi/worker-2: skipped, agentNetwork.expose is false (no Service, no route)",
         "skipped kinds agentroute does not map: v1 Namespace (1)",
         "agentic-multi/coordinator (from KAOS Agent agentic-multi/coordinator) is in --base with a backend of its own: the base's entry is kept"]
    );
    // An invalid base is refused with the filter's own message.
    let err = generate::read_base("base.json", r#"{"agents": [{"name": "x", "bakend": "b"}]}"#)
        .unwrap_err();
    assert!(err.starts_with("--base base.json: agents[0]"), "{err}");
}

#[test]
fn a_base_entry_without_backend_layers_onto_the_generated_one() {
    // Failover, limits and a timeout for the generated coordinator; an
    // entry for a resource that is not there.
    let base = r#"{
        "agents": [
            {"name": "coordinator", "namespace": "agentic-multi", "timeout": "600s",
             "rate_limit": {"requests_per_second": 5, "burst": 10},
             "failover": {"backends": ["agent-worker-1.agentic-multi:8000"]}},
            {"name": "gone", "namespace": "ops", "timeout": "5s"}
        ]
    }"#;
    let generated = |target: Target, base: Option<&str>| {
        let mut opts = options(target);
        opts.base = base.map(|b| generate::read_base("base.json", b).unwrap());
        generate::generate(&fixtures("kaos"), &opts).unwrap()
    };
    let out = generated(Target::Config, Some(base));
    assert_checks("layered", &out.text);
    let config: serde_json::Value = serde_json::from_str(&out.text).unwrap();
    let plain: serde_json::Value =
        serde_json::from_str(&generated(Target::Config, None).text).unwrap();
    let find = |config: &serde_json::Value, name: &str| {
        config["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
    };
    let coordinator = find(&config, "coordinator").unwrap();
    let before = find(&plain, "coordinator").unwrap();
    // The generated backend and fields, the base's settings over them.
    assert_eq!(coordinator["backend"], before["backend"]);
    assert_eq!(coordinator["kind"], before["kind"]);
    assert_eq!(coordinator["timeout"], "600s");
    assert_eq!(coordinator["rate_limit"]["burst"], 10);
    assert_eq!(
        coordinator["failover"]["backends"][0],
        "agent-worker-1.agentic-multi:8000"
    );
    assert!(find(&config, "gone").is_none());
    assert_eq!(
        config["agents"].as_array().unwrap().len(),
        plain["agents"].as_array().unwrap().len()
    );
    assert!(
        out.notes.iter().any(|n| n
            == "agentic-multi/coordinator (from KAOS Agent agentic-multi/coordinator): --base settings layered onto the generated entry"),
        "{:?}",
        out.notes
    );
    assert!(
        out.warnings.iter().any(|w| w
            == "--base: agents[1] (ops/gone) has no backend and no generated entry to layer onto: left out"),
        "{:?}",
        out.warnings
    );
    // Its route and cluster are still generated, and the failover route.
    for target in [Target::Istio, Target::Envoy] {
        let text = generated(target, Some(base)).text;
        assert_checks(target.as_str(), &text);
        assert!(
            text.contains("agent-coordinator.agentic-multi:8000"),
            "{text}"
        );
    }
    let envoy = generated(Target::Envoy, Some(base)).text;
    assert!(envoy.contains("refresh_cluster_on_retry: true"), "{envoy}");
}

/// A base using failover, an access log and (KAOS) MCP entries.
const FEATURES_BASE: &str = r#"{
    "observability": {"access_log": true},
    "agents": [{"name": "main", "namespace": "prod", "backend": "main.prod:8000",
                "failover": {"backends": ["main-backup.prod:8000", "hand-written"]}}]
}"#;

#[test]
fn the_envoy_target_emits_what_the_configuration_uses_and_check_says_what_is_missing() {
    let mut opts = options(Target::Envoy);
    opts.base = Some(generate::read_base("base.json", FEATURES_BASE).unwrap());
    let out = generate::generate(&fixtures("kaos"), &opts).unwrap();
    golden("kaos.features.envoy.yaml", &out.text);
    // A backend that names no Service port gets no cluster: said at once.
    assert!(
        out.warnings
            .iter()
            .any(|w| w
                .contains("prod/main: failover.backends \"hand-written\" names no Service port")),
        "{:?}",
        out.warnings
    );
    let check = |text: &str| {
        let input = Input {
            name: "envoy.yaml".to_string(),
            scan: check::scan(text).map_err(|e| e.0),
        };
        rules::check_run(&[input], None)
    };
    // With that cluster added it passes; each piece taken out is reported.
    let mut doc = check::documents(&out.text).unwrap().remove(0);
    let clusters = doc["static_resources"]["clusters"].as_array_mut().unwrap();
    let mut extra = clusters[0].clone();
    extra["name"] = "hand-written".into();
    clusters.push(extra);
    let report = check(&doc.to_string());
    assert!(report.ok() && report.count(Level::Warning) == 0, "{report}");
    let hcm = "/static_resources/listeners/0/filter_chains/0/filters/0/typed_config";
    let mut cut = doc.clone();
    let routes = cut
        .pointer_mut(&format!("{hcm}/route_config/virtual_hosts/0/routes"))
        .unwrap()
        .as_array_mut()
        .unwrap();
    // The route for two backups goes; the one for one backup stays.
    assert_eq!(routes[0]["route"]["retry_policy"]["num_retries"], 2);
    routes.remove(0);
    cut.pointer_mut(hcm)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("access_log");
    cut["static_resources"]["clusters"]
        .as_array_mut()
        .unwrap()
        .pop();
    let report = check(&cut.to_string());
    let said = |level: Level| -> Vec<String> {
        report
            .lines
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.text.clone())
            .collect()
    };
    let errors = said(Level::Error);
    assert_eq!(errors.len(), 2, "{report}");
    assert!(errors[0].starts_with("agents[0] (prod/main): failover sends a failed request on to 2 more backend(s), but the bootstrap has a failover route for 1 only"), "{report}");
    assert_eq!(errors[1], "agents[0] (prod/main): failover backend \"hand-written\" is no cluster of this bootstrap: the cluster_header route would answer its requests 503");
    assert!(
        said(Level::Warning)
            .iter()
            .any(|w| w.starts_with("observability.access_log is on, but")),
        "{report}"
    );
}

#[test]
fn check_refuses_the_placeholder_image_in_generated_objects() {
    for target in [Target::Istio, Target::EnvoyGateway] {
        let mut opts = options(target);
        opts.image = None;
        let err = generate::generate(&fixtures("kaos"), &opts).unwrap_err();
        assert!(err.to_string().contains("needs --image REF"), "{err}");
        // What generate wrote before --image: refused, in the output as
        // written and in the objects alone (their label says generated).
        opts.image = Some(check::PLACEHOLDER_IMAGE.to_string());
        let out = generate::generate(&fixtures("kaos"), &opts).unwrap();
        let body = out
            .text
            .split_once('\n')
            .unwrap()
            .1
            .split_once('\n')
            .unwrap()
            .1;
        assert!(!body.starts_with('#'), "{body}");
        for text in [out.text.as_str(), body] {
            let input = Input {
                name: "generated.yaml".to_string(),
                scan: check::scan(text).map_err(|e| e.0),
            };
            let report = rules::check_run(&[input], None);
            let errors: Vec<&rules::Line> = report
                .lines
                .iter()
                .filter(|l| l.level == Level::Error)
                .collect();
            assert_eq!(errors.len(), 1, "{report}");
            assert!(
                errors[0]
                    .text
                    .contains("the placeholder `agentroute generate` wrote before --image"),
                "{report}"
            );
        }
    }
    // The shipped manifests name the same reference (what `make oci`
    // builds): not generated, not refused.
    for shipped in [
        "istio/wasmplugin.yaml",
        "envoy/gateway/extensionpolicy.yaml",
    ] {
        let text = std::fs::read_to_string(here().join("../..").join(shipped)).unwrap();
        assert!(text.contains(check::PLACEHOLDER_IMAGE), "{shipped}");
        assert!(
            check::scan(&text).unwrap().placeholder_images.is_empty(),
            "{shipped}"
        );
    }
}

#[test]
fn istio_output_is_the_shipped_shape() {
    let out = generate::generate(&fixtures("kaos"), &options(Target::Istio)).unwrap();
    let text = &out.text;
    for needle in [
        "kind: WasmPlugin",
        "model_from: metadata",
        "kind: EnvoyFilter",
        "kind: HTTPRoute",
        "value: agent-coordinator.agentic-multi:8000",
        "- name: agent-coordinator\n      port: 8000",
    ] {
        assert!(text.contains(needle), "{needle:?} in\n{text}");
    }
}

// --- the binary ---

fn agentroute(args: &[&str], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentroute"))
        .args(args)
        .current_dir(here().join("fixtures"))
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
fn the_binary_writes_stdout_notes_on_stderr_and_exits_as_check() {
    let (code, out, err) = agentroute(
        &[
            "generate",
            "--target",
            "istio",
            "--image",
            "registry.example.com/agentroute:1.2.3",
            "kaos/multi-agent-mcp.yaml",
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("kind: WasmPlugin"), "{out}");
    assert!(
        out.contains("url: oci://registry.example.com/agentroute:1.2.3"),
        "{out}"
    );
    assert!(out.contains("phase: AUTHZ"), "{out}");
    assert_eq!(
        err,
        "agentroute generate: KAOS Agent agentic-multi/worker-2: skipped, agentNetwork.expose is false (no Service, no route)\n\
         agentroute generate: skipped kinds agentroute does not map: v1 Namespace (1)\n"
    );
    // stdin, and a malformed resource: left out (the document, resource
    // and field), the rest written, exit 3.
    let bad = "apiVersion: kaos.tools/v1alpha1\nkind: MCPServer\nmetadata: {name: m}\n---\n\
               apiVersion: kaos.tools/v1alpha1\nkind: Agent\nmetadata: {name: a, namespace: n}\n\
               spec: {gatewayRoute: {timeout: 3 days}}\n";
    let (code, out, err) = agentroute(&["generate"], bad);
    assert_eq!(code, 3, "{err}");
    assert!(
        out.contains("\"backend\": \"mcpserver-m.default:8000\""),
        "{out}"
    );
    assert!(!out.contains("agent-a"), "{out}");
    assert!(
        err.starts_with("agentroute generate: error: <stdin>: document 2: kaos.tools Agent n/a: spec.gatewayRoute.timeout: invalid duration \"3 days\""),
        "{err}"
    );
    assert!(
        err.ends_with(
            "agentroute generate: partial: 1 resource(s) left out (above); the rest is written\n"
        ),
        "{err}"
    );
    // Usage errors exit 2; --help exits 0.
    for args in [
        &["generate", "--target", "nginx"][..],
        &["generate", "--tls-secret", "s"],
        &["generate", "--target", "istio", "--tls-secret", "Bad_Name"],
        &["generate", "--base"],
        &["generate", "--frobnicate"],
        &["generate", "--dispatch", "fast"],
        &["generate", "--dispatch", "cluster-header"],
        &[
            "generate",
            "--target",
            "envoy",
            "--dispatch",
            "cluster-header",
        ],
        // Istio and Envoy Gateway pull an image: it must be named.
        &["generate", "--target", "istio"],
        &[
            "generate",
            "--target",
            "envoy-gateway",
            "kaos/multi-agent-mcp.yaml",
        ],
        &["generate", "--image", "x/y:1"],
        &["generate", "--target", "istio", "--image", "bad image"],
    ] {
        let (code, _, err) = agentroute(args, "");
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains("usage: agentroute generate"),
            "{args:?}: {err}"
        );
    }
    let (code, out, _) = agentroute(&["generate", "--help"], "");
    assert_eq!(code, 0);
    assert!(out.starts_with("usage: agentroute generate"), "{out}");
    // A missing file and a bad base are errors (exit 1).
    let (code, _, err) = agentroute(&["generate", "nope.yaml"], "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nope.yaml: cannot read"), "{err}");
    let (code, _, err) = agentroute(
        &["generate", "--base", "-", "kaos/gateway-api-docs.yaml"],
        "agents: [{name: x, timeout: soon}]\n",
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--base -: agents[0].timeout: invalid duration \"soon\""),
        "{err}"
    );
    // The image of a --base EnvoyExtensionPolicy; a base without one is an
    // error for the Kubernetes targets.
    let policy = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: EnvoyExtensionPolicy\n\
                  metadata: {name: agentroute, namespace: envoy-gateway}\n\
                  spec:\n  wasm:\n  - name: agentroute\n    code: {type: Image, image: {url: 'mirror.example.com/ar:9'}}\n    \
                  config: {agents: []}\n";
    let (code, out, err) = agentroute(
        &[
            "generate",
            "--target",
            "envoy-gateway",
            "--base",
            "-",
            "kaos/gateway-api-docs.yaml",
        ],
        policy,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("url: mirror.example.com/ar:9"), "{out}");
    let (code, out, err) = agentroute(
        &[
            "generate",
            "--target",
            "istio",
            "--base",
            "-",
            "kaos/gateway-api-docs.yaml",
        ],
        "agents: []\n",
    );
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("--target istio needs --image REF: --base - names no image"),
        "{err}"
    );
}

#[test]
fn generated_goldens_are_in_the_golden_dir() {
    // The Makefile validates these against the CRDs and Envoy.
    let dir = here().join("golden");
    let count = std::fs::read_dir(Path::new(&dir))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        count >= 15 || std::env::var_os("UPDATE_GOLDEN").is_some(),
        "{count}"
    );
}

#[test]
fn omnia_providers_lead_to_their_apis() {
    // Not in PLATFORMS: on Istio and Envoy Gateway the provider backends are
    // routed by the provider manifests, which a run of generate alone lacks.
    for target in [Target::Config, Target::Envoy] {
        let out = generate::generate(&fixtures("omnia-providers"), &options(target)).unwrap();
        let file = format!("omnia-providers.{}.{}", target.as_str(), extension(target));
        golden(&file, &out.text);
        assert_checks(&file, &out.text);
        assert!(
            !out.text.contains("anthropic-credentials") && !out.text.contains("sk-ant"),
            "the Secret is never read"
        );
        assert!(
            out.notes
                .iter()
                .any(|n| n.contains("never read by generate")),
            "{:?}",
            out.notes
        );
    }
}
