//! `demo-agent NAME=ADDR [NAME=ADDR ...]`: serves one demo agent per listener.

use std::process::ExitCode;

const USAGE: &str = "usage: demo-agent NAME=ADDR [NAME=ADDR ...]\n  e.g. demo-agent coordinator=127.0.0.1:9101 researcher=127.0.0.1:9102";

fn parse(args: &[String]) -> Result<Vec<(String, String)>, String> {
    if args.is_empty() {
        return Err("no agents given".to_string());
    }
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((name, addr)) if !name.is_empty() && !addr.is_empty() => {
                Ok((name.to_string(), addr.to_string()))
            }
            _ => Err(format!("{a:?} is not NAME=ADDR")),
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let agents = match parse(&args) {
        Ok(agents) => agents,
        Err(e) => {
            eprintln!("demo-agent: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    for (name, addr) in agents {
        let listener = match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("demo-agent: cannot listen on {addr} for {name}: {e}");
                return ExitCode::from(1);
            }
        };
        println!("demo-agent {name} listening on http://{addr}");
        tokio::spawn(async move {
            if let Err(e) = agentroute_demo_agent::serve(listener, name.clone()).await {
                eprintln!("demo-agent: {name} stopped: {e}");
            }
        });
    }
    shutdown_signal().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_name_address_pairs() {
        let agents = parse(&args(&["a=127.0.0.1:1", "b=[::1]:2"])).unwrap();
        assert_eq!(
            agents,
            [
                ("a".into(), "127.0.0.1:1".into()),
                ("b".into(), "[::1]:2".into())
            ]
        );
    }

    #[test]
    fn refuses_bad_arguments() {
        assert!(parse(&[]).is_err());
        for bad in ["a", "=127.0.0.1:1", "a="] {
            assert_eq!(
                parse(&args(&[bad])).unwrap_err(),
                format!("{bad:?} is not NAME=ADDR")
            );
        }
    }
}
