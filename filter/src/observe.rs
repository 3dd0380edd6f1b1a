//! What the filter tells access logs and stats about one request, as pure
//! values: the names of the filter-state properties an access log prints,
//! their values, the model label of the token counters, and the
//! `x-envoy-upstream-alt-stat-name` of an entry. The host glue only writes
//! what these functions return.
//!
//! Envoy stores a property `set_property(["agentroute.entry"], v)` in the
//! stream's filter state under `wasm.agentroute.entry` (the Wasm prefix plus
//! the path; a path of several segments would be joined with NUL bytes, so
//! every name here is one segment), where an access log prints it with
//! `%FILTER_STATE(wasm.agentroute.entry:PLAIN)%`.

use std::borrow::Cow;

use crate::canary::Side;
use crate::config::models::ModelId;
use crate::config::Entry;
use crate::usage::Usage;

/// One field an access log can print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `namespace/name` of the matched entry.
    Entry,
    /// `agent`, `modelapi` or `mcp`.
    Kind,
    /// The backend the request was sent to (the `dispatch_header` value).
    Backend,
    /// The model an OpenAI request named, as the client wrote it.
    Model,
    /// Tokens the answer reported (`prompt_tokens` / `input_tokens`).
    InputTokens,
    /// `completion_tokens` / `output_tokens`.
    OutputTokens,
    /// `total_tokens`.
    TotalTokens,
    /// The limit that refused the request ([`Refusal`]).
    Limited,
    /// The canary side a request took, `stable` or `canary`, when the entry
    /// has a `canary` split.
    Canary,
    /// How many times a failed request was sent on to the next backend,
    /// when the entry has `failover`.
    FailoverRetries,
    /// The backends a request of an entry with `failover` tried,
    /// comma-separated, in order.
    BackendsTried,
    /// Who called: the `identity.subject` claim of the verified identity,
    /// for entries whose `access` (or per-claim limits) read it.
    Subject,
    /// The API a translated request was sent in (`anthropic`, `gemini`,
    /// `openai` for the Anthropic surface to an OpenAI backend).
    Provider,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::Entry,
        Field::Kind,
        Field::Backend,
        Field::Model,
        Field::InputTokens,
        Field::OutputTokens,
        Field::TotalTokens,
        Field::Limited,
        Field::Canary,
        Field::FailoverRetries,
        Field::BackendsTried,
        Field::Subject,
        Field::Provider,
    ];

    /// The property path the filter writes (one segment).
    pub fn property(self) -> &'static str {
        match self {
            Field::Entry => "agentroute.entry",
            Field::Kind => "agentroute.kind",
            Field::Backend => "agentroute.backend",
            Field::Model => "agentroute.model",
            Field::InputTokens => "agentroute.input_tokens",
            Field::OutputTokens => "agentroute.output_tokens",
            Field::TotalTokens => "agentroute.total_tokens",
            Field::Limited => "agentroute.limited",
            Field::Canary => "agentroute.canary",
            Field::FailoverRetries => "agentroute.failover_retries",
            Field::BackendsTried => "agentroute.backends_tried",
            Field::Subject => "agentroute.subject",
            Field::Provider => "agentroute.provider",
        }
    }

    /// The filter-state key Envoy stores it under, as access logs name it.
    pub fn filter_state_key(self) -> String {
        format!("wasm.{}", self.property())
    }

    /// The access-log command that prints it as text.
    pub fn access_log_command(self) -> String {
        format!("%FILTER_STATE({}:PLAIN)%", self.filter_state_key())
    }

    /// The key a JSON access log uses for it: the property without the
    /// `agentroute.` prefix.
    pub fn json_key(self) -> &'static str {
        let property = self.property();
        property.strip_prefix("agentroute.").unwrap_or(property)
    }
}

/// Longest model id written to the access log: a client may name any
/// string (up to `max_body_bytes`), and a log line should stay a line.
pub const MAX_LOGGED_MODEL: usize = 256;

/// The properties of a request dispatched to `entry` (sent to `backend`,
/// for `model` when the OpenAI surface dispatched it). A refused request
/// gets the entry and kind only (`backend: None`).
pub fn dispatch_fields<'a>(
    entry: &'a Entry,
    backend: Option<&'a str>,
    model: Option<&'a str>,
    canary: Option<Side>,
) -> Vec<(Field, Cow<'a, str>)> {
    let mut fields = Vec::with_capacity(5);
    fields.push((Field::Entry, Cow::Borrowed(entry.id.as_str())));
    fields.push((Field::Kind, Cow::Borrowed(entry.kind.as_str())));
    if let Some(backend) = backend {
        // The side's backend: a canary request went to the canary's.
        let backend = match (canary, &entry.canary) {
            (Some(Side::Canary), Some(c)) => c.backend.as_str(),
            _ => backend,
        };
        fields.push((Field::Backend, Cow::Borrowed(backend)));
    }
    if let Some(side) = canary {
        fields.push((Field::Canary, Cow::Borrowed(side.as_str())));
    }
    if let Some(model) = model {
        fields.push((
            Field::Model,
            Cow::Borrowed(truncate(model, MAX_LOGGED_MODEL)),
        ));
    }
    fields
}

