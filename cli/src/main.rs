//! `agentroute`: check a plugin configuration before it reaches a gateway.
//!
//! ```text
//! agentroute check [FILE|-]... [--explain PATH [--host H] [--method M]
//!                  [--model ID] [--mcp-tool NAME] [--header NAME:VALUE]... [--client-ip IP]]
//! agentroute generate [--target config|istio|envoy-gateway|envoy] [--base FILE]
//!                     [--tls-secret NAME] [--dispatch cluster-header] [FILE|-]...
//! agentroute schema
//! ```
//!
//! The work is in `agentroute_cli::check`, which hands every configuration
//! to the filter's own reader, compiler and request decision.

use std::io::Read;
use std::process::ExitCode;

use agentroute::config::schema;
use agentroute_cli::check::{self, ExplainRequest};
use agentroute_cli::generate;
use agentroute_cli::rules::{self, Input};

const USAGE: &str = "\
usage: agentroute check [FILE|-]... [--explain PATH [--host HOST] [--method METHOD]
                        [--model ID] [--mcp-tool NAME] [--header NAME:VALUE]... [--client-ip IP]]
       agentroute generate [--target config|istio|envoy-gateway|envoy] [--base FILE]
                           [--tls-secret NAME] [--dispatch cluster-header] [FILE|-]...
       agentroute schema
       agentroute COMMAND --help

check     checks agentroute configurations (agentroute check --help)
generate  writes the configuration from agentic-layer, KAOS and Omnia resources
schema    prints the JSON Schema of the configuration (draft 2020-12)
";

const GENERATE_USAGE: &str = "\
usage: agentroute generate [--target config|istio|envoy-gateway|envoy] [--base FILE]
                           [--tls-secret NAME] [--dispatch cluster-header] [FILE|-]...

Reads Kubernetes resources (multi-document YAML or JSON, `kind: List` as
`kubectl get -o yaml` prints it; `-` or no FILE: standard input) of
agentic-layer (Agent, AgentGateway), KAOS (Agent, ModelAPI, MCPServer) and
Omnia (AgentRuntime) and writes, sorted (the same input gives the same bytes):

--target config         the plugin configuration (JSON; the default)
--target istio          Gateway, WasmPlugin, json_to_metadata EnvoyFilter, HTTPRoutes
--target envoy-gateway  Gateway, EnvoyExtensionPolicy, json_to_metadata
                        EnvoyPatchPolicy, HTTPRoutes (with the catch-all)
--target envoy          an Envoy bootstrap, one STRICT_DNS cluster per Service port
--base FILE             a hand-written configuration (defaults, openai, limits,
                        extra agents) the generated entries are merged into; an
                        entry the base already has is left to the base
--tls-secret NAME       an HTTPS listener too: the Gateway's certificateRefs
                        Secret, or for envoy the certificate in
                        /etc/agentroute/tls/NAME/tls.crt and tls.key
--dispatch cluster-header
                        istio and envoy-gateway: dispatch that does not grow
                        with the number of agents, as istio/large/ and
                        envoy/gateway/large/: a cluster_header route patched
                        in first (EnvoyFilter / EnvoyPatchPolicy), each
                        backend the controller's cluster name, the HTTPRoutes
                        on a host of their own. The default, header-rules:
                        one HTTPRoute rule per backend token

Other kinds are skipped (one line on standard error); a malformed resource is
an error naming the document, the resource and the field.
Exit status: 0 written, 1 an error, 2 a usage error.
";

const CHECK_USAGE: &str = "\
usage: agentroute check [FILE|-]... [--explain PATH [--host HOST] [--method METHOD]
                        [--model ID] [--mcp-tool NAME] [--header NAME:VALUE]... [--client-ip IP]]

