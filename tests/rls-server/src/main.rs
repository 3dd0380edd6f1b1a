//! `rls-server`: test infrastructure, an Envoy rate limit service on Limitador + Redis.
//! See the library docs (`agentroute_rls_server`) for the request mapping.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agentroute_rls_server::{load_limits, serve, Options, RlsService};

const USAGE: &str = "\
usage: rls-server --redis redis://HOST:PORT --limits FILE [--listen ADDR]
                  [--count-over-limit] [--unset-hits-addend-is-one]

  --listen ADDR                 gRPC address (default 127.0.0.1:0); prints
                                'listening on HOST:PORT' once it serves
  --redis URL                   Redis holding the counters (required)
  --limits FILE                 Limitador limits file: a YAML list of limits with
                                namespace, max_value, seconds, conditions, variables
  --count-over-limit            count hits even when over the limit (as
                                envoyproxy/ratelimit does)
  --unset-hits-addend-is-one    a request-level hits_addend of 0 counts 1 (as
                                limitador-server and envoyproxy/ratelimit do);
                                by default it means check only";

struct Args {
    listen: String,
    redis: String,
    limits: PathBuf,
    options: Options,
}

fn parse_args() -> Result<Args, String> {
    let mut listen = "127.0.0.1:0".to_string();
    let mut redis = None;
    let mut limits = None;
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--listen" => listen = value()?,
            "--redis" => redis = Some(value()?),
            "--limits" => limits = Some(PathBuf::from(value()?)),
            "--count-over-limit" => options.count_over_limit = true,
            "--unset-hits-addend-is-one" => options.unset_hits_addend_is_one = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Args {
        listen,
        redis: redis.ok_or("--redis is required")?,
        limits: limits.ok_or("--limits is required")?,
        options,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("rls-server: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rls-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let limits = load_limits(&args.limits)?;
    let count = limits.len();
    let service = RlsService::connect(&args.redis, limits, args.options).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .map_err(|e| format!("couldn't listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!(
        "rls-server: {count} limit(s) from {}, counters in {}",
        args.limits.display(),
        args.redis
    );
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    drop(out);
    serve(listener, service).await
}
