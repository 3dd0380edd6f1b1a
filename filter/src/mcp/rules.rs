//! Tool rules of an MCP entry, compiled: which tools a client may list and
//! call, which limit a call draws from, and the bounded stat label of a
//! tool name.

use std::collections::HashMap;

use siphasher::sip::SipHasher13;
use std::hash::Hasher;

use crate::config::RequestRate;

/// A tool name pattern: a whole name, or a prefix followed by `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPattern {
    /// The name, or the part before `*`.
    pub text: String,
    pub wildcard: bool,
}

impl ToolPattern {
    /// Reads a configured pattern; `Err` says what is wrong with it.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("must not be empty".to_string());
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!("must be at most {MAX_PATTERN_BYTES} bytes"));
        }
        if pattern.chars().any(char::is_control) {
            return Err("must not hold control characters".to_string());
        }
        let (text, wildcard) = match pattern.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (pattern, false),
        };
        if text.contains('*') {
            return Err(format!(
                "{pattern:?}: '*' is only a wildcard at the end (\"fetch_*\", \"*\")"
            ));
        }
        Ok(ToolPattern {
            text: text.to_string(),
            wildcard,
        })
    }

    pub fn matches(&self, tool: &str) -> bool {
        if self.wildcard {
            tool.starts_with(&self.text)
        } else {
            tool == self.text
        }
    }

    /// The pattern as written.
    pub fn as_written(&self) -> String {
        if self.wildcard {
            format!("{}*", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Longest pattern accepted (MCP tool names are at most 128 characters).
pub const MAX_PATTERN_BYTES: usize = 256;

/// Bucket slots per wildcard limit: every tool name a wildcard pattern
/// matches draws from the bucket of its slot (a hash of the name), so that
/// arbitrary names sent by clients never make more shared-data keys than
/// this (shared data has no delete). Two tools that share a slot share a
/// bucket: with 10 tools under one wildcard, one chance in a hundred.
pub const TOOL_SLOTS: u64 = 4096;

/// The bucket of a tool limit keyed per caller: the tool's bucket and the
/// caller's value hashed together (with the process's secret, so the slot
/// says nothing of the value) into [`TOOL_SLOTS`] slots per limit. Keys stay
/// bounded whatever tools and callers send; two (tool, caller) pairs
/// sharing a slot share a bucket, which only makes their limit stricter.
pub fn caller_slot(secret: &crate::ratelimit::Secret, bucket: ToolBucket, caller: &[u8]) -> u64 {
    let mut value = bucket.key_part().into_bytes();
    value.push(0);
    value.extend_from_slice(caller);
    secret.keyed_hash(&value) % TOOL_SLOTS
}

/// A token bucket per tool name that one of `patterns` matches.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolLimit {
    pub patterns: Vec<ToolPattern>,
    pub rate: RequestRate,
    /// One bucket per tool, or per tool and caller value.
    pub per: crate::config::Per,
}

/// Which bucket of a limit a tool draws from: a whole-name pattern has one
/// bucket of its own; a wildcard's tools share [`TOOL_SLOTS`] slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolBucket {
    /// `patterns[i]` of the limit names the tool exactly.
    Exact(usize),
    Slot(u64),
}

impl ToolBucket {
    /// The key part after the limit's index: `e3` or `s1234`.
    pub fn key_part(self) -> String {
        match self {
            ToolBucket::Exact(i) => format!("e{i}"),
            ToolBucket::Slot(s) => format!("s{s}"),
        }
    }
}

/// The label of tools no configured name or pattern matches.
pub const OTHER_LABEL: &str = "other";

/// What an MCP entry lets clients do with tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRules {
    /// `None`: every tool not denied.
    pub allow: Option<Vec<ToolPattern>>,
    pub deny: Vec<ToolPattern>,
    pub limits: Vec<ToolLimit>,
    /// Stat labels: configured whole names, then wildcard patterns as
    /// written, then [`OTHER_LABEL`]; dots and other characters a stat name
    /// cannot carry read as `_`.
    pub labels: Vec<String>,
    /// Whole names → label index.
    exact_labels: HashMap<String, usize>,
    /// Wildcard patterns → label index, in configuration order.
    wildcard_labels: Vec<(ToolPattern, usize)>,
}

