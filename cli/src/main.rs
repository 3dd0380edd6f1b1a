//! `agentroute`: check a plugin configuration before it reaches a gateway.
//!
//! ```text
//! agentroute check [FILE|-]... [--explain PATH [--host H] [--method M]
//!                  [--model ID] [--mcp-tool NAME] [--header NAME:VALUE]... [--client-ip IP]
//!                  [--claims JSON]]
//! agentroute generate [--target config|istio|envoy-gateway|envoy] [--base FILE]
//!                     [--tls-secret NAME] [--dispatch cluster-header] [FILE|-]...
//! agentroute schema [--markdown]
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
usage: agentroute check [FILE|DIR|-]... [--explain PATH [--host HOST] [--method METHOD]
                        [--model ID] [--mcp-tool NAME] [--header NAME:VALUE]... [--client-ip IP]
                        [--claims JSON]]
       agentroute generate [--target config|istio|envoy-gateway|envoy] [--base FILE]
                           [--tls-secret NAME] [--dispatch cluster-header]
                           [--allow-hosts PATTERN]... [--trust-namespace NS]...
                           [--allow-empty] [--image REF] [--wasm PATH] [FILE|-]...
       agentroute schema [--markdown]
       agentroute COMMAND --help

check     checks agentroute configurations (agentroute check --help)
generate  writes the configuration from agentic-layer, KAOS and Omnia resources
schema    prints the JSON Schema of the configuration (draft 2020-12), or
          with --markdown the configuration reference
";

const GENERATE_USAGE: &str = "\
usage: agentroute generate [--target config|istio|envoy-gateway|envoy] [--base FILE]
                           [--tls-secret NAME] [--dispatch cluster-header]
                           [--allow-hosts PATTERN]... [--trust-namespace NS]...
                           [--allow-empty] [--image REF] [--wasm PATH] [FILE|-]...

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
                        extra agents) the generated entries are merged into; a
                        base entry of a generated namespace/name without a
                        backend layers its fields onto the generated entry
                        (its backend, clusters, routes kept); one with a
                        backend replaces it
--image REF             istio and envoy-gateway (required): the plugin's OCI
                        image (registry/name:tag) the WasmPlugin or
                        EnvoyExtensionPolicy pulls; else taken from a --base
                        WasmPlugin or EnvoyExtensionPolicy
--wasm PATH             envoy: where Envoy loads the plugin from (default
                        dist/agentroute.wasm)
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

Many tenants, one gateway: what a resource says is a claim.
--allow-hosts PATTERN   hosts a resource may claim (Omnia expose.host), exact
                        or *.suffix, repeatable or comma-separated; none by
                        default. A claim outside them is dropped (a warning
                        naming the resource and field): the agent is still
                        generated, routed by its paths
--trust-namespace NS    namespaces whose resources may claim pattern model
                        ids (`*`, `openai/*`) and *. hosts, go first when
                        two resources claim one model id or host, and whose
                        AgentGateway sets the timeout of namespaces without
                        their own (other AgentGateways: their own namespace)
--allow-empty           write a configuration without any entry (refused
                        otherwise: applied with --prune it deletes every route)
Two resources claiming one entry, model id or host: trusted namespaces
first, then the older by metadata.creationTimestamp, then namespace/name;
the other loses that claim (a warning), everyone else is still generated.

Other kinds are skipped (one line on standard error). A resource that cannot
be read (a field of the wrong type, a name that is no DNS label) or whose
entry the filter would refuse is left out, said on standard error with the
document, the resource and the field; the rest is written.
Exit status: 0 written; 3 written with resources left out (apply it, and
alert); 1 an error and 4 an empty configuration refused: nothing written
(apply nothing); 2 a usage error.
";

const CHECK_USAGE: &str = "\
usage: agentroute check [FILE|DIR|-]... [--explain PATH [--host HOST] [--method METHOD]
                        [--model ID] [--mcp-tool NAME] [--header NAME:VALUE]... [--client-ip IP]
                        [--claims JSON]]

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
cluster the controller makes of one of the run's HTTPRoute rules; a
WasmPlugin not in phase AUTHZ next to an AuthorizationPolicy on the x-agent-*
headers; shorthand paths another namespace's paths shadow). All FILEs are one
run; a DIR stands for its .yaml, .yml and .json files (sorted): check a
deployment's directory at once.

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
         `access-control-request-method` header). For an entry with `access`
         rules: which rule admits or refuses the caller, whose verified claims
         --claims gives as a JSON object (--claims '{\"groups\":[\"team-a\"]}');
         without it the request has no verified identity (401 where one is
         needed).