/// The token properties of an answer that reported its usage: the total,
/// and its input and output parts where the answer gave them.
pub fn usage_fields(usage: Usage) -> Vec<(Field, String)> {
    let mut fields = Vec::with_capacity(3);
    if let Some(input) = usage.input {
        fields.push((Field::InputTokens, input.to_string()));
    }
    if let Some(output) = usage.output {
        fields.push((Field::OutputTokens, output.to_string()));
    }
    fields.push((Field::TotalTokens, usage.total.to_string()));
    fields
}

/// Which limit refused a request: the value of [`Field::Limited`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The entry's local request bucket (`rate_limit.requests_per_second`).
    Requests,
    /// The entry's local token budget (`rate_limit.tokens_per_minute`).
    Tokens,
    /// The rate limit service refused the request (`scope: global`).
    GlobalRequests,
    /// The rate limit service refused it on the token budget.
    GlobalTokens,
    /// The rate limit service could not be asked and `failure_mode` is
    /// `deny`.
    LimitServiceDown,
    /// The entry's in-flight limit (`concurrency.max_in_flight`).
    Concurrency,
    /// An MCP tool's own limit (`mcp.tool_limits`).
    ToolLimit,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Requests => "requests",
            Refusal::Tokens => "tokens",
            Refusal::GlobalRequests => "global_requests",
            Refusal::GlobalTokens => "global_tokens",
            Refusal::LimitServiceDown => "limit_service_down",
            Refusal::Concurrency => "concurrency",
            Refusal::ToolLimit => "tool_limit",
        }
    }
}

/// The model label of the token counters for a request the OpenAI surface
/// dispatched by `claim`: the configured id or pattern, never the id the
/// client wrote, so that the label set is bounded by the configuration (a
/// client naming a million ids under `openai/*` makes one series,
/// `openai/*`). Made safe for an Envoy stat name ([`stat_safe`]).
pub fn model_label(claim: ModelId<'_>) -> String {
    match claim {
        ModelId::Exact(id) => stat_safe(id).into_owned(),
        ModelId::Prefix(prefix) => format!("{}/*", stat_safe(prefix)),
        ModelId::Any => "*".to_string(),
    }
}

/// The model label of an answer metered without a model (a token-budgeted
/// entry reached by path or host: the body was never read).
pub const NO_MODEL: &str = "-";

/// A label value Envoy keeps as written inside a stat name. Envoy turns
/// `:` into `_` in stat names, and `.` separates a name's segments: a dot
/// inside a label survives only between two other characters (the tag
/// rules read the model to the end of the name). So `:`, whitespace and
/// anything else outside `A-Z a-z 0-9 - _ . / * + @` become `_`, as do a
/// leading or trailing dot and the second of two dots in a row.
pub fn stat_safe(label: &str) -> Cow<'_, str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_./*+@".contains(&b);
    let bytes = label.as_bytes();
    let dot_ok = |i: usize| i > 0 && i + 1 < bytes.len() && bytes.get(i - 1) != Some(&b'.');
    let safe = |i: usize, b: u8| allowed(b) && (b != b'.' || dot_ok(i));
    if !label.is_empty() && bytes.iter().enumerate().all(|(i, &b)| safe(i, b)) {
        return Cow::Borrowed(label);
    }
    if label.is_empty() {
        return Cow::Borrowed("_");
    }
    let mut out = String::with_capacity(label.len());
    for (i, &b) in bytes.iter().enumerate() {
        // Multi-byte characters become one `_` per byte: still bounded,
        // and never a byte Envoy would change.
        out.push(if safe(i, b) { char::from(b) } else { '_' });
    }
    Cow::Owned(out)
}

/// The `x-envoy-upstream-alt-stat-name` of an entry: Envoy's router then
/// also charges its upstream stats (`upstream_rq_time`, `upstream_rq_<code>`)
/// under `cluster.<cluster>.<this>.`, which the shipped `stats_tags` turn
/// into `envoy_cluster_agentroute_upstream_rq_time{namespace,agent,kind}`.
/// Names and namespaces are DNS labels: no dot, nothing to escape.
pub fn upstream_stat_name(entry: &Entry) -> String {
    format!(
        "agentroute.namespace.{}.agent.{}.kind.{}",
        entry.namespace(),
        entry.name(),
        entry.kind.as_str()
    )
}

