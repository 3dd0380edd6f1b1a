//! `check --explain --claims`: what an entry's `access` rules make of the
//! caller, naming the rule that decides. The verdict is the filter's own
//! (`EntryAccess::admit`, the grant's models and tools); this module only
//! says it.

use serde_json::Value;

use super::Outcome;
use agentroute::config::{Kind, Plan};
use agentroute::identity::access::{Access, Grant, ModelPattern, Rule, MAX_RULES};
use agentroute::identity::claims::Claims;
use agentroute::identity::{gate, Admission, Anonymous, Caller, WELL_KNOWN_PREFIX};
use agentroute::openai::{endpoint, Endpoint};

/// The caller an explanation assumes: the `--claims` given (verified, as
/// `jwt_authn` would hand them over), or none at all.
pub(super) struct ExplainCaller {
    claims: Option<Claims>,
    /// The JSON as given, to quote in a refusal.
    json: Option<Value>,
}

impl ExplainCaller {
    /// `None` when `--claims` is not a JSON object (the command line
    /// refuses it before; the library says so too).
    pub(super) fn new(json: Option<&Value>) -> Option<Self> {
        let claims = match json {
            Some(v) => Some(Claims::from_json(v)?),
            None => None,
        };
        Some(ExplainCaller {
            claims,
            json: json.cloned(),
        })
    }

    pub(super) fn anonymous() -> Self {
        ExplainCaller {
            claims: None,
            json: None,
        }
    }

    pub(super) fn caller(&self) -> &dyn Caller {
        match &self.claims {
            Some(claims) => claims,
            None => &Anonymous,
        }
    }

    pub(super) fn given(&self) -> bool {
        self.claims.is_some()
    }
}

/// What the request asks beyond the entry: its method, the model it is
/// dispatched by, the tool it calls.
#[derive(Default, Clone, Copy)]
pub(super) struct Asked<'a> {
    pub method: &'a str,
    pub model: Option<&'a str>,
    pub tool: Option<&'a str>,
}

/// The `access` line of a request that reached `entry` with this outcome.
pub(super) fn line(
    plan: &Plan,
    entry: Option<usize>,
    path: &str,
    asked: Asked<'_>,
    outcome: &Outcome,
    caller: &ExplainCaller,
) -> Option<String> {
    let entry = entry?;
    // The protected-resource metadata of an MCP entry is served before any
    // admission: it is what a caller without a token reads first.
    let metadata = plan.has_oauth
        && asked.method == "GET"
        && path.starts_with(WELL_KNOWN_PREFIX)
        && matches!(outcome, Outcome::Reply { status, .. } if *status != 401 && *status != 403);
    if metadata {
        return plan
            .entries
            .get(entry)
            .and_then(|e| e.access.as_ref()?.oauth.as_ref())
            .map(|_| {
                "the entry's protected-resource metadata (RFC 9728): served to any caller, no identity needed".to_string()
            });
    }
    describe(plan, entry, caller, asked)
}

/// A note on the caller where no entry judged it: the models `/v1/models`
/// lists for it, or that `--claims` went unused.
pub(super) fn note(
    plan: &Plan,
    path: &str,
    asked: Asked<'_>,
    judged: bool,
    caller: &ExplainCaller,
) -> Option<String> {
    if endpoint(asked.method, path, plan.openai.unversioned_paths) == Some(Endpoint::ListModels) {
        return listed_models(plan, caller);
    }
    (caller.given() && !judged)
        .then(|| "--claims is not used: no entry with access rules judges this request".into())
}

/// The `access` line of a request that reached `entry`: `None` when the
/// entry has neither `access` rules nor `mcp.oauth` (everyone is let in,
/// nothing is read).
fn describe(plan: &Plan, entry: usize, caller: &ExplainCaller, asked: Asked<'_>) -> Option<String> {
    let e = plan.entries.get(entry)?;
    let access = e.access.as_deref()?;
    let text = match access.admit(caller.claims.as_ref(), plan.identity.required) {
        // Grant::ALL with an identity: no rules, only `mcp.oauth`.
        Admission::Admitted(grant) if grant == Grant::ALL => {
            "admitted: any verified identity (the entry has mcp.oauth and no access rules)"
                .to_string()
        }
        Admission::Admitted(grant) => admitted(&access.access, grant, e.kind, caller, asked),
        Admission::Unauthenticated => {
            let why = if plan.identity.required {
                "identity.required is true"
            } else if access.oauth.is_some() {
                "the entry's mcp.oauth: the gateway does its authorization"
            } else {
                "no rule admits a caller without claims"
            };
            format!("401: no verified identity ({why}); pass --claims JSON for a caller's claims")
        }
        Admission::Forbidden => {
            let claims = caller
                .json
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default();
            let rules: Vec<String> = (0..access.access.rules.len())
                .filter_map(|i| rule_name(&access.access, i))
                .collect();
            format!(
                "refused (403): no rule admits {claims}; the rules: {}",
                rules.join(", ")
            )
        }
    };
    Some(text)
}

