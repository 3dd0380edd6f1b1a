//! `cors` (top level and per entry) compiled into [`Policy`]s: origins
//! parsed, `*` refused where browsers would refuse it, and the default
//! header lists completed for the kind of entry a policy serves.

use super::contract::{Obj, RawCors};
use super::{ConfigError, Kind};
use crate::cors::{Allowed, OriginPattern, Policy};

const DEFAULT_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const DEFAULT_HEADERS: [&str; 2] = ["authorization", "content-type"];
/// What an MCP client sends besides (MCP 2025-06-18 and 2026-07-28).
const MCP_HEADERS: [&str; 5] = [
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];
/// What an A2A client sends besides (A2A 1.0 `A2A-Version`).
const A2A_HEADERS: [&str; 1] = ["a2a-version"];
/// What the official OpenAI and Anthropic JavaScript SDKs send besides, in
/// a browser (`dangerouslyAllowBrowser: true`): their platform headers on
/// every request (`x-stainless-*`; the retry count and timeout too), the
/// helper ones (`.stream()`, polling), OpenAI's organization, project and
/// beta headers, Anthropic's version, beta, browser opt-in and API key, and
/// the `user-agent` the Anthropic SDK sets (Firefox sends it, so asks).
/// Model APIs only: a preflight asking for one of these elsewhere is
/// refused as before.
const MODEL_API_HEADERS: [&str; 20] = [
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
    "x-stainless-helper-method",
    "x-stainless-helper",
    "x-stainless-poll-helper",
    "x-stainless-custom-poll-interval",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "x-api-key",
    "user-agent",
];
const DEFAULT_EXPOSE: [&str; 4] = [
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];
const MCP_EXPOSE: [&str; 1] = ["mcp-session-id"];
const DEFAULT_MAX_AGE_SECS: u64 = 600;

/// A `cors` as written, checked; the lists left out are filled per kind.
#[derive(Debug, Clone)]
struct Source {
    any_origin: bool,
    origins: Vec<OriginPattern>,
    methods: Allowed,
    headers: Option<Allowed>,
    expose: Option<Vec<String>>,
    credentials: bool,
    max_age_secs: u64,
}

impl Source {
    fn read(raw: &RawCors, at: &str) -> Result<Source, ConfigError> {
        let path = |field: &str| format!("{at}.{field}");
        let credentials = raw.allow_credentials.unwrap_or(false);
        if raw.allow_origins.is_empty() {
            return Err(ConfigError::new(
                path("allow_origins"),
                "must list at least one origin (or \"*\")",
            ));
        }
        let mut any_origin = false;
        let mut origins = Vec::new();
        for (j, origin) in raw.allow_origins.iter().enumerate() {
            let at = format!("{at}.allow_origins[{j}]");
            if origin == "*" {
                if credentials {
                    return Err(ConfigError::new(
                        at,
                        "\"*\" cannot go with allow_credentials: true (browsers refuse a credentialed answer to any origin): list the origins",
                    ));
                }
                any_origin = true;
            } else {
                origins.push(OriginPattern::parse(origin).map_err(|e| ConfigError::new(at, e))?);
            }
        }
        let methods = match &raw.allow_methods {
            None => Allowed::List(DEFAULT_METHODS.iter().map(|m| m.to_string()).collect()),
            Some(list) => tokens(list, &path("allow_methods"), false)?,
        };
        let headers = raw
            .allow_headers
            .as_ref()
            .map(|list| tokens(list, &path("allow_headers"), true))
            .transpose()?;
        let expose = match &raw.expose_headers {
            None => None,
            Some(list) => match tokens(list, &path("expose_headers"), true)? {
                Allowed::Any if credentials => {
                    return Err(ConfigError::new(
                        path("expose_headers"),
                        "\"*\" cannot go with allow_credentials: true (browsers then read it as a header named \"*\"): list the headers",
                    ))
                }
                Allowed::Any => Some(vec!["*".to_string()]),
                Allowed::List(list) => Some(list),
            },
        };
        Ok(Source {
            any_origin,
            origins,
            methods,
            headers,
            expose,
            credentials,
            max_age_secs: raw.max_age.map_or(DEFAULT_MAX_AGE_SECS, |d| d.0 / 1000),
        })
    }