/// The `stats_tags` rules (Envoy's `stats_config`) that turn the tags in
/// the filter's stat names, and in the upstream stats it names per entry,
/// into Prometheus labels: `(tag_name, regex)`. Envoy takes each tag name
/// once, so one rule covers both kinds of name. An MCP tool and a canary
/// side follow the kind in the filter's own names; a failover backend and
/// the model are last and read to the end of the name: either may hold
/// dots.
pub fn stats_tags() -> [(&'static str, &'static str); 7] {
    [
        (
            "namespace",
            r"^(?:wasmcustom\.agentroute_\w+|cluster\..+?\.agentroute)(\.namespace\.([^.]+))",
        ),
        (
            "agent",
            r"^(?:wasmcustom\.agentroute_\w+|cluster\..+?\.agentroute)\.namespace\.[^.]+(\.agent\.([^.]+))",
        ),
        (
            "kind",
            r"^(?:wasmcustom\.agentroute_\w+|cluster\..+?\.agentroute)\.namespace\.[^.]+\.agent\.[^.]+(\.kind\.([^.]+))",
        ),
        (
            "tool",
            r"^wasmcustom\.agentroute_\w+\.namespace\.[^.]+\.agent\.[^.]+\.kind\.[^.]+(\.tool\.([^.]+))",
        ),
        (
            "side",
            r"^wasmcustom\.agentroute_\w+\.namespace\.[^.]+\.agent\.[^.]+\.kind\.[^.]+(\.side\.([^.]+))",
        ),
        (
            "backend",
            r"^wasmcustom\.agentroute_\w+\.namespace\.[^.]+\.agent\.[^.]+\.kind\.[^.]+(\.backend\.(.+))$",
        ),
        (
            "model",
            r"^wasmcustom\.agentroute_\w+\.namespace\.[^.]+\.agent\.[^.]+\.kind\.[^.]+(\.model\.(.+))$",
        ),
    ]
}

