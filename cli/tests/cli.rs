//! The built `agentroute` binary on the configurations the project ships,
//! on broken ones, and its schema against the committed file.

// A test file: its helpers fail the test loudly, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap()
}

fn agentroute(args: &[&str], stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentroute"))
        .args(args)
        .current_dir(root())
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
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    (status.code().unwrap(), text)
}

/// The YAML files below `dir`, relative to the repository.
fn yaml_files(dir: &str) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root().join(dir)];
    while let Some(d) = dirs.pop() {
        for path in std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let relative = path.strip_prefix(root()).unwrap();
                files.push(relative.display().to_string());
            }
        }
    }
    files.sort();
    files
}

/// Whether a shipped file holds the filter's configuration (what the
/// Makefile's `check-shipped` selects): a WasmPlugin, an
/// EnvoyExtensionPolicy, or Envoy's Wasm filter, outside comments.
fn holds_a_configuration(file: &str) -> bool {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .any(|l| {
            l.contains("pluginConfig:")
                || l.contains("filters.http.wasm.v3.Wasm")
                || l.contains("kind: EnvoyExtensionPolicy")
        })
}

#[test]
fn every_shipped_configuration_is_ok() {
    let mut with_config = 0;
    for file in [yaml_files("envoy"), yaml_files("istio")].concat() {
        if !holds_a_configuration(&file) {
            continue;
        }
        let (code, out) = agentroute(&["check", &file], "");
        assert_eq!(code, 0, "{file}: {out}");
        assert!(
            out.lines()
                .all(|l| l.contains(": ok: ") || l.contains("configuration delivered by ECDS")),
            "{file}: {out}"
        );
        with_config += 1;
    }
    assert!(with_config >= 6, "{with_config}");
    let (code, out) = agentroute(&["check", "istio/wasmplugin.yaml"], "");
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "istio/wasmplugin.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: ok: 7 entries, 23 routes, 8 models\n"
        )
    );
}

#[test]
fn a_broken_configuration_names_the_field_and_exits_1() {
    let shipped = std::fs::read_to_string(root().join("istio/wasmplugin.yaml")).unwrap();
    let broken = shipped.replacen("backend: prod-support", "bakend: prod-support", 1);
    assert_ne!(broken, shipped);
    let (code, out) = agentroute(&["check", "-"], &broken);
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "<stdin>: WasmPlugin istio-ingress/agentroute spec.pluginConfig: error: agents[1].bakend: unknown field\n"
        )
    );
    // Every configuration of a file is checked, each with its first error.
    let two = "{\"agents\": [{\"name\": \"a\"}]}";
    let bootstrap = std::fs::read_to_string(root().join("envoy/ecds/agentroute.yaml"))
        .unwrap()
        .replace(
            "\"backend\": \"researcher\"",
            "\"backend\": \"researcher\", \"timeout\": \"9\"",
        );
    let dir = std::env::temp_dir().join(format!("agentroute-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = (dir.join("a.json"), dir.join("b.yaml"));
    std::fs::write(&a, two).unwrap();
    std::fs::write(&b, bootstrap).unwrap();
    let (code, out) = agentroute(&["check", a.to_str().unwrap(), b.to_str().unwrap()], "");
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("a.json: error: agents[0].backend: required\n"),
        "{out}"
    );
    assert!(
        out.contains("b.yaml: ECDS resource \"agentroute\": error: agents[1].timeout: invalid duration \"9\""),
        "{out}"
    );
    // Not YAML at all, and a file without the filter.
    let (code, out) = agentroute(&["check"], "agents: [\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("<stdin>: error: input is not valid YAML"),
        "{out}"
    );
    let (code, out) = agentroute(&["check", "istio/gateway.yaml"], "");
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no agentroute configuration found"), "{out}");
}