impl ToolRules {
    pub fn new(
        allow: Option<Vec<ToolPattern>>,
        deny: Vec<ToolPattern>,
        limits: Vec<ToolLimit>,
    ) -> Self {
        let mut rules = ToolRules {
            allow,
            deny,
            limits,
            labels: Vec::new(),
            exact_labels: HashMap::new(),
            wildcard_labels: Vec::new(),
        };
        let patterns: Vec<ToolPattern> = rules
            .allow
            .iter()
            .flatten()
            .chain(&rules.deny)
            .chain(rules.limits.iter().flat_map(|l| &l.patterns))
            .cloned()
            .collect();
        let mut by_text: HashMap<String, usize> = HashMap::new();
        for pattern in patterns.iter().filter(|p| !p.wildcard) {
            let label = label_text(&pattern.text);
            let next = rules.labels.len();
            let index = *by_text.entry(label.clone()).or_insert(next);
            if index == next {
                rules.labels.push(label);
            }
            rules.exact_labels.insert(pattern.text.clone(), index);
        }
        for pattern in patterns.into_iter().filter(|p| p.wildcard) {
            let label = label_text(&pattern.as_written());
            let next = rules.labels.len();
            let index = *by_text.entry(label.clone()).or_insert(next);
            if index == next {
                rules.labels.push(label);
            }
            rules.wildcard_labels.push((pattern, index));
        }
        rules.labels.push(OTHER_LABEL.to_string());
        rules
    }

    /// Whether a client may call (and see) `tool`.
    pub fn allows(&self, tool: &str) -> bool {
        if self.deny.iter().any(|p| p.matches(tool)) {
            return false;
        }
        match &self.allow {
            None => true,
            Some(allow) => allow.iter().any(|p| p.matches(tool)),
        }
    }

    /// The limit `tool` draws from (the first whose pattern matches) and
    /// its bucket there.
    pub fn limit_for(&self, tool: &str) -> Option<(usize, &ToolLimit, ToolBucket)> {
        self.limits.iter().enumerate().find_map(|(i, limit)| {
            if let Some(exact) = limit
                .patterns
                .iter()
                .position(|p| !p.wildcard && p.text == tool)
            {
                return Some((i, limit, ToolBucket::Exact(exact)));
            }
            limit
                .patterns
                .iter()
                .any(|p| p.wildcard && p.matches(tool))
                .then(|| (i, limit, ToolBucket::Slot(slot(tool))))
        })
    }

    /// The stat label index of `tool`: its configured name, else the first
    /// wildcard pattern that matches it, else [`OTHER_LABEL`]. Bounded by
    /// the configuration whatever names clients send.
    pub fn label(&self, tool: &str) -> usize {
        if let Some(&i) = self.exact_labels.get(tool) {
            return i;
        }
        self.wildcard_labels
            .iter()
            .find(|(p, _)| p.matches(tool))
            .map_or(self.labels.len() - 1, |(_, i)| *i)
    }
}

/// A slot every worker computes alike: a fixed-key hash (a name gains an
/// attacker nothing a call of the real tool would not: buckets are per
/// tool, shared by all clients).
fn slot(tool: &str) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x6167_656e_7472_6f75, 0x7465_2f6d_6370_0000);
    hasher.write(tool.as_bytes());
    hasher.finish() % TOOL_SLOTS
}