Reads each FILE (JSON or YAML; `-` or none: standard input) and finds the
agentroute configurations in it: a bare configuration, an Istio WasmPlugin
(spec.pluginConfig), an Envoy Gateway EnvoyExtensionPolicy
(spec.wasm[].config), an Envoy bootstrap or ECDS resource holding the Wasm
filter (its configuration StringValue), several YAML documents. Prints
`ok: N entries, M routes, K models` per configuration, or its error with the
field path (the first error of each configuration), then warnings (no
entries, shorthands dropped because of another entry) and errors where the
configuration is deployed (no configuration at all, a misspelt pluginConfig,
model_from: body on Istio or Envoy Gateway without the stop-iteration patch,
a backend no HTTPRoute of the run leads to; with an EnvoyFilter or
EnvoyPatchPolicy adding a cluster_header route, a backend that is not the
cluster the controller makes of one of the run's HTTPRoute rules). All FILEs
are one run: check a deployment's directory at once.

--explain PATH
         for each valid configuration, what the filter does with a request for
         PATH: the entry, the upstream path and header changes, or its own
         reply. --method defaults to GET (POST with --model or --mcp-tool);
         --model is the `model` an OpenAI request body names; --mcp-tool the
         tool a tools/call to an MCP entry names (its tool rules judge it;
         add --header mcp-method:tools/call --header mcp-name:NAME for a
         2026-07-28 client). For an entry with a canary: which side the
         request lands on and why (a --header or `cookie` header carrying
         the `by` value, or --client-ip, gives its cohort; the forcing
         header forces). With an `origin` header: the CORS headers of the
         answer, or of a preflight (--method OPTIONS and an
         `access-control-request-method` header).

Exit status: 0 all valid (warnings allowed), 1 an error, 2 a usage error.
";

const SCHEMA_USAGE: &str = "\
usage: agentroute schema

Prints the JSON Schema (draft 2020-12) of the plugin configuration, generated
from the contract types: what schema/agentroute.schema.json holds.
";

/// A command line the tool cannot act on (exit status 2).
struct Usage(String);

struct Args {
    files: Vec<String>,
    explain: Option<ExplainRequest>,
}

struct GenerateArgs {
    files: Vec<String>,
    options: generate::Options,
    base: Option<String>,
}

fn parse_generate(args: &[String]) -> Result<GenerateArgs, Usage> {
    let mut files = Vec::new();
    let mut target = generate::Target::Config;
    let mut base = None;
    let mut tls_secret = None;
    let mut dispatch = generate::Dispatch::HeaderRules;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| Usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--target" => {
                let name = value("--target")?;
                target = generate::Target::parse(&name).ok_or_else(|| {
                    Usage(format!(
                        "--target {name:?}: expected config, istio, envoy-gateway or envoy"
                    ))
                })?;
            }
            "--base" => base = Some(value("--base")?),
            "--dispatch" => {
                let name = value("--dispatch")?;
                dispatch = generate::Dispatch::parse(&name).ok_or_else(|| {
                    Usage(format!(
                        "--dispatch {name:?}: expected header-rules or cluster-header"
                    ))
                })?;
            }
            "--tls-secret" => tls_secret = Some(value("--tls-secret")?),
            "-" => files.push(arg.clone()),
            flag if flag.starts_with('-') => return Err(Usage(format!("unknown option {flag}"))),
            file => files.push(file.to_string()),
        }
    }
    if let Some(secret) = &tls_secret {
        if target == generate::Target::Config {
            return Err(Usage(
                "--tls-secret goes with --target istio, envoy-gateway or envoy".to_string(),
            ));
        }
        let label = !secret.is_empty()
            && secret.len() <= 253
            && secret
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !label {
            return Err(Usage(format!(
                "--tls-secret {secret:?}: a Secret name (lowercase letters, digits, '-', '.')"
            )));
        }
    }
    if dispatch == generate::Dispatch::ClusterHeader
        && !matches!(
            target,
            generate::Target::Istio | generate::Target::EnvoyGateway
        )
    {
        return Err(Usage(
            "--dispatch cluster-header goes with --target istio or envoy-gateway".to_string(),
        ));
    }
    if files.is_empty() {
        files.push("-".to_string());
    }
    Ok(GenerateArgs {
        files,
        options: generate::Options {
            target,
            dispatch,
            base: None,
            tls_secret,
        },
        base,
    })
}

/// Generates; false (exit 1) on any error, said on standard error.
fn run_generate(mut args: GenerateArgs) -> bool {
    let fail = |message: &str| {
        eprintln!("agentroute generate: error: {message}");
        false
    };
    if let Some(file) = &args.base {
        match read(file).and_then(|text| generate::read_base(file, &text)) {
            Ok(base) => args.options.base = Some(base),
            Err(e) => return fail(&e),
        }
    }
    let mut inputs = Vec::new();
    for file in &args.files {
        let name = if file == "-" {
            "<stdin>"
        } else {
            file.as_str()
        };
        match read(file) {
            Ok(text) => inputs.push((name.to_string(), text)),
            Err(e) => return fail(&format!("{name}: {e}")),
        }
    }
    match generate::generate(&inputs, &args.options) {
        Ok(output) => {
            for note in &output.notes {
                eprintln!("agentroute generate: {note}");
            }
            print!("{}", output.text);
            true
        }
        Err(e) => fail(&e),
    }
}

