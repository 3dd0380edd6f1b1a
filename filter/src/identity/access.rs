//! `agents[].access`: who may use an entry, and which of its models and
//! tools, by the verified claims of the caller. Pure: the host reads the
//! claims (`identity::claims`), this decides.
//!
//! A request is admitted when one rule's `claims` all match. A claim
//! matches a rule's value when it is that string, when it is an array
//! holding that string, or — for `scope` and `scp`, the OAuth scope claims —
//! when one of its space-delimited words is that string. Every rule that
//! matches grants what it names: a rule without `models` (or `tools`)
//! grants all of the entry's, so several matching rules grant the union.

use super::claims::{ClaimValue, Claims};
use crate::mcp::rules::ToolPattern;

/// Rules of one entry are at most this many (a mask of matched rules).
pub const MAX_RULES: usize = 64;

/// One `access[]` rule, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Claim name and the value it must hold, all of them.
    pub claims: Vec<(String, String)>,
    /// Model ids or patterns (`prefix/*`, `*`) the caller may use; `None`:
    /// all of the entry's.
    pub models: Option<Vec<ModelPattern>>,
    /// Tool patterns the caller may list and call (within `mcp.tools`);
    /// `None`: all the entry's rules allow.
    pub tools: Option<Vec<ToolPattern>>,
}

/// A model id or pattern of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelPattern {
    Exact(String),
    Prefix(String),
    Any,
}

impl ModelPattern {
    pub fn matches(&self, model: &str) -> bool {
        match self {
            ModelPattern::Exact(id) => id == model,
            ModelPattern::Prefix(prefix) => model
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
            ModelPattern::Any => true,
        }
    }
}

/// An entry's rules.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Access {
    pub rules: Vec<Rule>,
}

/// What the rules say about a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No verified identity at all (401 where one is required or rules
    /// exist).
    NoIdentity,
    /// An identity no rule admits (403).
    Refused,
    /// Admitted by the rules in this mask (bit `i`: rule `i`).
    Admitted(Grant),
}

/// The rules that admitted a caller (bit `i`: rule `i`); [`Grant::ALL`]
/// for an entry without rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant(pub u64);

impl Grant {
    /// Everything the entry has: no rule narrows it.
    pub const ALL: Grant = Grant(0);
}

impl Access {
    /// Judges a caller: `None` claims is a request without a verified
    /// identity.
    pub fn judge(&self, claims: Option<&Claims>) -> Verdict {
        let Some(claims) = claims else {
            return Verdict::NoIdentity;
        };
        if self.rules.is_empty() {
            return Verdict::Admitted(Grant::ALL);
        }
        let mut mask = 0u64;
        for (i, rule) in self.rules.iter().enumerate().take(MAX_RULES) {
            if rule
                .claims
                .iter()
                .all(|(name, want)| holds(claims.get(name), name, want))
            {
                mask |= 1 << i;
            }
        }
        if mask == 0 {
            Verdict::Refused
        } else {
            Verdict::Admitted(Grant(mask))
        }
    }