#[test]
fn explain_prints_the_entry_path_and_headers() {
    let (code, out) = agentroute(
        &[
            "check",
            "envoy/demo.yaml",
            "--explain",
            "/customer-service/orders?id=7",
            "--header",
            "x-agent-backend: evil",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}");
    for line in [
        "  entry    agents[0] prod/coordinator (agent) by path prefix /customer-service, backend coordinator",
        "  forward  /orders?id=7 (rewritten)",
        "  headers  set    x-forwarded-prefix: /customer-service",
        "           remove x-agent-backend",
        "           set    x-agent-backend: coordinator",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
    }
    let (code, out) = agentroute(
        &[
            "check",
            "envoy/demo.yaml",
            "--explain",
            "/prod/tools/%2e%2e/x",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  reply    400 invalid_path: "), "{out}");
    let (code, out) = agentroute(
        &[
            "check",
            "envoy/demo.yaml",
            "--explain",
            "/v1/chat/completions",
            "--model",
            "embed-demo",
        ],
        "",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "  entry    agents[3] models/embedder (modelapi) by model embed-demo, backend embedder"
        ),
        "{out}"
    );
}

#[test]
fn explain_with_claims_names_the_access_rule() {
    let identity = |path: &str, more: &[&str]| {
        let mut args = vec![
            "check",
            "istio/identity/wasmplugin.yaml",
            "--host",
            "agents.example.com",
            "--explain",
            path,
        ];
        args.extend_from_slice(more);
        let (code, out) = agentroute(&args, "");
        assert_eq!(code, 0, "{out}");
        out
    };
    let chat = "/v1/chat/completions";
    let interns = r#"{"groups":["interns"]}"#;
    let out = identity(chat, &["--model", "gpt-demo-mini", "--claims", interns]);
    assert!(
        out.lines()
            .any(|l| l
                == r#"  access   admitted by access[1] (groups="interns"): models gpt-demo-mini"#),
        "{out}"
    );
    assert!(
        out.contains("  forward  /v1/chat/completions (unchanged)"),
        "{out}"
    );
    let out = identity(chat, &["--model", "gpt-demo", "--claims", interns]);
    assert!(out.contains("  reply    403 model_not_allowed: "), "{out}");
    let out = identity(
        chat,
        &["--model", "gpt-demo", "--claims", r#"{"groups":"sales"}"#],
    );
    assert!(
        out.contains(r#"  access   refused (403): no rule admits {"groups":"sales"}; the rules: access[0] (groups="ml-team"), access[1] (groups="interns")"#),
        "{out}"
    );
    // No --claims: no verified identity, the filter's own 401.
    let out = identity(chat, &["--model", "gpt-demo"]);
    assert!(
        out.contains("  access   401: no verified identity"),
        "{out}"
    );
    assert!(out.contains("  reply    401 unauthenticated: "), "{out}");
    // An MCP tool the caller's scope does not grant: an unknown tool.
    let reader = r#"{"scope":"openid tools:read"}"#;
    let out = identity(
        "/prod/mcp/tools/mcp",
        &["--mcp-tool", "expensive_report", "--claims", reader],
    );
    assert!(
        out.contains("  reply    200 JSON-RPC -32602: Unknown tool: expensive_report"),
        "{out}"
    );
    let out = identity(
        "/prod/mcp/tools/mcp",
        &["--mcp-tool", "search", "--claims", reader],
    );
    assert!(out.contains("  forward  /mcp (rewritten)"), "{out}");
    // Claims that are no JSON object: a usage error naming the flag.
    for bad in ["{groups: a}", r#"["team-a"]"#] {
        let (code, out) = agentroute(
            &[
                "check",
                "istio/identity/wasmplugin.yaml",
                "--explain",
                chat,
                "--claims",
                bad,
            ],
            "",
        );
        assert_eq!(code, 2, "{bad}: {out}");
        assert!(
            out.starts_with(&format!("agentroute: --claims {bad:?}: ")),
            "{out}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &[],
        &["check", "--explain"],
        &["check", "--explain", "no-slash"],
        &["check", "--host", "h"],
        &["check", "--claims", "{}"],
        &["check", "--bogus"],
    ] {
        let (code, out) = agentroute(args, "");
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains("usage: agentroute check"), "{args:?}: {out}");
    }
}

#[test]
fn each_shipped_deployment_checks_as_one_run() {
    // A WasmPlugin / EnvoyExtensionPolicy with its HTTPRoutes and patches:
    // the dispatch tokens are cross-checked, other objects are noted.
    for dir in ["istio", "envoy/gateway"] {
        let files = yaml_files(dir)
            .into_iter()
            .filter(|f| Path::new(f).parent() == Some(Path::new(dir)))
            .collect::<Vec<_>>();
        let mut args = vec!["check"];
        args.extend(files.iter().map(String::as_str));
        let (code, out) = agentroute(&args, "");
        assert_eq!(code, 0, "{dir}: {out}");
        assert!(out.contains("HTTPRoute header rule(s)"), "{dir}: {out}");
        assert!(!out.contains("warning"), "{dir}: {out}");
    }
    // A route renamed out from under its entry: the entry fails, the rule warns.
    let routes = std::fs::read_to_string(root().join("istio/httproutes.yaml"))
        .unwrap()
        .replace("value: prod-tools", "value: prod-tool");
    let (code, out) = agentroute(&["check", "istio/wasmplugin.yaml", "-"], &routes);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: agents[4] (prod/tools): backend \"prod-tools\" has no HTTPRoute rule matching x-agent-backend: prod-tools"),
        "{out}"
    );
    assert!(
        out.contains("<stdin>: document 1: HTTPRoute prod/agents rules[5] (tools): warning: x-agent-backend: \"prod-tool\" is the backend of no entry"),
        "{out}"
    );
}

#[test]
fn inputs_without_agents_or_configurations() {
    // Nothing at all, or a misspelt key: exit 1 with what is wrong.
    let (code, out) = agentroute(&["check", "-"], "");
    assert_eq!(
        (code, out.as_str()),
        (
            1,
            "<stdin>: error: empty input: no agentroute configuration to check\n"
        )
    );
    let shipped = std::fs::read_to_string(root().join("istio/wasmplugin.yaml")).unwrap();
    let misspelt = shipped.replacen("pluginConfig:", "pluginconfig:", 1);
    let (code, out) = agentroute(&["check", "-"], &misspelt);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("error: no spec.pluginConfig: the plugin would get an empty configuration and route nothing (spec.pluginconfig is not pluginConfig"),
        "{out}"
    );
    // No entries: valid, with a warning, exit 0.
    let (code, out) = agentroute(&["check", "-"], "agents: []\n");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("<stdin>: warning: no agents: the configuration has no entries"),
        "{out}"
    );
}

#[test]
fn model_from_body_on_istio_fails_with_advice() {
    let shipped = std::fs::read_to_string(root().join("istio/wasmplugin.yaml")).unwrap();
    let body = shipped.replacen("      model_from: metadata", "      model_from: body", 1);
    assert_ne!(body, shipped);
    let (code, out) = agentroute(&["check", "-"], &body);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("openai.model_from is \"body\" (the default)"),
        "{out}"
    );
    assert!(
        out.contains("istio/envoyfilter-json-to-metadata.yaml"),
        "{out}"
    );
}