Exit status: 0 all valid (warnings allowed), 1 an error, 2 a usage error.
";

const SCHEMA_USAGE: &str = "\
usage: agentroute schema [--markdown]

Prints the JSON Schema (draft 2020-12) of the plugin configuration, generated
from the contract types: what schema/agentroute.schema.json holds.

  --markdown  prints the configuration reference instead: every field of the
              schema with its path, type, default, constraints and
              description, as Markdown (the book's docs/src/reference/index.md)
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
    let mut trust = generate::Trust::default();
    let mut allow_empty = false;
    let mut image = None;
    let mut wasm = None;
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
            "--allow-hosts" => {
                for pattern in value("--allow-hosts")?.split(',') {
                    let pattern = generate::Trust::parse_host_pattern(pattern)
                        .map_err(|e| Usage(format!("--allow-hosts {e}")))?;
                    trust.allow_hosts.push(pattern);
                }
            }
            "--trust-namespace" => {
                for namespace in value("--trust-namespace")?.split(',') {
                    let namespace = namespace.trim();
                    if !is_dns_label(namespace) {
                        return Err(Usage(format!(
                            "--trust-namespace {namespace:?}: a namespace name (a DNS-1123 label)"
                        )));
                    }
                    trust.trusted_namespaces.insert(namespace.to_string());
                }
            }
            "--allow-empty" => allow_empty = true,
            "--image" => {
                let reference = value("--image")?;
                let reference = reference.strip_prefix("oci://").unwrap_or(&reference);
                if reference.is_empty() || reference.contains(char::is_whitespace) {
                    return Err(Usage(format!(
                        "--image {reference:?}: an OCI image reference (registry/name:tag)"
                    )));
                }
                image = Some(reference.to_string());
            }
            "--wasm" => wasm = Some(value("--wasm")?),
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
    let needs_image = matches!(
        target,
        generate::Target::Istio | generate::Target::EnvoyGateway
    );
    if needs_image && image.is_none() && base.is_none() {
        return Err(Usage(format!(
            "--target {} needs --image REF (the plugin's OCI image, or a --base WasmPlugin or \
             EnvoyExtensionPolicy naming one): with FAIL_CLOSE, an image the cluster cannot pull \
             fails every request",
            target.as_str()
        )));
    }
    if image.is_some() && !needs_image {
        return Err(Usage(
            "--image goes with --target istio or envoy-gateway".to_string(),
        ));
    }
    if wasm.is_some() && target != generate::Target::Envoy {
        return Err(Usage("--wasm goes with --target envoy".to_string()));
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
            trust,
            allow_empty,
            image,
            wasm,
        },
        base,
    })
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// How `generate` ended, as its exit status says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Generated {
    /// Everything written (0).
    All,
    /// Nothing written: an error (1).
    Failed,
    /// Written, some resources left out (3): apply, and alert.
    Partial,
    /// Nothing written: the configuration would be empty (4).
    RefusedEmpty,
}

impl Generated {
    fn exit_code(self) -> ExitCode {
        match self {
            Generated::All => ExitCode::SUCCESS,
            Generated::Failed => ExitCode::from(1),
            Generated::Partial => ExitCode::from(3),
            Generated::RefusedEmpty => ExitCode::from(4),
        }
    }
}