/// A property value as written for access logs: one rule for every
/// property the filter sets. Control characters (C0, DEL, C1) and the
/// Unicode line and paragraph separators become `\xNN` / `\u{NNNN}`, and a
/// backslash is doubled so the escape cannot be forged: a client-chosen
/// value (a model id, a header) can never print a second log line.
pub fn log_safe(value: &str) -> Cow<'_, str> {
    let needs = |c: char| c == '\\' || c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !value.chars().any(needs) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str("\\x");
                push_hex(&mut out, c as u32, 2);
            }
            c if needs(c) => {
                out.push_str("\\u{");
                push_hex(&mut out, c as u32, 4);
                out.push('}');
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `value` in lowercase hex, `digits` wide (no formatting machinery).
fn push_hex(out: &mut String, value: u32, digits: u32) {
    for i in (0..digits).rev() {
        let nibble = (value >> (4 * i)) & 0xf;
        out.push(char::from_digit(nibble, 16).unwrap_or('0'));
    }
}

pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Plan;

    fn plan() -> Plan {
        Plan::from_json(
            br#"{"agents": [
                {"name": "coordinator", "namespace": "prod", "backend": "coord"},
                {"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
                 "models": ["gpt-4.1", "openai/*", "ft:gpt-4o:org:x", "*"]}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn property_names_are_one_segment_and_print_as_filter_state() {
        for field in Field::ALL {
            let property = field.property();
            assert!(property.starts_with("agentroute."), "{property}");
            assert!(!property.contains('\0') && !property.contains(' '));
            assert_eq!(
                field.access_log_command(),
                format!("%FILTER_STATE(wasm.{property}:PLAIN)%")
            );
            assert!(!field.json_key().contains('.'), "{}", field.json_key());
        }
        assert_eq!(
            Field::Entry.access_log_command(),
            "%FILTER_STATE(wasm.agentroute.entry:PLAIN)%"
        );
        let mut keys: Vec<&str> = Field::ALL.iter().map(|f| f.json_key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Field::ALL.len(), "JSON keys are distinct");
    }

    #[test]
    fn a_dispatch_names_entry_kind_backend_and_model() {
        let p = plan();
        let llm = &p.entries[1];
        let fields = dispatch_fields(llm, Some("llm"), Some("gpt-4.1"), None);
        let got: Vec<(Field, &str)> = fields.iter().map(|(f, v)| (*f, v.as_ref())).collect();
        assert_eq!(
            got,
            [
                (Field::Entry, "models/llm"),
                (Field::Kind, "modelapi"),
                (Field::Backend, "llm"),
                (Field::Model, "gpt-4.1"),
            ]
        );
        let refused = dispatch_fields(&p.entries[0], None, None, None);
        assert_eq!(refused.len(), 2, "a refused request: entry and kind only");
        let long = "é".repeat(200);
        let fields = dispatch_fields(llm, Some("llm"), Some(&long), None);
        let logged = &fields[3].1;
        assert!(logged.len() <= MAX_LOGGED_MODEL && long.starts_with(logged.as_ref()));
    }

    #[test]
    fn a_split_logs_its_side_and_the_sides_backend() {
        let p = Plan::from_json(
            br#"{"agents":[{"name":"a","backend":"v1","canary":{"backend":"v2","weight":10}}]}"#,
        )
        .unwrap();
        let e = &p.entries[0];
        let fields = dispatch_fields(e, Some("v1"), None, Some(Side::Canary));
        assert!(fields.contains(&(Field::Backend, Cow::Borrowed("v2"))));
        assert!(fields.contains(&(Field::Canary, Cow::Borrowed("canary"))));
        let fields = dispatch_fields(e, Some("v1"), None, Some(Side::Stable));
        assert!(fields.contains(&(Field::Backend, Cow::Borrowed("v1"))));
        assert!(fields.contains(&(Field::Canary, Cow::Borrowed("stable"))));
    }

    #[test]
    fn usage_gives_the_parts_it_has() {
        let full = Usage {
            total: 17,
            input: Some(10),
            output: Some(7),
        };
        assert_eq!(
            usage_fields(full),
            [
                (Field::InputTokens, "10".to_string()),
                (Field::OutputTokens, "7".to_string()),
                (Field::TotalTokens, "17".to_string()),
            ]
        );
        let total_only = Usage {
            total: 8,
            input: None,
            output: None,
        };
        assert_eq!(
            usage_fields(total_only),
            [(Field::TotalTokens, "8".to_string())]
        );
    }

    #[test]
    fn no_property_value_can_forge_a_log_line() {
        let forged = "openai/gpt-4o 200\n[2026-12-07] /admin/delete-all model=- 200";
        let safe = log_safe(forged);
        assert!(!safe.contains('\n'), "{safe}");
        assert_eq!(
            safe,
            "openai/gpt-4o 200\\x0a[2026-12-07] /admin/delete-all model=- 200"
        );
        assert_eq!(log_safe("a\r\tb\x7f"), "a\\x0d\\x09b\\x7f");
        assert_eq!(log_safe("a\u{2028}b\u{85}"), "a\\u{2028}b\\u{0085}");
        // The escape itself cannot be forged: a literal backslash doubles.
        assert_eq!(log_safe("a\\x0ab"), "a\\\\x0ab");
        assert!(matches!(log_safe("gpt-4o"), Cow::Borrowed("gpt-4o")));
        assert!(matches!(log_safe("prod/ünïcode"), Cow::Borrowed(_)));
    }

    #[test]
    fn model_labels_come_from_the_configuration() {
        let p = plan();
        let label = |model: &str| p.model_claim(model).map(|(_, c)| model_label(c));
        assert_eq!(label("gpt-4.1").as_deref(), Some("gpt-4.1"));
        assert_eq!(label("openai/gpt-4o").as_deref(), Some("openai/*"));
        assert_eq!(label("openai/anything-else").as_deref(), Some("openai/*"));
        assert_eq!(label("ft:gpt-4o:org:x").as_deref(), Some("ft_gpt-4o_org_x"));
        assert_eq!(label("client-made-up").as_deref(), Some("*"));
        assert_eq!(
            label("prod/coordinator").as_deref(),
            Some("prod/coordinator")
        );
    }

    #[test]
    fn stat_safe_keeps_what_envoy_keeps() {
        for kept in [
            "gpt-4.1-mini",
            "openai/gpt-4o",
            "a.b.c",
            "x+y@z",
            "*",
            "m_1",
        ] {
            assert!(matches!(stat_safe(kept), Cow::Borrowed(_)), "{kept}");
        }
        let cases = [
            ("llama3:8b", "llama3_8b"),
            (".hidden", "_hidden"),
            ("trailing.", "trailing_"),
            ("a..b", "a._b"),
            ("with space", "with_space"),
            ("modèle", "mod__le"),
            ("", "_"),
        ];
        for (raw, want) in cases {
            assert_eq!(stat_safe(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn upstream_stat_names_carry_the_entry_as_tags() {
        let p = plan();
        assert_eq!(
            upstream_stat_name(&p.entries[0]),
            "agentroute.namespace.prod.agent.coordinator.kind.agent"
        );
    }
}