#[test]
fn a_dropped_shorthand_warns_and_exits_0() {
    let config = r#"{"agents":[{"name":"a","namespace":"x","backend":"1"},{"name":"a","namespace":"y","backend":"2"}]}"#;
    let (code, out) = agentroute(&["check", "-"], config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("<stdin>: warning: agents[0] (x/a): shorthand /a dropped: agents[1] (y/a) has the same name"),
        "{out}"
    );
}

#[test]
fn help_on_every_command_exits_0() {
    for (args, first_line) in [
        (&["--help"][..], "usage: agentroute check"),
        (&["help"], "usage: agentroute check"),
        (&["check", "--help"], "usage: agentroute check"),
        (&["check", "x.yaml", "-h"], "usage: agentroute check"),
        (&["schema", "--help"], "usage: agentroute schema"),
    ] {
        let (code, out) = agentroute(args, "");
        assert_eq!(code, 0, "{args:?}: {out}");
        assert!(out.starts_with(first_line), "{args:?}: {out}");
    }
    let (code, out) = agentroute(&["schema", "extra"], "");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("usage: agentroute schema"), "{out}");
}

#[test]
fn the_committed_schema_is_what_the_contract_generates() {
    let (code, out) = agentroute(&["schema"], "");
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(root().join("schema/agentroute.schema.json")).unwrap();
    assert!(
        out == committed,
        "schema/agentroute.schema.json is out of date: run `make schema`"
    );
}

/// `check DIR`: the directory's .yaml, .yml and .json files, sorted, as one
/// run (what `check a.yaml b.yml` says); other files are not read.
#[test]
fn a_directory_is_checked_as_its_files() {
    let dir = std::env::temp_dir().join(format!("agentroute-check-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = std::fs::read_to_string(root().join("istio/wasmplugin.yaml")).unwrap();
    let routes = std::fs::read_to_string(root().join("istio/httproutes.yaml")).unwrap();
    std::fs::write(dir.join("b-routes.yml"), &routes).unwrap();
    std::fs::write(dir.join("a-plugin.yaml"), &plugin).unwrap();
    std::fs::write(
        dir.join("c.json"),
        r#"{"agents": [{"name": "x", "backend": "y"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.join("README.md"), "not checked").unwrap();
    let files: Vec<String> = ["a-plugin.yaml", "b-routes.yml", "c.json"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let (code, by_dir) = agentroute(&["check", &dir.display().to_string()], "");
    let args: Vec<&str> = std::iter::once("check")
        .chain(files.iter().map(String::as_str))
        .collect();
    let (code_files, by_files) = agentroute(&args, "");
    assert_eq!((code, &by_dir), (code_files, &by_files));
    assert!(
        by_dir
            .contains("a-plugin.yaml: WasmPlugin istio-ingress/agentroute spec.pluginConfig: ok: "),
        "{by_dir}"
    );
    assert!(by_dir.contains("c.json: ok: 1 entries"), "{by_dir}");
    assert!(!by_dir.contains("README"), "{by_dir}");
    // A directory without any such file is an error, not an empty run.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, out) = agentroute(&["check", &empty.display().to_string()], "");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no .yaml, .yml or .json file in this directory"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
