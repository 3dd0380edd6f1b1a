//! `identity`, `agents[].access` and `agents[].mcp.oauth` compiled: claim
//! names and values checked, model and tool patterns read, the OAuth
//! document's URLs checked; every refusal named by its path.

use super::contract::{RawAccessRule, RawIdentity, RawOAuth};
use super::{ConfigError, Kind};
use crate::config::models::ModelId;
use crate::identity::access::{Access, ModelPattern, Rule, MAX_RULES};
use crate::identity::{EntryAccess, Identity, OAuth};
use crate::mcp::rules::ToolPattern;

type Result<T> = std::result::Result<T, ConfigError>;

/// Claim names are JSON member names: any text, within reason.
const MAX_CLAIM_NAME: usize = 256;

pub(super) fn compile_identity(raw: Option<RawIdentity>) -> Result<Identity> {
    let raw = raw.unwrap_or_default();
    let mut identity = Identity::default();
    if let Some(key) = raw.metadata_key {
        if key.is_empty() || key.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "identity.metadata_key",
                "must be a non-empty name without control characters",
            ));
        }
        identity.metadata_key = key;
    }
    if let Some(subject) = raw.subject {
        identity.subject = claim_name(&subject, "identity.subject")?;
    }
    identity.required = raw.required.unwrap_or(false);
    Ok(identity)
}

/// A claim name (`per: claim:NAME`, `identity.subject`, rule claims).
pub(super) fn claim_name(name: &str, path: &str) -> Result<String> {
    if name.is_empty() || name.len() > MAX_CLAIM_NAME || name.chars().any(char::is_control) {
        return Err(ConfigError::new(
            path,
            format!(
                "{name:?} is not a claim name (1 to {MAX_CLAIM_NAME} bytes, no control characters)"
            ),
        ));
    }
    Ok(name.to_string())
}

/// An entry's `access` and `mcp.oauth`; `None` when it has neither.
pub(super) fn compile_entry_access(
    raw: Option<Vec<super::contract::Obj<RawAccessRule>>>,
    oauth: Option<RawOAuth>,
    kind: Kind,
    at: &str,
) -> Result<Option<EntryAccess>> {
    if raw.is_none() && oauth.is_none() {
        return Ok(None);
    }
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_RULES {
        return Err(ConfigError::new(
            format!("{at}.access"),
            format!("at most {MAX_RULES} rules"),
        ));
    }
    let mut rules = Vec::with_capacity(raw.len());
    for (j, rule) in raw.into_iter().enumerate() {
        rules.push(compile_rule(rule.0, kind, &format!("{at}.access[{j}]"))?);
    }
    let oauth = oauth
        .map(|o| compile_oauth(o, &format!("{at}.mcp.oauth")))
        .transpose()?;
    Ok(Some(EntryAccess {
        access: Access { rules },
        oauth,
    }))
}

