//! Which entry serves an OpenAI model id: exact ids, `prefix/*` patterns and
//! at most one `*` (a proxy such as LiteLLM serving many models). Exact ids
//! win, then the longest matching prefix, then `*`.

use crate::fasthash::FastMap;

use super::ConfigError;

/// Model ids → entry index, compiled once per plan.
#[derive(Debug, Default)]
pub struct ModelTable {
    exact: FastMap<String, usize>,
    /// `prefix/*` stored as `prefix`.
    prefixes: FastMap<String, usize>,
    any: Option<usize>,
    /// Exact ids in configuration order, for `GET /v1/models` (patterns are
    /// not model ids a client could name).
    listed: Vec<(String, usize)>,
}

/// What a configured model id means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelId<'a> {
    Exact(&'a str),
    /// `prefix/*`: any id starting with `prefix/` and something after it.
    Prefix(&'a str),
    /// `*`: any id no exact id or prefix claims.
    Any,
}

impl<'a> ModelId<'a> {
    /// Reads a configured id; `*` anywhere else is refused, since a user
    /// writing `gpt-*` means a glob the gateway does not have.
    pub fn parse(id: &'a str) -> Result<Self, String> {
        if id == "*" {
            return Ok(ModelId::Any);
        }
        if let Some(prefix) = id.strip_suffix("/*") {
            if prefix.is_empty() || prefix.contains('*') {
                return Err(format!(
                    "{id:?} is not a model pattern: use \"prefix/*\" with a non-empty prefix, or \"*\""
                ));
            }
            return Ok(ModelId::Prefix(prefix));
        }
        if id.contains('*') {
            return Err(format!(
                "{id:?}: '*' is only allowed as a whole pattern, \"prefix/*\" or \"*\""
            ));
        }
        Ok(ModelId::Exact(id))
    }
}

impl ModelTable {
    /// Claims `id` for `entry`. Claiming an id twice for one entry is a
    /// no-op; for another entry it is an error naming the first owner.
    pub fn claim(&mut self, id: &str, entry: usize) -> Result<(), Claimed> {
        let parsed = ModelId::parse(id).map_err(Claimed::Invalid)?;
        let slot = match parsed {
            ModelId::Exact(id) => self.exact.get(id).copied(),
            ModelId::Prefix(prefix) => self.prefixes.get(prefix).copied(),
            ModelId::Any => self.any,
        };
        match slot {
            Some(owner) if owner == entry => return Ok(()),
            Some(owner) => return Err(Claimed::By(owner)),
            None => {}
        }
        match parsed {
            ModelId::Exact(id) => {
                self.exact.insert(id.to_string(), entry);
                self.listed.push((id.to_string(), entry));
            }
            ModelId::Prefix(prefix) => {
                self.prefixes.insert(prefix.to_string(), entry);
            }
            ModelId::Any => self.any = Some(entry),
        }
        Ok(())
    }

    /// The entry serving `model`: exact, then the longest `prefix/*`, then `*`.
    pub fn lookup(&self, model: &str) -> Option<usize> {
        self.claim_of(model).map(|(entry, _)| entry)
    }

    /// The entry serving `model` and the configured id or pattern that
    /// claims it (the model label of the token counters: bounded by the
    /// configuration, whatever ids clients name).
    pub fn claim_of(&self, model: &str) -> Option<(usize, ModelId<'_>)> {
        if let Some((id, &entry)) = self.exact.get_key_value(model) {
            return Some((entry, ModelId::Exact(id)));
        }
        if !self.prefixes.is_empty() {
            // Longest first: each '/' from the right ends a candidate prefix;
            // a pattern needs something after its '/'.
            let found = model
                .rmatch_indices('/')
                .filter(|(i, _)| *i + 1 < model.len())
                .find_map(|(i, _)| self.prefixes.get_key_value(model.get(..i)?));
            if let Some((prefix, &entry)) = found {
                return Some((entry, ModelId::Prefix(prefix)));
            }
        }
        self.any.map(|entry| (entry, ModelId::Any))
    }

    /// Exact ids in configuration order, with their entry.
    pub fn listed(&self) -> &[(String, usize)] {
        &self.listed
    }

    /// The entry an exact id names (for `GET /v1/models/{id}`).
    pub fn exact(&self, id: &str) -> Option<usize> {
        self.exact.get(id).copied()
    }

    /// Exact ids, prefixes and `*`: the size `agentroute check` reports.
    pub fn len(&self) -> usize {
        self.exact.len() + self.prefixes.len() + usize::from(self.any.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an id could not be claimed.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// Another entry has it.
    By(usize),
    Invalid(String),
}

impl Claimed {
    pub(super) fn into_error(self, path: &str, id: &str, entries: &[super::Entry]) -> ConfigError {
        match self {
            Claimed::By(first) => {
                super::compile::conflict(path, &format!("model {id:?}"), first, entries)
            }
            Claimed::Invalid(why) => ConfigError::new(path, why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[(&str, usize)]) -> ModelTable {
        let mut t = ModelTable::default();
        for (id, entry) in ids {
            t.claim(id, *entry).unwrap();
        }
        t
    }

    #[test]
    fn exact_then_longest_prefix_then_any() {
        let t = table(&[
            ("gpt-4o", 0),
            ("openai/*", 1),
            ("openai/gpt-4o/*", 2),
            ("*", 3),
            ("openai/exact", 4),
        ]);
        let cases = [
            ("gpt-4o", Some(0)),
            ("openai/gpt-3.5", Some(1)),
            ("openai/gpt-4o/mini", Some(2)),
            ("openai/gpt-4o", Some(1)),
            ("openai/exact", Some(4)),
            ("openai/", Some(3)),
            ("openai", Some(3)),
            ("anthropic/claude", Some(3)),
            ("", Some(3)),
        ];
        for (model, want) in cases {
            assert_eq!(t.lookup(model), want, "{model}");
        }
        assert_eq!(
            t.listed(),
            &[("gpt-4o".to_string(), 0), ("openai/exact".to_string(), 4)]
        );
        let without_any = table(&[("openai/*", 1)]);
        assert_eq!(without_any.lookup("anthropic/claude"), None);
        assert_eq!(without_any.lookup("openai/x/y"), Some(1));
    }

    #[test]
    fn claims_conflict_and_bad_patterns_are_refused() {
        let mut t = table(&[("m", 0), ("p/*", 0), ("*", 1)]);
        assert_eq!(t.claim("m", 0), Ok(()));
        assert_eq!(t.claim("m", 2), Err(Claimed::By(0)));
        assert_eq!(t.claim("p/*", 2), Err(Claimed::By(0)));
        assert_eq!(t.claim("*", 2), Err(Claimed::By(1)));
        for bad in ["gpt-*", "/*", "a*/*", "*/*", "a/*/b"] {
            assert!(matches!(t.claim(bad, 3), Err(Claimed::Invalid(_))), "{bad}");
        }
    }
}