    /// The policy for entries of `kind` (the OpenAI surface is a model API).
    fn policy(&self, kind: Kind) -> Policy {
        let with = |base: &[&str], extra: &[&str]| -> Vec<String> {
            base.iter().chain(extra).map(|h| h.to_string()).collect()
        };
        let (extra_headers, extra_expose): (&[&str], &[&str]) = match kind {
            Kind::Mcp => (&MCP_HEADERS, &MCP_EXPOSE),
            Kind::Agent => (&A2A_HEADERS, &[]),
            Kind::ModelApi => (&MODEL_API_HEADERS, &[]),
        };
        Policy {
            any_origin: self.any_origin,
            origins: self.origins.clone(),
            methods: self.methods.clone(),
            headers: self
                .headers
                .clone()
                .unwrap_or_else(|| Allowed::List(with(&DEFAULT_HEADERS, extra_headers))),
            expose: self
                .expose
                .clone()
                .unwrap_or_else(|| with(&DEFAULT_EXPOSE, extra_expose)),
            credentials: self.credentials,
            max_age_secs: self.max_age_secs,
        }
    }
}

/// Methods (case kept) or header names (lowercased): tokens, or `"*"` alone.
fn tokens(list: &[String], at: &str, lowercase: bool) -> Result<Allowed, ConfigError> {
    if list.iter().any(|t| t == "*") {
        if list.len() > 1 {
            return Err(ConfigError::new(
                at,
                "\"*\" allows any: list nothing beside it",
            ));
        }
        return Ok(Allowed::Any);
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (j, t) in list.iter().enumerate() {
        let token = !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ConfigError::new(
                format!("{at}[{j}]"),
                format!("{t:?} is not a valid token"),
            ));
        }
        let t = if lowercase {
            t.to_ascii_lowercase()
        } else {
            t.clone()
        };
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(Allowed::List(out))
}

/// Every policy of a plan: the top-level one per kind, made when first
/// needed, and each entry's own.
pub(super) struct CorsTable {
    top: Option<Source>,
    /// The top-level policy's index per kind, in [`Kind::ALL`] order.
    top_by_kind: [Option<usize>; 3],
    policies: Vec<Policy>,
}

impl CorsTable {
    pub(super) fn new(top: Option<Obj<RawCors>>) -> Result<CorsTable, ConfigError> {
        Ok(CorsTable {
            top: top.map(|t| Source::read(&t, "cors")).transpose()?,
            top_by_kind: [None; 3],
            policies: Vec::new(),
        })
    }

    /// The policy index of an entry: its own `cors`, none for `null`, else
    /// the top-level one.
    pub(super) fn for_entry(
        &mut self,
        own: Option<Option<Box<Obj<RawCors>>>>,
        kind: Kind,
        at: &str,
    ) -> Result<Option<usize>, ConfigError> {
        match own {
            Some(None) => Ok(None),
            Some(Some(raw)) => {
                let policy = Source::read(&raw, &format!("{at}.cors"))?.policy(kind);
                self.policies.push(policy);
                Ok(Some(self.policies.len() - 1))
            }
            None => Ok(self.top_for(kind)),
        }
    }

    fn top_for(&mut self, kind: Kind) -> Option<usize> {
        let slot = Kind::ALL.iter().position(|k| *k == kind)?;
        if let Some(index) = self.top_by_kind.get(slot).copied().flatten() {
            return Some(index);
        }
        let policy = self.top.as_ref()?.policy(kind);
        self.policies.push(policy);
        let index = self.policies.len() - 1;
        if let Some(s) = self.top_by_kind.get_mut(slot) {
            *s = Some(index);
        }
        Some(index)
    }

