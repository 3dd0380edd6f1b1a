//! Where the request path meets `access`: an entry's admission (with the
//! reply shaped for the surface), the models a caller may see in
//! `/v1/models`, and the OAuth protected-resource metadata of MCP entries.
//! Pure; `request` calls it for entries that have `access` or
//! `mcp.oauth`, so other entries never ask for the caller's claims.

use super::access::Grant;
use super::{Admission, Caller, Surface};
use crate::config::{Kind, Plan};
use crate::reply::LocalReply;

/// How the client of an entry reached by path speaks: model APIs
/// OpenAI's errors, MCP servers and agents (A2A) JSON-RPC's.
pub fn surface_of(kind: Kind) -> Surface {
    match kind {
        Kind::ModelApi => Surface::OpenAi,
        Kind::Agent | Kind::Mcp => Surface::JsonRpc,
    }
}

/// Admits a request to `entry`: `Ok(None)` for an entry without `access`
/// or `mcp.oauth` (nothing asked), `Ok(Some(grant))` for an admitted
/// caller, `Err` the 401 or 403. `metadata_url` gives the entry's
/// protected-resource metadata URL for the 401 of an entry with
/// `mcp.oauth` (asked only then).
pub fn admit(
    plan: &Plan,
    entry: usize,
    caller: &dyn Caller,
    surface: Surface,
    metadata_url: impl FnOnce() -> Option<String>,
) -> Result<Option<Grant>, LocalReply> {
    let Some(access) = plan.entries.get(entry).and_then(|e| e.access.as_deref()) else {
        return Ok(None);
    };
    match access.admit(caller.claims(), plan.identity.required) {
        Admission::Admitted(grant) => Ok(Some(grant)),
        Admission::Unauthenticated => {
            let url = access.oauth.as_ref().and_then(|_| metadata_url());
            Err(super::unauthenticated(surface, url.as_deref()))
        }
        Admission::Forbidden => Err(super::forbidden(surface, "this agent")),
    }
}

/// Whether a caller admitted with `grant` may use `model` on `entry`.
pub fn allows_model(plan: &Plan, entry: usize, grant: Option<Grant>, model: &str) -> bool {
    match (
        grant,
        plan.entries.get(entry).and_then(|e| e.access.as_deref()),
    ) {
        (Some(grant), Some(access)) => access.access.allows_model(grant, model),
        _ => true,
    }
}

/// The 403 of a model the caller may not use.
pub fn model_forbidden(model: &str) -> LocalReply {
    LocalReply::error(
        403,
        "permission_error",
        Some("model_not_allowed"),
        Some("model"),
        &format!("the caller's identity may not use the model {model:?}"),
    )
}

/// `/v1/models` for one caller: the ids of entries without rules, and of
/// entries whose rules admit the caller, the models those rules grant.
/// Built per request (only plans with `access` rules pay for it).
pub fn models_body_for(plan: &Plan, caller: &dyn Caller) -> String {
    let claims = caller.claims();
    let data: Vec<serde_json::Value> = plan
        .models
        .listed(plan.entries.as_slice())
        .filter(|(id, entry)| {
            let Some(e) = plan.entries.get(*entry) else {
                return false;
            };
            match e.access.as_deref() {
                None => true,
                Some(access) => match access.admit(claims, plan.identity.required) {
                    Admission::Admitted(grant) => access.access.allows_model(grant, id),
                    _ => false,
                },
            }
        })
        .filter_map(|(id, entry)| {
            let e = plan.entries.get(entry)?;
            Some(serde_json::json!({ "id": id, "object": "model", "created": plan.created, "owned_by": e.namespace() }))
        })
        .collect();
    serde_json::json!({ "object": "list", "data": data }).to_string()
}

/// The resource URL of an entry reached under `prefix` (what the client
/// connects to, RFC 9728's `resource`), and its metadata URL (the
/// well-known prefix inserted before the path).
pub fn resource_urls(scheme: &str, authority: &str, prefix: &str) -> (String, String) {
    let prefix = prefix.trim_end_matches('/');
    (
        format!("{scheme}://{authority}{prefix}"),
        format!("{scheme}://{authority}{}{prefix}", super::WELL_KNOWN_PREFIX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::claims::{ClaimValue, Claims};
    use crate::identity::Anonymous;

    fn plan() -> Plan {
        Plan::from_json(
            br#"{"agents": [
                {"name": "open", "kind": "modelapi", "backend": "o", "models": ["free"]},
                {"name": "llm", "kind": "modelapi", "backend": "l", "models": ["gpt-4o", "gpt-4o-mini"],
                 "access": [{"claims": {"groups": "ml-team"}},
                            {"claims": {"groups": "interns"}, "models": ["gpt-4o-mini"]}]}]}"#,
        )
        .unwrap()
    }

    fn member(group: &str) -> Claims {
        Claims::from_pairs(vec![(
            "groups".into(),
            ClaimValue::List(vec![ClaimValue::Str(group.into())]),
        )])
    }

    fn ids(body: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn each_caller_lists_only_its_models() {
        let p = plan();
        assert!(p.has_access_rules);
        assert_eq!(
            ids(&models_body_for(&p, &member("ml-team"))),
            ["free", "gpt-4o", "gpt-4o-mini"]
        );
        assert_eq!(
            ids(&models_body_for(&p, &member("interns"))),
            ["free", "gpt-4o-mini"]
        );
        assert_eq!(ids(&models_body_for(&p, &member("sales"))), ["free"]);
        assert_eq!(ids(&models_body_for(&p, &Anonymous)), ["free"]);
    }

    #[test]
    fn admission_and_models() {
        let p = plan();
        assert_eq!(admit(&p, 0, &Anonymous, Surface::OpenAi, || None), Ok(None));
        assert_eq!(
            admit(&p, 1, &Anonymous, Surface::OpenAi, || None)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            admit(&p, 1, &member("sales"), Surface::OpenAi, || None)
                .unwrap_err()
                .status,
            403
        );
        let grant = admit(&p, 1, &member("interns"), Surface::OpenAi, || None).unwrap();
        assert!(allows_model(&p, 1, grant, "gpt-4o-mini"));
        assert!(!allows_model(&p, 1, grant, "gpt-4o"));
        assert!(allows_model(&p, 0, None, "free"));
    }

    #[test]
    fn resource_urls_insert_the_well_known_prefix() {
        assert_eq!(
            resource_urls("https", "gw.example.com", "/prod/mcp/tools"),
            (
                "https://gw.example.com/prod/mcp/tools".to_string(),
                "https://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/tools"
                    .to_string()
            )
        );
        assert_eq!(
            resource_urls("http", "tools.example.com:8080", ""),
            (
                "http://tools.example.com:8080".to_string(),
                "http://tools.example.com:8080/.well-known/oauth-protected-resource".to_string()
            )
        );
    }
}