/// `-h`/`--help` anywhere among a command's arguments.
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

fn parse_check(args: &[String]) -> Result<Args, Usage> {
    let mut files = Vec::new();
    let mut path = None;
    let mut request = ExplainRequest::default();
    let mut request_flags = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| Usage(format!("{flag} needs a value")))
        };
        match arg.as_str() {
            "--explain" => path = Some(value("--explain")?),
            "--host" => {
                request.host = value("--host")?;
                request_flags.push("--host");
            }
            "--method" => {
                request.method = value("--method")?.to_ascii_uppercase();
                request_flags.push("--method");
            }
            "--model" => {
                request.model = Some(value("--model")?);
                request_flags.push("--model");
            }
            "--mcp-tool" => {
                request.mcp_tool = Some(value("--mcp-tool")?);
                request_flags.push("--mcp-tool");
            }
            "--client-ip" => {
                request.client_ip = Some(value("--client-ip")?);
                request_flags.push("--client-ip");
            }
            "--header" => {
                let header = value("--header")?;
                let Some((name, v)) = header.split_once(':') else {
                    return Err(Usage(format!("--header {header:?}: expected NAME:VALUE")));
                };
                request.headers.push((name.to_string(), v.to_string()));
                request_flags.push("--header");
            }
            "-" => files.push(arg.clone()),
            flag if flag.starts_with('-') => {
                return Err(Usage(format!("unknown option {flag}")));
            }
            file => files.push(file.to_string()),
        }
    }
    let explain = match path {
        Some(p) if !p.starts_with('/') => {
            return Err(Usage(format!(
                "--explain {p:?}: a request path starts with '/'"
            )))
        }
        Some(p) => {
            request.path = p;
            Some(request)
        }
        None => {
            if let Some(flag) = request_flags.first() {
                return Err(Usage(format!("{flag} only goes with --explain PATH")));
            }
            None
        }
    };
    if files.is_empty() {
        files.push("-".to_string());
    }
    Ok(Args { files, explain })
}

fn read(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(text);
    }
    std::fs::read_to_string(file).map_err(|e| format!("cannot read: {e}"))
}

/// Checks every file as one run; true when nothing is in error.
fn run_check(args: &Args) -> bool {
    let inputs: Vec<Input> = args
        .files
        .iter()
        .map(|file| Input {
            name: if file == "-" {
                "<stdin>".to_string()
            } else {
                file.clone()
            },
            scan: read(file).and_then(|text| check::scan(&text).map_err(|e| e.0)),
        })
        .collect();
    let report = rules::check_run(&inputs, args.explain.as_ref());
    print!("{report}");
    report.ok()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = |message: &str, text: &str| {
        eprintln!("agentroute: {message}\n\n{text}");
        ExitCode::from(2)
    };
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        Some("check") if wants_help(rest) => {
            print!("{CHECK_USAGE}");
            ExitCode::SUCCESS
        }
        Some("check") => match parse_check(rest) {
            Ok(parsed) => {
                if run_check(&parsed) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(Usage(message)) => usage(&message, CHECK_USAGE),
        },
        Some("generate") if wants_help(rest) => {
            print!("{GENERATE_USAGE}");
            ExitCode::SUCCESS
        }
        Some("generate") => match parse_generate(rest) {
            Ok(parsed) => {
                if run_generate(parsed) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(Usage(message)) => usage(&message, GENERATE_USAGE),
        },
        Some("schema") if wants_help(rest) => {
            print!("{SCHEMA_USAGE}");
            ExitCode::SUCCESS
        }
        Some("schema") if rest.is_empty() => {
            print!("{}", schema::schema_text());
            ExitCode::SUCCESS
        }
        Some("schema") => usage("schema takes no arguments", SCHEMA_USAGE),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage(&format!("unknown command {other:?}"), USAGE),
        None => usage("a command is needed", USAGE),
    }
}
