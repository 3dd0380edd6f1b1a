//! `agents[].concurrency` compiled, and the `per` form it shares with
//! `rate_limit.per`.

use super::checks::header_name;
use super::contract::RawConcurrency;
use super::{Concurrency, ConfigError, Per};

pub(super) fn compile_concurrency(
    raw: RawConcurrency,
    at: &str,
) -> Result<Concurrency, ConfigError> {
    let max_path = format!("{at}.max_in_flight");
    let max_in_flight = match raw.max_in_flight {
        0 => return Err(ConfigError::new(max_path, "must be at least 1")),
        n => u32::try_from(n)
            .map_err(|_| ConfigError::new(max_path, "must be at most 4294967295"))?,
    };
    Ok(Concurrency {
        max_in_flight,
        per: client_per(raw.per.as_deref(), &format!("{at}.per"))?,
    })
}

/// `entry` (or absent), `client_ip`, `header:<name>` or `claim:<name>`.
pub(super) fn client_per(raw: Option<&str>, path: &str) -> Result<Per, ConfigError> {
    match raw {
        None | Some("entry") => Ok(Per::Entry),
        Some("client_ip") => Ok(Per::ClientIp),
        Some(p) => {
            if let Some(h) = p.strip_prefix("header:") {
                Ok(Per::Header(header_name(h, path)?))
            } else if let Some(claim) = p.strip_prefix("claim:") {
                Ok(Per::Claim(super::access::claim_name(claim, path)?))
            } else {
                Err(ConfigError::new(
                    path,
                    format!(
                        "{p:?} is not \"entry\", \"client_ip\", \"header:<name>\" or \"claim:<name>\""
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Concurrency, Per, Plan};

    fn concurrency(json: &str) -> Result<Option<Concurrency>, String> {
        let config = format!(r#"{{"agents":[{{"name":"a","backend":"b","concurrency":{json}}}]}}"#);
        Plan::from_json(config.as_bytes())
            .map(|p| p.entries[0].concurrency.clone().map(|c| *c))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn forms_and_refusals() {
        assert_eq!(
            concurrency(r#"{"max_in_flight":20}"#).unwrap(),
            Some(Concurrency {
                max_in_flight: 20,
                per: Per::Entry
            })
        );
        assert_eq!(
            concurrency(r#"{"max_in_flight":2,"per":"header:X-Api-Key"}"#).unwrap(),
            Some(Concurrency {
                max_in_flight: 2,
                per: Per::Header("x-api-key".into())
            })
        );
        assert_eq!(
            concurrency(r#"{"max_in_flight":2,"per":"client_ip"}"#)
                .unwrap()
                .unwrap()
                .per,
            Per::ClientIp
        );
        for (json, want) in [
            (r#"{"max_in_flight":0}"#, "agents[0].concurrency.max_in_flight: must be at least 1"),
            (r#"{"max_in_flight":4294967296}"#, "agents[0].concurrency.max_in_flight: must be at most 4294967295"),
            (r#"{"max_in_flight":-1}"#, "agents[0].concurrency.max_in_flight: expected a non-negative integer"),
            (r#"{}"#, "agents[0].concurrency.max_in_flight: required"),
            (r#"{"max_in_flight":1,"per":"ip"}"#, "agents[0].concurrency.per: \"ip\" is not \"entry\", \"client_ip\", \"header:<name>\" or \"claim:<name>\""),
            (r#"{"max_in_flight":1,"per":"header:x-agent-kind"}"#, "agents[0].concurrency.per: \"x-agent-kind\" is a header"),
            (r#"{"max":1}"#, "agents[0].concurrency.max: unknown field"),
        ] {
            let got = concurrency(json).unwrap_err();
            assert!(got.starts_with(want), "{json}\n  got:  {got}\n  want: {want}");
        }
    }
}