    /// The policies, and the index of the OpenAI surface's.
    pub(super) fn finish(mut self) -> (Vec<Policy>, Option<usize>) {
        let surface = self.top_for(Kind::ModelApi);
        (self.policies, surface)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Plan;
    use crate::cors::{Allowed, HostPattern};

    fn plan(json: &str) -> Result<Plan, String> {
        Plan::from_json(json.as_bytes()).map_err(|e| e.to_string())
    }

    fn list(items: &[&str]) -> Allowed {
        Allowed::List(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn defaults_depend_on_the_kind() {
        let p = plan(
            r#"{"cors":{"allow_origins":["https://dash.example.com"]},"agents":[
                {"name":"a","backend":"a"},
                {"name":"m","kind":"mcp","backend":"m"},
                {"name":"l","kind":"modelapi","backend":"l"},
                {"name":"b","backend":"b"}]}"#,
        )
        .unwrap();
        let agent = p.entry_cors(0).unwrap();
        assert_eq!(
            agent.methods,
            list(&["GET", "POST", "PUT", "PATCH", "DELETE"])
        );
        assert_eq!(
            agent.headers,
            list(&["authorization", "content-type", "a2a-version"])
        );
        assert_eq!(
            agent.expose,
            [
                "retry-after",
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-ratelimit-reset"
            ]
        );
        assert_eq!((agent.credentials, agent.max_age_secs), (false, 600));
        let mcp = p.entry_cors(1).unwrap();
        assert_eq!(
            mcp.headers,
            list(&[
                "authorization",
                "content-type",
                "mcp-protocol-version",
                "mcp-session-id",
                "mcp-method",
                "mcp-name",
                "last-event-id"
            ])
        );
        assert_eq!(
            mcp.expose.last().map(String::as_str),
            Some("mcp-session-id")
        );
        let llm = p.entry_cors(2).unwrap();
        let Allowed::List(headers) = &llm.headers else {
            panic!("a list");
        };
        assert_eq!(headers[..2], ["authorization", "content-type"]);
        for sdk in [
            "x-stainless-os",
            "x-stainless-retry-count",
            "x-stainless-helper-method",
            "openai-organization",
            "openai-project",
            "anthropic-version",
            "anthropic-dangerous-direct-browser-access",
            "x-api-key",
        ] {
            assert!(headers.iter().any(|h| h == sdk), "{sdk}");
        }
        assert_eq!(
            p.surface_cors(),
            p.entry_cors(2),
            "the surface is a model API"
        );
        // One policy per kind, shared by the entries of that kind.
        assert_eq!(p.entries[0].cors, p.entries[3].cors);
        assert_eq!(p.cors.len(), 3);
    }

    #[test]
    fn the_sdks_preflights_pass_on_the_openai_surface() {
        let p = plan(
            r#"{"cors":{"allow_origins":["http://localhost:5173"]},"agents":[
                {"name":"a","backend":"a"}]}"#,
        )
        .unwrap();
        // What Chromium asks for the OpenAI SDK's `.stream()` helper (with
        // organization and project set), and for the Anthropic SDK's call.
        let openai = "authorization,content-type,openai-organization,openai-project,\
            x-stainless-arch,x-stainless-helper-method,x-stainless-lang,x-stainless-os,\
            x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,\
            x-stainless-runtime-version,x-stainless-timeout";
        let anthropic = "anthropic-dangerous-direct-browser-access,anthropic-version,\
            content-type,user-agent,x-api-key,x-stainless-arch,x-stainless-lang,\
            x-stainless-os,x-stainless-package-version,x-stainless-retry-count,\
            x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout";
        let origin = "http://localhost:5173";
        for asked in [openai, anthropic] {
            let surface = p.surface_cors().unwrap();
            assert_eq!(surface.preflight(origin, "POST", Some(asked)).status, 204);
            // An agent's default list is not widened.
            let agent = p.entry_cors(0).unwrap();
            assert_eq!(agent.preflight(origin, "POST", Some(asked)).status, 403);
        }
    }

    #[test]
    fn an_entry_replaces_or_turns_off_the_top_level() {
        let p = plan(
            r#"{"cors":{"allow_origins":["*"]},"agents":[
                {"name":"a","backend":"a","cors":null},
                {"name":"b","backend":"b","cors":{"allow_origins":["https://*.Example.com:443"],
                  "allow_headers":["X-One","*"]}}]}"#,
        );
        assert_eq!(
            p.unwrap_err(),
            "agents[1].cors.allow_headers: \"*\" allows any: list nothing beside it"
        );
        let p = plan(
            r#"{"agents":[
                {"name":"a","backend":"a","cors":null},
                {"name":"b","backend":"b","cors":{"allow_origins":["https://*.Example.com:443"],
                  "allow_headers":["X-One"],"expose_headers":[],"allow_credentials":true,"max_age":"90s",
                  "allow_methods":["GET","patch"]}}]}"#,
        )
        .unwrap();
        assert_eq!(p.entry_cors(0), None);
        assert_eq!(
            p.surface_cors(),
            None,
            "no top-level cors: the surface has none"
        );
        let b = p.entry_cors(1).unwrap();
        assert_eq!(
            b.origins[0].host,
            HostPattern::Subdomains("example.com".into())
        );
        assert_eq!(b.headers, list(&["x-one"]), "an explicit list is the list");
        assert!(b.expose.is_empty());
        assert_eq!((b.credentials, b.max_age_secs), (true, 90));
        assert_eq!(b.methods, list(&["GET", "patch"]));
    }

    #[test]
    fn refusals_name_the_field() {
        for (json, want) in [
            (r#"{"cors":{"allow_origins":["*"],"allow_credentials":true}}"#,
             "cors.allow_origins[0]: \"*\" cannot go with allow_credentials: true"),
            (r#"{"cors":{"allow_origins":[]}}"#, "cors.allow_origins: must list at least one origin"),
            (r#"{"cors":{}}"#, "cors.allow_origins: required"),
            (r#"{"cors":{"allow_origins":["https://a.example.com/"]}}"#,
             "cors.allow_origins[0]: \"https://a.example.com/\" is not an origin (an origin has no path)"),
            (r#"{"cors":{"allow_origins":["dash.example.com"]}}"#,
             "cors.allow_origins[0]: \"dash.example.com\" is not an origin"),
            (r#"{"cors":{"allow_origins":["https://a"],"allow_methods":["GET POST"]}}"#,
             "cors.allow_methods[0]: \"GET POST\" is not a valid token"),
            (r#"{"cors":{"allow_origins":["https://a"],"expose_headers":["*"],"allow_credentials":true}}"#,
             "cors.expose_headers: \"*\" cannot go with allow_credentials: true"),
            (r#"{"cors":{"allow_origins":["https://a"],"max_age":"soon"}}"#, "cors.max_age: invalid duration"),
            (r#"{"cors":{"allow_origin":["https://a"]}}"#, "cors.allow_origin: unknown field"),
            (r#"{"agents":[{"name":"a","backend":"b","cors":{"allow_origins":["https://*.*.x.com"]}}]}"#,
             "agents[0].cors.allow_origins[0]: \"https://*.*.x.com\" is not an origin (the host)"),
        ] {
            let got = plan(json).unwrap_err();
            assert!(got.starts_with(want), "{json}\n  got:  {got}\n  want: {want}");
        }
        // `*` with credentials is fine for headers: they are echoed.
        plan(r#"{"cors":{"allow_origins":["https://a"],"allow_headers":["*"],"allow_methods":["*"],"allow_credentials":true}}"#)
            .unwrap();
    }
}