/// `admitted by access[1] (groups="interns"): models gpt-4o-mini`, and
/// what of the request the grant leaves out.
fn admitted(
    access: &Access,
    grant: Grant,
    kind: Kind,
    caller: &ExplainCaller,
    asked: Asked<'_>,
) -> String {
    let matched: Vec<(usize, &Rule)> = access
        .rules
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < MAX_RULES && grant.0 & (1u64 << i) != 0)
        .collect();
    let names: Vec<String> = matched
        .iter()
        .filter_map(|(i, _)| rule_name(access, *i))
        .collect();
    let mut grants = Vec::new();
    if kind == Kind::ModelApi || matched.iter().any(|(_, r)| r.models.is_some()) {
        grants.push(
            match union(matched.iter().map(|(_, r)| r.models.as_deref())) {
                None => "every model of the entry".to_string(),
                Some(patterns) => format!(
                    "models {}",
                    patterns
                        .iter()
                        .map(model_text)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        );
    }
    if kind == Kind::Mcp || matched.iter().any(|(_, r)| r.tools.is_some()) {
        grants.push(
            match union(matched.iter().map(|(_, r)| r.tools.as_deref())) {
                None => "every tool its mcp.tools allow".to_string(),
                Some(patterns) => format!(
                    "tools {}",
                    patterns
                        .iter()
                        .map(|p| format!("{}{}", p.text, if p.wildcard { "*" } else { "" }))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        );
    }
    let who = if caller.given() {
        "admitted by"
    } else {
        "admitted without an identity by"
    };
    let mut text = format!("{who} {}", names.join(", "));
    if !grants.is_empty() {
        text.push_str(": ");
        text.push_str(&grants.join("; "));
    }
    if let Some(model) = asked.model.filter(|m| !access.allows_model(grant, m)) {
        text.push_str(&format!(" — not the model {model}"));
    }
    if let Some(tool) = asked.tool.filter(|t| !access.allows_tool(grant, t)) {
        text.push_str(&format!(" — not the tool {tool}"));
    }
    text
}

/// The patterns several rules grant together: `None` when one of them
/// names none (it grants all of the entry's).
fn union<'r, P: 'r>(lists: impl Iterator<Item = Option<&'r [P]>>) -> Option<Vec<&'r P>> {
    let mut all = Vec::new();
    for list in lists {
        all.extend(list?.iter());
    }
    Some(all)
}

fn model_text(p: &&ModelPattern) -> String {
    match p {
        ModelPattern::Exact(id) => id.clone(),
        ModelPattern::Prefix(prefix) => format!("{prefix}/*"),
        ModelPattern::Any => "*".to_string(),
    }
}

/// `access[1] (groups="interns")`; a rule without claims admits anyone.
fn rule_name(access: &Access, i: usize) -> Option<String> {
    let rule = access.rules.get(i)?;
    if rule.claims.is_empty() {
        return Some(format!("access[{i}] (no claims: anyone)"));
    }
    let claims: Vec<String> = rule
        .claims
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    Some(format!("access[{i}] ({})", claims.join(", ")))
}

/// The ids `/v1/models` lists for this caller, when access rules make the
/// list depend on who asks.
fn listed_models(plan: &Plan, caller: &ExplainCaller) -> Option<String> {
    if !plan.has_access_rules {
        return None;
    }
    let body: Value = serde_json::from_str(&gate::models_body_for(plan, caller.caller())).ok()?;
    let ids: Vec<&str> = body
        .get("data")?
        .as_array()?
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .collect();
    let who = if caller.given() {
        "this caller"
    } else {
        "a caller without an identity"
    };
    Some(if ids.is_empty() {
        format!("the model list depends on the caller (access rules): {who} gets none")
    } else {
        format!(
            "the model list depends on the caller (access rules): {who} gets {}",
            ids.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::super::{explain, ExplainRequest, Outcome};
    use agentroute::config::Plan;
    use serde_json::json;

    fn plan(identity: &str) -> Plan {
        Plan::from_json(
            format!(
                r#"{{{identity} "agents": [
                {{"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
                 "models": ["gpt-4o", "gpt-4o-mini"],
                 "access": [{{"claims": {{"groups": "ml-team"}}}},
                            {{"claims": {{"groups": "interns"}}, "models": ["gpt-4o-mini"]}}]}},
                {{"name": "open", "namespace": "models", "kind": "modelapi", "backend": "open",
                 "models": ["free"]}},
                {{"name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools",
                 "access": [{{"claims": {{"scope": "tools:read"}}, "tools": ["search", "fetch_*"]}},
                            {{"claims": {{"groups": "admins"}}}}],
                 "mcp": {{"tools": {{"deny": ["fetch_secrets"]}}}}}},
                {{"name": "docs", "namespace": "prod", "kind": "mcp", "backend": "docs",
                 "mcp": {{"oauth": {{"authorization_servers": ["https://auth.example.com"]}}}}}}]}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn ask(
        p: &Plan,
        path: &str,
        claims: Option<serde_json::Value>,
        set: impl FnOnce(&mut ExplainRequest),
    ) -> super::super::Explanation {
        let mut r = ExplainRequest {
            path: path.into(),
            host: "gw.example.com".into(),
            claims,
            ..ExplainRequest::default()
        };
        set(&mut r);
        explain(p, &r)
    }

    fn model(m: &str) -> impl FnOnce(&mut ExplainRequest) + '_ {
        move |r| r.model = Some(m.into())
    }

    fn status(o: &Outcome) -> Option<u32> {
        match o {
            Outcome::Reply { status, .. } => Some(*status),
            _ => None,
        }
    }

    #[test]
    fn model_dispatch_names_the_rule_that_admits_or_refuses() {
        let p = plan("");
        let interns = Some(json!({"groups": ["interns"]}));
        let chat = "/v1/chat/completions";
        let e = ask(&p, chat, interns.clone(), model("gpt-4o-mini"));
        assert_eq!(
            e.access.as_deref(),
            Some(r#"admitted by access[1] (groups="interns"): models gpt-4o-mini"#)
        );
        assert_eq!(e.upstream_path(), Some(chat));
        let text = e.to_string();
        assert!(
            text.contains("(model gpt-4o-mini) (claims {\"groups\":[\"interns\"]})\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "\naccess   admitted by access[1] (groups=\"interns\"): models gpt-4o-mini\nforward  "
            ),
            "{text}"
        );
        // The rule admits the caller, not the model: 403, and the line says why.
        let e = ask(&p, chat, interns, model("gpt-4o"));
        assert!(
            e.access
                .as_deref()
                .unwrap()
                .ends_with(" — not the model gpt-4o"),
            "{e}"
        );
        assert!(
            matches!(&e.outcome, Outcome::Reply { status: 403, code, .. } if code.as_deref() == Some("model_not_allowed")),
            "{e}"
        );
        // Two rules: their union, all of the entry's models.
        let e = ask(
            &p,
            chat,
            Some(json!({"groups": ["interns", "ml-team"]})),
            model("gpt-4o"),
        );
        assert_eq!(
            e.access.as_deref(),
            Some(
                r#"admitted by access[0] (groups="ml-team"), access[1] (groups="interns"): every model of the entry"#
            )
        );
        let e = ask(&p, chat, Some(json!({"groups": "sales"})), model("gpt-4o"));
        assert_eq!(
            e.access.as_deref(),
            Some(
                r#"refused (403): no rule admits {"groups":"sales"}; the rules: access[0] (groups="ml-team"), access[1] (groups="interns")"#
            )
        );
        assert_eq!(status(&e.outcome), Some(403));
        // Without --claims: no verified identity.
        let e = ask(&p, chat, None, model("gpt-4o"));
        assert!(
            e.access
                .as_deref()
                .unwrap()
                .starts_with("401: no verified identity (no rule admits a caller without claims)"),
            "{e}"
        );
        assert_eq!(status(&e.outcome), Some(401));
        assert!(
            e.notes
                .iter()
                .any(|n| n == "the 401 says www-authenticate: Bearer"),
            "{e}"
        );
        let required = plan(r#""identity": {"required": true},"#);
        let e = ask(&required, chat, None, model("gpt-4o"));
        assert!(e.access.unwrap().contains("(identity.required is true)"));
        // An entry without rules: nobody is asked.
        let e = ask(&p, chat, Some(json!({"groups": "sales"})), model("free"));
        assert_eq!(e.access, None);
        assert!(
            e.notes
                .iter()
                .any(|n| n.starts_with("--claims is not used")),
            "{e}"
        );
    }

    #[test]
    fn paths_tools_and_the_model_list_by_caller() {
        let p = plan("");
        let reader = Some(json!({"scope": "openid tools:read"}));
        let call = |tool: &str| {
            let tool = tool.to_string();
            move |r: &mut ExplainRequest| r.mcp_tool = Some(tool)
        };
        let e = ask(&p, "/prod/mcp/tools/mcp", reader.clone(), call("search"));
        assert_eq!(
            e.access.as_deref(),
            Some(r#"admitted by access[0] (scope="tools:read"): tools search, fetch_*"#)
        );
        assert_eq!(e.upstream_path(), Some("/mcp"));
        // A tool the entry allows but the caller's rule does not: answered
        // as an unknown tool, never forwarded.
        let e = ask(
            &p,
            "/prod/mcp/tools/mcp",
            reader.clone(),
            call("delete_all"),
        );
        assert!(e
            .access
            .as_deref()
            .unwrap()
            .ends_with(" — not the tool delete_all"));
        assert_eq!(
            e.outcome,
            Outcome::Reply {
                status: 200,
                code: Some("JSON-RPC -32602".into()),
                message: Some("Unknown tool: delete_all".into())
            }
        );
        // The entry's own rules still come first (denied for everyone).
        let admin = Some(json!({"groups": ["admins"]}));
        let e = ask(
            &p,
            "/prod/mcp/tools/mcp",
            admin.clone(),
            call("fetch_secrets"),
        );
        assert_eq!(status(&e.outcome), Some(200));
        assert!(!e
            .notes
            .iter()
            .any(|n| n.contains("access rules do not grant")));
        let e = ask(&p, "/prod/mcp/tools/mcp", admin, call("delete_all"));
        assert_eq!(
            e.access.as_deref(),
            Some(r#"admitted by access[1] (groups="admins"): every tool its mcp.tools allow"#)
        );
        assert_eq!(e.upstream_path(), Some("/mcp"));
        // A path request without an identity, JSON-RPC shaped.
        let e = ask(&p, "/prod/mcp/tools/mcp", None, call("search"));
        assert!(
            matches!(&e.outcome, Outcome::Reply { status: 401, code, .. } if code.as_deref() == Some("JSON-RPC -32001")),
            "{e}"
        );
        // mcp.oauth: the 401 points at the metadata, which anyone may read.
        let e = ask(&p, "/prod/mcp/docs/mcp", None, |_| {});
        assert!(e.access.unwrap().contains("mcp.oauth"));
        assert!(e.notes.contains(&"the 401 says www-authenticate: Bearer resource_metadata=\"http://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/docs\"".to_string()), "{:?}", e.notes);
        let e = ask(
            &p,
            "/.well-known/oauth-protected-resource/prod/mcp/docs",
            None,
            |_| {},
        );
        assert_eq!(status(&e.outcome), Some(200));
        assert!(e.access.unwrap().contains("served to any caller"));
        let e = ask(
            &p,
            "/prod/mcp/docs/mcp",
            Some(json!({"sub": "alice"})),
            |_| {},
        );
        assert_eq!(
            e.access.as_deref(),
            Some("admitted: any verified identity (the entry has mcp.oauth and no access rules)")
        );
        // /v1/models: what this caller is shown.
        let e = ask(&p, "/v1/models", Some(json!({"groups": "interns"})), |_| {});
        assert!(
            e.notes.contains(&"the model list depends on the caller (access rules): this caller gets gpt-4o-mini, free".to_string()),
            "{:?}",
            e.notes
        );
        let e = ask(&p, "/v1/models", None, |_| {});
        assert!(e
            .notes
            .iter()
            .any(|n| n.ends_with("a caller without an identity gets free")));
        // A rule without claims admits a caller without an identity too.
        let open = Plan::from_json(
            br#"{"agents": [{"name": "a", "backend": "a", "access": [{"claims": {}}]}]}"#,
        )
        .unwrap();
        let e = ask(&open, "/a/x", None, |_| {});
        assert_eq!(
            e.access.as_deref(),
            Some("admitted without an identity by access[0] (no claims: anyone)")
        );
    }
}
