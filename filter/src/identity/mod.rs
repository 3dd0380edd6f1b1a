//! Who is calling: the verified claims of a request ([`claims`]) and what
//! an entry's `access` rules make of them ([`access`]), plus the OAuth
//! protected-resource metadata an MCP entry advertises. Pure: the host
//! reads the claims from the metadata Envoy's `jwt_authn` wrote, through
//! the [`Caller`] seam, only for entries that use them.

pub mod access;
pub mod claims;
pub mod gate;
pub mod oauth;

use crate::reply::LocalReply;
use access::{Access, Grant, Verdict};
use claims::Claims;

/// `identity`, compiled: where the claims are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The key of the payload under `envoy.filters.http.jwt_authn`.
    pub metadata_key: String,
    /// The claim naming the caller.
    pub subject: String,
    /// A request to an entry with rules needs a verified identity.
    pub required: bool,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            metadata_key: "jwt_payload".to_string(),
            subject: "sub".to_string(),
            required: false,
        }
    }
}

/// Whether requests to an entry read the caller's claims: its `access`,
/// `mcp.oauth` or a limit keyed on a claim. Others never do.
pub fn uses_claims(entry: &crate::config::Entry) -> bool {
    use crate::config::Per;
    let by_claim = |per: &Per| matches!(per, Per::Claim(_));
    entry.access.is_some()
        || entry.rate_limit.as_ref().is_some_and(|l| by_claim(&l.per))
        || entry.concurrency.as_ref().is_some_and(|c| by_claim(&c.per))
        || entry
            .mcp
            .as_ref()
            .is_some_and(|m| m.limits.iter().any(|l| by_claim(&l.per)))
}

/// Longest subject written to the access log.
pub const MAX_LOGGED_SUBJECT: usize = 256;

/// The dynamic-metadata namespace `jwt_authn` writes.
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// An entry's `access` rules and `mcp.oauth`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EntryAccess {
    pub access: Access,
    pub oauth: Option<OAuth>,
}

/// `mcp.oauth`: the RFC 9728 document's authorization servers and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth {
    pub authorization_servers: Vec<String>,
    pub scopes_supported: Vec<String>,
}

/// What the host can tell about the caller: its verified claims, read on
/// first use (only requests to entries that use them pay the read).
pub trait Caller {
    fn claims(&self) -> Option<&Claims>;
}

impl std::fmt::Debug for dyn Caller + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Caller")
    }
}

/// A caller with no verified identity (and the `check` default).
#[derive(Debug, Default, Clone, Copy)]
pub struct Anonymous;

impl Caller for Anonymous {
    fn claims(&self) -> Option<&Claims> {
        None
    }
}

/// Known claims (`agentroute check --explain --claims`).
impl Caller for Claims {
    fn claims(&self) -> Option<&Claims> {
        Some(self)
    }
}

/// How a request to an entry with access rules or `mcp.oauth` fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted(Grant),
    /// 401: no verified identity (and one is needed).
    Unauthenticated,
    /// 403: an identity no rule admits.
    Forbidden,
}

impl EntryAccess {
    /// Judges a caller. Without a verified identity: 401 where one is
    /// required (`identity.required`, or an MCP entry whose authorization
    /// the gateway does, `mcp.oauth`); else the rules are asked with no
    /// claims (a rule with empty `claims` admits), and 401 when none does
    /// (an identity might).
    pub fn admit(&self, claims: Option<&Claims>, required: bool) -> Admission {
        match (claims, self.access.rules.is_empty()) {
            (None, _) if required || self.oauth.is_some() => Admission::Unauthenticated,
            (None, true) => Admission::Admitted(Grant::ALL),
            (None, false) => match self.access.judge(Some(&Claims::default())) {
                Verdict::Admitted(grant) => Admission::Admitted(grant),
                _ => Admission::Unauthenticated,
            },
            (Some(c), _) => match self.access.judge(Some(c)) {
                Verdict::Admitted(grant) => Admission::Admitted(grant),
                Verdict::Refused | Verdict::NoIdentity => Admission::Forbidden,
            },
        }
    }
}

/// The shape of a refusal: what the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// OpenAI's error shape (the OpenAI surface, model APIs by path).
    OpenAi,
    /// A JSON-RPC error (MCP servers, A2A agents).
    JsonRpc,
}