fn compile_rule(raw: RawAccessRule, kind: Kind, at: &str) -> Result<Rule> {
    let mut claims = Vec::with_capacity(raw.claims.len());
    for (name, value) in raw.claims {
        let name = claim_name(&name, &format!("{at}.claims"))?;
        if value.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("{at}.claims.{name}"),
                "must not hold control characters",
            ));
        }
        claims.push((name, value));
    }
    let models = raw
        .models
        .map(|models| {
            models
                .iter()
                .enumerate()
                .map(|(j, m)| model_pattern(m, &format!("{at}.models[{j}]")))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let tools = match raw.tools {
        Some(_) if kind != Kind::Mcp => {
            return Err(ConfigError::new(
                format!("{at}.tools"),
                format!(
                    "only on entries of kind \"mcp\" (this one is {:?})",
                    kind.as_str()
                ),
            ))
        }
        Some(tools) => Some(
            tools
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    ToolPattern::parse(t)
                        .map_err(|why| ConfigError::new(format!("{at}.tools[{j}]"), why))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    Ok(Rule {
        claims,
        models,
        tools,
    })
}

fn model_pattern(id: &str, path: &str) -> Result<ModelPattern> {
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(ConfigError::new(
            path,
            "must be a non-empty model id without control characters",
        ));
    }
    match ModelId::parse(id).map_err(|why| ConfigError::new(path, why))? {
        ModelId::Exact(id) => Ok(ModelPattern::Exact(id.to_string())),
        ModelId::Prefix(prefix) => Ok(ModelPattern::Prefix(prefix.to_string())),
        ModelId::Any => Ok(ModelPattern::Any),
    }
}

fn compile_oauth(raw: RawOAuth, at: &str) -> Result<OAuth> {
    if raw.authorization_servers.is_empty() {
        return Err(ConfigError::new(
            format!("{at}.authorization_servers"),
            "must name at least one authorization server",
        ));
    }
    for (j, url) in raw.authorization_servers.iter().enumerate() {
        let plain = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .is_some_and(|rest| {
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
            });
        if !plain {
            return Err(ConfigError::new(
                format!("{at}.authorization_servers[{j}]"),
                "must be an http(s) URL of visible characters",
            ));
        }
    }
    let scopes = raw.scopes_supported.unwrap_or_default();
    for (j, scope) in scopes.iter().enumerate() {
        // RFC 6749 scope-token: visible characters but space, `"` and `\`.
        if scope.is_empty()
            || !scope
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(ConfigError::new(
                format!("{at}.scopes_supported[{j}]"),
                "must be a scope token (visible characters, no quote or backslash)",
            ));
        }
    }
    Ok(OAuth {
        authorization_servers: raw.authorization_servers,
        scopes_supported: scopes,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Per, Plan};
    use crate::identity::access::ModelPattern;

    fn plan(json: &str) -> Result<Plan, String> {
        Plan::from_json(json.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_contracts_example_compiles() {
        let p = plan(
            r#"{"identity": {"from": "jwt_authn", "metadata_key": "jwt_payload", "subject": "sub", "required": false},
                "agents": [{"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
                  "models": ["gpt-4o", "gpt-4o-mini"],
                  "access": [{"claims": {"groups": "ml-team"}},
                             {"claims": {"groups": "interns"}, "models": ["gpt-4o-mini"]}],
                  "rate_limit": {"requests_per_second": 1, "burst": 20, "per": "claim:team"}}]}"#,
        )
        .unwrap();
        let access = p.entries[0].access.as_ref().unwrap();
        assert_eq!(access.access.rules.len(), 2);
        assert_eq!(
            access.access.rules[1].models,
            Some(vec![ModelPattern::Exact("gpt-4o-mini".into())])
        );
        assert_eq!(
            p.entries[0].rate_limit.as_ref().unwrap().per,
            Per::Claim("team".into())
        );
        assert_eq!(p.identity.metadata_key, "jwt_payload");
        assert!(!p.identity.required);
    }

    #[test]
    fn oauth_and_tools_on_mcp_entries() {
        let p = plan(
            r#"{"agents": [{"name": "tools", "kind": "mcp", "backend": "t",
                  "access": [{"claims": {"scope": "tools:read"}, "tools": ["search", "fetch_*"]}],
                  "mcp": {"oauth": {"authorization_servers": ["https://auth.example.com"], "scopes_supported": ["tools:read"]}}}]}"#,
        )
        .unwrap();
        let e = &p.entries[0];
        let access = e.access.as_ref().unwrap();
        assert_eq!(
            access.oauth.as_ref().unwrap().scopes_supported,
            ["tools:read"]
        );
        assert!(e.mcp.is_some(), "a rule narrowing tools reads the messages");
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, want) in [
            (
                r#"{"identity": {"from": "header"}, "agents": []}"#,
                "identity.from: unknown variant",
            ),
            (
                r#"{"identity": {"metadata_key": ""}, "agents": []}"#,
                "identity.metadata_key: must be a non-empty name",
            ),
            (
                r#"{"identity": {"subject": ""}, "agents": []}"#,
                "identity.subject: \"\" is not a claim name",
            ),
            (
                r#"{"agents": [{"name": "a", "backend": "b", "access": [{"claims": {"team": "a"}, "tools": ["x"]}]}]}"#,
                "agents[0].access[0].tools: only on entries of kind \"mcp\"",
            ),
            (
                r#"{"agents": [{"name": "a", "backend": "b", "access": [{"models": ["gpt-*"]}]}]}"#,
                "agents[0].access[0].models[0]: \"gpt-*\": '*' is only allowed as a whole pattern",
            ),
            (
                r#"{"agents": [{"name": "a", "backend": "b", "access": [{"claim": {}}]}]}"#,
                "agents[0].access[0].claim: unknown field",
            ),
            (
                r#"{"agents": [{"name": "a", "kind": "mcp", "backend": "b", "mcp": {"oauth": {"authorization_servers": []}}}]}"#,
                "agents[0].mcp.oauth.authorization_servers: must name at least one",
            ),
            (
                r#"{"agents": [{"name": "a", "kind": "mcp", "backend": "b", "mcp": {"oauth": {"authorization_servers": ["ftp://x"]}}}]}"#,
                "agents[0].mcp.oauth.authorization_servers[0]: must be an http(s) URL",
            ),
            (
                r#"{"agents": [{"name": "a", "backend": "b", "rate_limit": {"requests_per_second": 1, "per": "claim:"}}]}"#,
                "agents[0].rate_limit.per: \"\" is not a claim name",
            ),
        ] {
            let got = plan(json).unwrap_err();
            assert!(
                got.starts_with(want),
                "{json}\n  got:  {got}\n  want: {want}"
            );
        }
    }
}