    fn granted(&self, grant: Grant) -> impl Iterator<Item = &Rule> {
        // `Grant::ALL` (mask 0) selects no rule: callers check it first.
        self.rules
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i < MAX_RULES && grant.0 & (1 << i) != 0)
            .map(|(_, r)| r)
    }

    /// Whether the caller may use `model` on this entry.
    pub fn allows_model(&self, grant: Grant, model: &str) -> bool {
        grant == Grant::ALL
            || self.granted(grant).any(|r| match &r.models {
                None => true,
                Some(patterns) => patterns.iter().any(|p| p.matches(model)),
            })
    }

    /// Whether the caller may list and call `tool` (the entry's own
    /// `mcp.tools` still apply on top).
    pub fn allows_tool(&self, grant: Grant, tool: &str) -> bool {
        grant == Grant::ALL
            || self.granted(grant).any(|r| match &r.tools {
                None => true,
                Some(patterns) => patterns.iter().any(|p| p.matches(tool)),
            })
    }

    /// Whether answers depend on the caller (rules exist): a list answer
    /// (`tools/list`, `/v1/models`) is then private to the caller.
    pub fn per_caller(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// Whether a claim holds the value a rule wants.
fn holds(claim: Option<&ClaimValue>, name: &str, want: &str) -> bool {
    match claim {
        Some(ClaimValue::Str(s)) => {
            s == want || (matches!(name, "scope" | "scp") && s.split(' ').any(|word| word == want))
        }
        Some(ClaimValue::List(items)) => items
            .iter()
            .any(|i| matches!(i, ClaimValue::Str(s) if s == want)),
        Some(ClaimValue::Bool(b)) => want == if *b { "true" } else { "false" },
        Some(ClaimValue::Num(n)) => want.parse::<f64>().is_ok_and(|w| w == *n),
        Some(ClaimValue::Null | ClaimValue::Object) | None => false,
    }
}

/// The value a limit keyed on claim `name` counts: its text (a list's
/// strings joined by `,`, in the token's order), or `None` without it.
pub fn claim_key(claims: Option<&Claims>, name: &str) -> Option<Vec<u8>> {
    match claims?.get(name)? {
        ClaimValue::Str(s) => Some(s.as_bytes().to_vec()),
        ClaimValue::Num(n) => Some(number_text(*n).into_bytes()),
        ClaimValue::Bool(b) => Some(if *b {
            b"true".to_vec()
        } else {
            b"false".to_vec()
        }),
        ClaimValue::List(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if let ClaimValue::Str(s) = item {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Some(out)
        }
        ClaimValue::Null | ClaimValue::Object => None,
    }
}

/// A number claim as text: integers without a fraction (what a token's
/// issuer wrote), others by their bits (no float formatting in the
/// plugin; only ever hashed).
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        (n as i64).to_string()
    } else {
        format!("f{:x}", n.to_bits())
    }
}