/// The 401 of a request without a verified identity. `resource_metadata`
/// is the URL of the entry's protected-resource metadata (MCP entries with
/// `mcp.oauth`), which MCP clients follow to find the authorization server.
pub fn unauthenticated(surface: Surface, resource_metadata: Option<&str>) -> LocalReply {
    let message =
        "authentication required: this agent needs a verified identity (a valid bearer token)";
    let mut reply = match surface {
        Surface::OpenAi => LocalReply::error(
            401,
            "authentication_error",
            Some("unauthenticated"),
            None,
            message,
        ),
        Surface::JsonRpc => crate::mcp::judge::rpc_error(401, "null", -32001, message),
    };
    let challenge = match resource_metadata {
        Some(url) => format!("Bearer resource_metadata=\"{url}\""),
        None => "Bearer".to_string(),
    };
    reply.headers.push(("www-authenticate", challenge));
    reply
}

/// The 403 of an identity no rule admits (or a model or tool it may not
/// use).
pub fn forbidden(surface: Surface, what: &str) -> LocalReply {
    let message = format!("forbidden: the caller's identity may not use {what}");
    match surface {
        Surface::OpenAi => {
            LocalReply::error(403, "permission_error", Some("forbidden"), None, &message)
        }
        Surface::JsonRpc => crate::mcp::judge::rpc_error(403, "null", -32003, &message),
    }
}

/// RFC 9728 protected-resource metadata of an MCP entry reached at
/// `resource` (the entry's root URL as the client used it).
pub fn protected_resource_metadata(resource: &str, oauth: &OAuth) -> LocalReply {
    let mut body = serde_json::Map::new();
    body.insert("resource".into(), resource.into());
    body.insert(
        "authorization_servers".into(),
        oauth.authorization_servers.clone().into(),
    );
    body.insert("bearer_methods_supported".into(), vec!["header"].into());
    if !oauth.scopes_supported.is_empty() {
        body.insert(
            "scopes_supported".into(),
            oauth.scopes_supported.clone().into(),
        );
    }
    let body = serde_json::Value::Object(body);
    let mut reply = LocalReply::json(200, body.to_string());
    reply
        .headers
        .push(("cache-control", "public, max-age=300".to_string()));
    reply
}

/// The path MCP clients ask for an entry's metadata at: the well-known
/// prefix inserted before the resource's path (RFC 9728 §3.1).
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/oauth-protected-resource";

#[cfg(test)]
mod tests {
    use super::access::Rule;
    use super::claims::ClaimValue;
    use super::*;

    fn rules(claims: &[(&str, &str)]) -> EntryAccess {
        EntryAccess {
            access: Access {
                rules: vec![Rule {
                    claims: claims
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    models: None,
                    tools: None,
                }],
            },
            oauth: None,
        }
    }

    #[test]
    fn no_identity_is_401_and_a_wrong_one_403() {
        let team = rules(&[("team", "a")]);
        assert_eq!(team.admit(None, false), Admission::Unauthenticated);
        assert_eq!(team.admit(None, true), Admission::Unauthenticated);
        let other = Claims::from_pairs(vec![("team".into(), ClaimValue::Str("b".into()))]);
        assert_eq!(team.admit(Some(&other), false), Admission::Forbidden);
        let a = Claims::from_pairs(vec![("team".into(), ClaimValue::Str("a".into()))]);
        assert!(matches!(team.admit(Some(&a), true), Admission::Admitted(_)));
        // A rule with no claims admits anyone, identity or not, unless one
        // is required.
        let public = rules(&[]);
        assert!(matches!(public.admit(None, false), Admission::Admitted(_)));
        assert_eq!(public.admit(None, true), Admission::Unauthenticated);
        // No rules, only mcp.oauth: any verified identity.
        let oauth = EntryAccess {
            access: Access::default(),
            oauth: Some(OAuth {
                authorization_servers: vec!["https://auth.example.com".into()],
                scopes_supported: vec![],
            }),
        };
        assert_eq!(oauth.admit(None, false), Admission::Unauthenticated);
        assert_eq!(
            oauth.admit(Some(&a), false),
            Admission::Admitted(Grant::ALL)
        );
    }

    #[test]
    fn replies_are_shaped_for_the_surface() {
        let r = unauthenticated(Surface::OpenAi, None);
        assert_eq!(r.status, 401);
        assert!(r
            .headers
            .contains(&("www-authenticate", "Bearer".to_string())));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["type"], "authentication_error");
        let url = "https://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/tools";
        let r = unauthenticated(Surface::JsonRpc, Some(url));
        assert!(r.headers.contains(&(
            "www-authenticate",
            format!("Bearer resource_metadata=\"{url}\"")
        )));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], -32001);
        let r = forbidden(Surface::JsonRpc, "this agent");
        assert_eq!(r.status, 403);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], -32003);
    }
}