/// Generates; every error, warning and left-out resource said on standard
/// error, the output on standard output only when there is one to apply.
fn run_generate(mut args: GenerateArgs) -> Generated {
    let fail = |message: &str| {
        eprintln!("agentroute generate: error: {message}");
        Generated::Failed
    };
    if let Some(file) = &args.base {
        let text = match read(file) {
            Ok(text) => text,
            Err(e) => return fail(&format!("--base {file}: {e}")),
        };
        match generate::read_base(file, &text) {
            Ok(base) => args.options.base = Some(base),
            Err(e) => return fail(&e),
        }
        let target = args.options.target;
        if matches!(
            target,
            generate::Target::Istio | generate::Target::EnvoyGateway
        ) && args.options.image.is_none()
        {
            match generate::image_of_base(&text) {
                Some(image) => args.options.image = Some(image),
                None => {
                    return fail(&format!(
                        "--target {} needs --image REF: --base {file} names no image (a \
                         WasmPlugin's spec.url or an EnvoyExtensionPolicy's \
                         spec.wasm[0].code.image.url)",
                        target.as_str()
                    ))
                }
            }
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
    let tell = |output: &generate::Output| {
        for note in &output.notes {
            eprintln!("agentroute generate: {note}");
        }
        for warning in &output.warnings {
            eprintln!("agentroute generate: warning: {warning}");
        }
        for error in &output.left_out {
            eprintln!("agentroute generate: error: {error}");
        }
    };
    match generate::generate(&inputs, &args.options) {
        Ok(output) => {
            tell(&output);
            print!("{}", output.text);
            if output.left_out.is_empty() {
                Generated::All
            } else {
                eprintln!(
                    "agentroute generate: partial: {} resource(s) left out (above); the rest is written",
                    output.left_out.len()
                );
                Generated::Partial
            }
        }
        Err(generate::Refusal::Empty { why, output }) => {
            tell(&output);
            eprintln!("agentroute generate: error: {why}");
            Generated::RefusedEmpty
        }
        Err(generate::Refusal::Error(e)) => fail(&e),
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
            "--claims" => {
                let text = value("--claims")?;
                request.claims = Some(claims_arg(&text)?);
                request_flags.push("--claims");
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

/// `--claims`: the verified claims, as a JSON object (what a token's
/// payload is); anything else is a usage error naming the flag.
fn claims_arg(text: &str) -> Result<serde_json::Value, Usage> {
    let example = r#"e.g. --claims '{"sub":"alice","groups":["team-a"]}'"#;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(Usage(format!(
            "--claims {text:?}: expected a JSON object of claims ({example})"
        ))),
        Err(e) => Err(Usage(format!(
            "--claims {text:?}: not valid JSON ({e}); {example}"
        ))),
    }
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

/// The files of the run: each FILE as given, each directory as its
/// `.yaml`, `.yml` and `.json` files (sorted, not below it), or why a
/// directory gives none.
fn expand_directories(files: &[String]) -> Vec<Result<String, (String, String)>> {
    let mut out = Vec::new();
    for file in files {
        let path = std::path::Path::new(file);
        if file == "-" || !path.is_dir() {
            out.push(Ok(file.clone()));
            continue;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                out.push(Err((
                    file.clone(),
                    format!("cannot read the directory: {e}"),
                )));
                continue;
            }
        };
        let mut found: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .map(|p| p.display().to_string())
            .collect();
        found.sort();
        if found.is_empty() {
            out.push(Err((
                file.clone(),
                "no .yaml, .yml or .json file in this directory".to_string(),
            )));
        }
        out.extend(found.into_iter().map(Ok));
    }
    out
}

/// Checks every file as one run; true when nothing is in error.
fn run_check(args: &Args) -> bool {
    let inputs: Vec<Input> = expand_directories(&args.files)
        .into_iter()
        .map(|file| match file {
            Ok(file) => Input {
                name: if file == "-" {
                    "<stdin>".to_string()
                } else {
                    file.clone()
                },
                scan: read(&file).and_then(|text| check::scan(&text).map_err(|e| e.0)),
            },
            Err((directory, why)) => Input {
                name: directory,
                scan: Err(why),
            },
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
            Ok(parsed) => run_generate(parsed).exit_code(),
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
        Some("schema")
            if rest.len() == 1 && rest.first().map(String::as_str) == Some("--markdown") =>
        {
            print!("{}", agentroute_cli::reference::markdown(&schema::schema()));
            ExitCode::SUCCESS
        }
        Some("schema") => usage("schema takes no arguments but --markdown", SCHEMA_USAGE),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage(&format!("unknown command {other:?}"), USAGE),
        None => usage("a command is needed", USAGE),
    }
}