/// The caller's name (`identity.subject`), when the claim is a string.
pub fn subject<'c>(claims: Option<&'c Claims>, claim: &str) -> Option<&'c str> {
    match claims?.get(claim)? {
        ClaimValue::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(fields: &[(&str, ClaimValue)]) -> Claims {
        Claims::from_pairs(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn s(v: &str) -> ClaimValue {
        ClaimValue::Str(v.into())
    }

    fn rule(claims: &[(&str, &str)], models: Option<&[&str]>, tools: Option<&[&str]>) -> Rule {
        Rule {
            claims: claims
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            models: models.map(|m| {
                m.iter()
                    .map(|id| match *id {
                        "*" => ModelPattern::Any,
                        id => match id.strip_suffix("/*") {
                            Some(p) => ModelPattern::Prefix(p.into()),
                            None => ModelPattern::Exact(id.into()),
                        },
                    })
                    .collect()
            }),
            tools: tools.map(|t| t.iter().map(|p| ToolPattern::parse(p).unwrap()).collect()),
        }
    }

    fn contract_example() -> Access {
        Access {
            rules: vec![
                rule(&[("groups", "ml-team")], None, None),
                rule(
                    &[("groups", "interns")],
                    Some(&["gpt-4o-mini"]),
                    Some(&["search"]),
                ),
            ],
        }
    }

    #[test]
    fn the_contracts_example() {
        let access = contract_example();
        let ml = claims(&[("groups", ClaimValue::List(vec![s("ml-team")]))]);
        let intern = claims(&[("groups", ClaimValue::List(vec![s("interns")]))]);
        let other = claims(&[("groups", ClaimValue::List(vec![s("sales")]))]);
        let Verdict::Admitted(g) = access.judge(Some(&ml)) else {
            panic!("ml-team admitted")
        };
        assert!(access.allows_model(g, "gpt-4o") && access.allows_model(g, "gpt-4o-mini"));
        assert!(access.allows_tool(g, "fetch_secrets"));
        let Verdict::Admitted(g) = access.judge(Some(&intern)) else {
            panic!("interns admitted")
        };
        assert!(!access.allows_model(g, "gpt-4o") && access.allows_model(g, "gpt-4o-mini"));
        assert!(access.allows_tool(g, "search") && !access.allows_tool(g, "fetch_url"));
        assert_eq!(access.judge(Some(&other)), Verdict::Refused);
        assert_eq!(access.judge(None), Verdict::NoIdentity);
        assert_eq!(access.judge(Some(&Claims::default())), Verdict::Refused);
    }

    #[test]
    fn several_matching_rules_grant_their_union() {
        let both = claims(&[("groups", ClaimValue::List(vec![s("interns"), s("ml-team")]))]);
        let access = contract_example();
        let Verdict::Admitted(g) = access.judge(Some(&both)) else {
            panic!()
        };
        assert!(access.allows_model(g, "gpt-4o"));
    }

    #[test]
    fn equality_membership_and_scope_words() {
        let access = Access {
            rules: vec![rule(&[("team", "a"), ("scope", "models:read")], None, None)],
        };
        let ok = claims(&[("team", s("a")), ("scope", s("openid models:read email"))]);
        assert!(matches!(access.judge(Some(&ok)), Verdict::Admitted(_)));
        // All claims of a rule must match.
        let no_scope = claims(&[("team", s("a")), ("scope", s("openid email"))]);
        assert_eq!(access.judge(Some(&no_scope)), Verdict::Refused);
        // Words are whole: a prefix or a substring is not the word.
        let partial = claims(&[("team", s("a")), ("scope", s("models:read:all"))]);
        assert_eq!(access.judge(Some(&partial)), Verdict::Refused);
        // Only scope claims are split: a space in another claim is text.
        let team = Access {
            rules: vec![rule(&[("team", "a")], None, None)],
        };
        assert_eq!(
            team.judge(Some(&claims(&[("team", s("a b"))]))),
            Verdict::Refused
        );
        // Strings only match strings in arrays; booleans and numbers by text.
        let flags = Access {
            rules: vec![rule(
                &[("email_verified", "true"), ("level", "3")],
                None,
                None,
            )],
        };
        let typed = claims(&[
            ("email_verified", ClaimValue::Bool(true)),
            ("level", ClaimValue::Num(3.0)),
        ]);
        assert!(matches!(flags.judge(Some(&typed)), Verdict::Admitted(_)));
        let text = claims(&[("email_verified", s("true")), ("level", s("3"))]);
        assert!(matches!(flags.judge(Some(&text)), Verdict::Admitted(_)));
        let obj = claims(&[
            ("email_verified", ClaimValue::Object),
            ("level", ClaimValue::Null),
        ]);
        assert_eq!(flags.judge(Some(&obj)), Verdict::Refused);
    }

    #[test]
    fn model_patterns() {
        assert!(ModelPattern::Prefix("openai".into()).matches("openai/gpt-4o"));
        assert!(!ModelPattern::Prefix("openai".into()).matches("openai/"));
        assert!(!ModelPattern::Prefix("openai".into()).matches("openaix/gpt"));
        assert!(ModelPattern::Any.matches("anything"));
        assert!(!ModelPattern::Exact("a".into()).matches("ab"));
    }

    #[test]
    fn limit_keys_and_subjects() {
        let c = claims(&[
            ("team", s("team-a")),
            ("groups", ClaimValue::List(vec![s("x"), s("y")])),
            ("uid", ClaimValue::Num(42.0)),
            ("ratio", ClaimValue::Num(0.5)),
            ("obj", ClaimValue::Object),
        ]);
        assert_eq!(claim_key(Some(&c), "team").unwrap(), b"team-a");
        assert_eq!(claim_key(Some(&c), "groups").unwrap(), b"x,y");
        assert_eq!(claim_key(Some(&c), "uid").unwrap(), b"42");
        assert!(claim_key(Some(&c), "ratio").is_some());
        assert_eq!(claim_key(Some(&c), "obj"), None);
        assert_eq!(claim_key(Some(&c), "missing"), None);
        assert_eq!(claim_key(None, "team"), None);
        assert_eq!(subject(Some(&c), "team"), Some("team-a"));
        assert_eq!(subject(Some(&c), "uid"), None);
    }
}
