//! The `mcp` block of an entry: tool rules and per-tool limits, only on
//! entries of kind `mcp`. An entry without rules (no block, or one that
//! restricts nothing) compiles to `None` and costs nothing per request.

use super::contract::{RawMcp, RawToolLimit, RawToolRules};
use super::{ConfigError, Kind, RequestRate};
use crate::mcp::rules::{ToolLimit, ToolPattern, ToolRules};

type Result<T> = std::result::Result<T, ConfigError>;

/// Compiles `agents[i].mcp` (`at` is `agents[i]`).
pub(super) fn compile_mcp(raw: Option<RawMcp>, kind: Kind, at: &str) -> Result<Option<ToolRules>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if kind != Kind::Mcp {
        return Err(ConfigError::new(
            format!("{at}.mcp"),
            format!(
                "only on entries of kind \"mcp\" (this one is {:?})",
                kind.as_str()
            ),
        ));
    }
    let RawToolRules { allow, deny } = raw.tools.map(|t| t.0).unwrap_or_default();
    let allow = allow
        .map(|list| patterns(&list, &format!("{at}.mcp.tools.allow")))
        .transpose()?;
    let deny = patterns(
        deny.as_deref().unwrap_or_default(),
        &format!("{at}.mcp.tools.deny"),
    )?;
    let limits = raw
        .tool_limits
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, l)| tool_limit(l.0, &format!("{at}.mcp.tool_limits[{j}]")))
        .collect::<Result<Vec<_>>>()?;
    if allow.is_none() && deny.is_empty() && limits.is_empty() {
        return Ok(None);
    }
    Ok(Some(ToolRules::new(allow, deny, limits)))
}

fn patterns(list: &[String], at: &str) -> Result<Vec<ToolPattern>> {
    list.iter()
        .enumerate()
        .map(|(j, p)| {
            ToolPattern::parse(p).map_err(|why| ConfigError::new(format!("{at}[{j}]"), why))
        })
        .collect()
}

fn tool_limit(raw: RawToolLimit, at: &str) -> Result<ToolLimit> {
    let path = |field: &str| format!("{at}.{field}");
    if raw.tools.is_empty() {
        return Err(ConfigError::new(
            path("tools"),
            "must name at least one tool",
        ));
    }
    let patterns = patterns(&raw.tools, &path("tools"))?;
    let rps = raw.requests_per_second;
    if !(rps > 0.0 && rps.is_finite()) {
        return Err(ConfigError::new(
            path("requests_per_second"),
            "must be a number greater than 0",
        ));
    }
    let burst = match raw.burst {
        Some(0) => return Err(ConfigError::new(path("burst"), "must be at least 1")),
        Some(b) => u32::try_from(b)
            .map_err(|_| ConfigError::new(path("burst"), "must be at most 4294967295"))?,
        // One second's worth, at least one: what `rate_limit` does.
        None => rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32,
    };
    Ok(ToolLimit {
        patterns,
        rate: RequestRate {
            requests_per_second: rps,
            burst,
        },
        per: super::concurrency::client_per(raw.per.as_deref(), &path("per"))?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Plan;

    fn err(json: &str) -> String {
        Plan::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    fn entry(mcp: &str) -> String {
        format!(r#"{{"agents":[{{"name":"t","kind":"mcp","backend":"b","mcp":{mcp}}}]}}"#)
    }

    #[test]
    fn the_contract_example_compiles() {
        let p = Plan::from_json(
            entry(
                r#"{"tools": {"allow": ["search", "fetch_*"], "deny": ["fetch_secrets"]},
                    "tool_limits": [{"tools": ["expensive_*"], "requests_per_second": 1, "burst": 2}]}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        let rules = p.entries[0].mcp.as_ref().unwrap();
        assert!(rules.allows("fetch_url") && !rules.allows("fetch_secrets"));
        assert_eq!(rules.limits[0].rate.burst, 2);
    }

    #[test]
    fn rules_that_restrict_nothing_cost_nothing() {
        for mcp in ["{}", r#"{"tools": {}}"#, r#"{"tool_limits": []}"#] {
            let p = Plan::from_json(entry(mcp).as_bytes()).unwrap();
            assert!(p.entries[0].mcp.is_none(), "{mcp}");
        }
    }

    #[test]
    fn errors_name_the_field_path() {
        for (json, want) in [
            (
                r#"{"agents":[{"name":"a","backend":"b","mcp":{"tools":{"allow":["x"]}}}]}"#
                    .to_string(),
                "agents[0].mcp: only on entries of kind \"mcp\" (this one is \"agent\")",
            ),
            (
                entry(r#"{"tools":{"allow":["a*b"]}}"#),
                "agents[0].mcp.tools.allow[0]: \"a*b\": '*' is only",
            ),
            (
                entry(r#"{"tools":{"deny":["ok",""]}}"#),
                "agents[0].mcp.tools.deny[1]: must not be empty",
            ),
            (
                entry(r#"{"tools":{"alow":["x"]}}"#),
                "agents[0].mcp.tools.alow: unknown field",
            ),
            (
                entry(r#"{"tool_limits":[{"tools":[],"requests_per_second":1}]}"#),
                "agents[0].mcp.tool_limits[0].tools: must name at least one tool",
            ),
            (
                entry(r#"{"tool_limits":[{"tools":["x"],"requests_per_second":0}]}"#),
                "agents[0].mcp.tool_limits[0].requests_per_second: must be a number greater than 0",
            ),
            (
                entry(r#"{"tool_limits":[{"tools":["x"],"requests_per_second":1,"burst":0}]}"#),
                "agents[0].mcp.tool_limits[0].burst: must be at least 1",
            ),
            (
                entry(r#"{"tool_limits":[{"tools":["x"]}]}"#),
                "agents[0].mcp.tool_limits[0].requests_per_second: required",
            ),
            (
                entry(r#"{"tool_limits":[{"tools":["x\u0007"],"requests_per_second":1}]}"#),
                "agents[0].mcp.tool_limits[0].tools[0]: must not hold control characters",
            ),
        ] {
            let got = err(&json);
            assert!(got.starts_with(want), "{json}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn a_default_burst_is_one_seconds_worth() {
        let p = Plan::from_json(
            entry(r#"{"tool_limits":[{"tools":["x"],"requests_per_second":2.5}]}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(p.entries[0].mcp.as_ref().unwrap().limits[0].rate.burst, 3);
    }
}