/// A tool name or pattern as a stat tag value: Envoy's tag rules split stat
/// names at dots, so anything but letters, digits, `_`, `-` and `*` is `_`.
fn label_text(text: &str) -> String {
    let mut label: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        label.push('_');
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<ToolPattern> {
        list.iter()
            .map(|p| ToolPattern::parse(p).unwrap())
            .collect()
    }

    fn rules(allow: Option<&[&str]>, deny: &[&str], limits: &[&[&str]]) -> ToolRules {
        ToolRules::new(
            allow.map(patterns),
            patterns(deny),
            limits
                .iter()
                .map(|l| ToolLimit {
                    patterns: patterns(l),
                    rate: RequestRate {
                        requests_per_second: 1.0,
                        burst: 1,
                    },
                    per: crate::config::Per::Entry,
                })
                .collect(),
        )
    }

    #[test]
    fn patterns_are_whole_names_or_suffix_wildcards() {
        let p = ToolPattern::parse("fetch_*").unwrap();
        assert!(p.matches("fetch_url") && p.matches("fetch_") && !p.matches("fetch"));
        let any = ToolPattern::parse("*").unwrap();
        assert!(any.matches("") && any.matches("x"));
        let exact = ToolPattern::parse("search").unwrap();
        assert!(exact.matches("search") && !exact.matches("search2"));
        for bad in ["", "a*b", "*a", "**", "a\nb"] {
            assert!(ToolPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ToolPattern::parse(&"a".repeat(257)).is_err());
    }

    #[test]
    fn deny_wins_over_allow_and_no_allow_allows_all() {
        let r = rules(Some(&["search", "fetch_*"]), &["fetch_secrets"], &[]);
        assert!(r.allows("search") && r.allows("fetch_url"));
        assert!(!r.allows("fetch_secrets") && !r.allows("delete") && !r.allows("Search"));
        let r = rules(None, &["rm_*"], &[]);
        assert!(r.allows("anything") && !r.allows("rm_rf"));
        let r = rules(Some(&[]), &[], &[]);
        assert!(!r.allows("search"), "an empty allow list allows nothing");
    }

    #[test]
    fn limits_are_per_tool_name_first_match_wins() {
        let r = rules(None, &[], &[&["expensive_*", "slow"], &["slow", "*"]]);
        let (i, _, b) = r.limit_for("slow").unwrap();
        assert_eq!((i, b), (0, ToolBucket::Exact(1)));
        let (i, _, a) = r.limit_for("expensive_a").unwrap();
        let (_, _, b) = r.limit_for("expensive_b").unwrap();
        assert_eq!(i, 0);
        assert!(matches!(a, ToolBucket::Slot(s) if s < TOOL_SLOTS));
        assert_ne!(a, b, "distinct tools, distinct buckets (these two)");
        assert_eq!(r.limit_for("expensive_a").unwrap().2, a, "stable");
        assert_eq!(r.limit_for("other").unwrap().0, 1);
        assert!(rules(None, &[], &[&["a"]]).limit_for("b").is_none());
    }

    #[test]
    fn labels_are_bounded_by_the_configuration() {
        let r = rules(
            Some(&["search", "fetch_*", "ns.tool"]),
            &["fetch_secrets"],
            &[&["search"]],
        );
        assert_eq!(
            r.labels,
            ["search", "ns_tool", "fetch_secrets", "fetch_*", "other"]
        );
        let label = |t: &str| r.labels[r.label(t)].as_str();
        assert_eq!(label("search"), "search");
        assert_eq!(label("ns.tool"), "ns_tool");
        assert_eq!(label("fetch_secrets"), "fetch_secrets");
        assert_eq!(label("fetch_anything"), "fetch_*");
        assert_eq!(label("random-1234"), "other");
        assert_eq!(label("search.x"), "other");
    }

    #[test]
    fn caller_slots_are_per_tool_and_caller_and_bounded() {
        let secret = crate::ratelimit::Secret([7; 16]);
        let a = ToolBucket::Exact(0);
        let b = ToolBucket::Exact(1);
        let slot = caller_slot(&secret, a, b"team-a");
        assert_eq!(slot, caller_slot(&secret, a, b"team-a"));
        assert_ne!(slot, caller_slot(&secret, a, b"team-b"));
        assert_ne!(slot, caller_slot(&secret, b, b"team-a"));
        assert!((0..1000).all(|i| caller_slot(&secret, a, format!("c{i}").as_bytes()) < TOOL_SLOTS));
        let other = crate::ratelimit::Secret([8; 16]);
        assert_ne!(slot, caller_slot(&other, a, b"team-a"));
    }
}
