//! Which entry serves an OpenAI model id: exact ids, `prefix/*` patterns and
//! at most one `*` (a proxy such as LiteLLM serving many models). Exact ids
//! win, then the longest matching prefix, then `*`.

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::fasthash::{hash_str, FastMap};

use super::ConfigError;

/// Where the model table reads the exact ids it does not store: an entry's
/// own id (`namespace/name`) or one of its `models` (the plan's entries).
/// Kept as strings, the implicit ids of 10,000 agents would cost every
/// worker's VM two more strings per agent.
pub trait ModelIds {
    /// The id `which` names: [`OWN_ID`] or an index in the entry's `models`.
    fn model_id(&self, entry: usize, which: u32) -> Option<&str>;
}

/// `which` of an entry's own id.
pub const OWN_ID: u32 = u32::MAX;

/// Where an exact id is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    entry: u32,
    which: u32,
}

impl Exact {
    fn id<N: ModelIds + ?Sized>(self, ids: &N) -> &str {
        ids.model_id(self.entry as usize, self.which)
            .unwrap_or_default()
    }
}

/// Model ids → entry index, compiled once per plan.
#[derive(Debug, Default)]
pub struct ModelTable {
    /// Exact ids by their hash; the id is read from the entries.
    exact: HashTable<Exact>,
    /// `prefix/*` stored as `prefix`.
    prefixes: FastMap<String, usize>,
    any: Option<usize>,
    /// Exact ids in configuration order, for `GET /v1/models` (patterns are
    /// not model ids a client could name).
    listed: Vec<Exact>,
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
    /// Room for `exact` ids at once: a table growing by doubling holds its
    /// old and new slots at the same time.
    pub fn with_capacity(exact: usize) -> Self {
        ModelTable {
            exact: HashTable::with_capacity(exact),
            listed: Vec::with_capacity(exact),
            ..ModelTable::default()
        }
    }

    /// Claims for `entry` the id `which` names in `ids`. Claiming an id
    /// twice for one entry is a no-op; for another entry it is an error
    /// naming the first owner.
    pub fn claim<N: ModelIds + ?Sized>(
        &mut self,
        ids: &N,
        entry: usize,
        which: u32,
    ) -> Result<(), Claimed> {
        let id = ids.model_id(entry, which).unwrap_or_default();
        let owner = match ModelId::parse(id).map_err(Claimed::Invalid)? {
            ModelId::Exact(id) => {
                let exact = Exact {
                    entry: u32::try_from(entry).map_err(|_| Claimed::TooMany)?,
                    which,
                };
                // One probe finds the id or its place.
                let found =
                    self.exact
                        .entry(hash_str(id), |e| e.id(ids) == id, |e| hash_str(e.id(ids)));
                match found {
                    Entry::Occupied(owner) => owner.get().entry as usize,
                    Entry::Vacant(place) => {
                        place.insert(exact);
                        self.listed.push(exact);
                        return Ok(());
                    }
                }
            }
            ModelId::Prefix(prefix) => match self.prefixes.get(prefix) {
                Some(&owner) => owner,
                None => {
                    self.prefixes.insert(prefix.to_string(), entry);
                    return Ok(());
                }
            },
            ModelId::Any => match self.any {
                Some(owner) => owner,
                None => {
                    self.any = Some(entry);
                    return Ok(());
                }
            },
        };
        if owner == entry {
            Ok(())
        } else {
            Err(Claimed::By(owner))
        }
    }

    fn find<N: ModelIds + ?Sized>(&self, ids: &N, id: &str) -> Option<Exact> {
        self.exact.find(hash_str(id), |e| e.id(ids) == id).copied()
    }

    /// The entry serving `model`: exact, then the longest `prefix/*`, then `*`.
    pub fn lookup<N: ModelIds + ?Sized>(&self, ids: &N, model: &str) -> Option<usize> {
        self.claim_of(ids, model).map(|(entry, _)| entry)
    }

    /// The entry serving `model` and the configured id or pattern that
    /// claims it (the model label of the token counters: bounded by the
    /// configuration, whatever ids clients name).
    pub fn claim_of<'a, N: ModelIds + ?Sized>(
        &'a self,
        ids: &'a N,
        model: &str,
    ) -> Option<(usize, ModelId<'a>)> {
        if let Some(exact) = self.find(ids, model) {
            return Some((exact.entry as usize, ModelId::Exact(exact.id(ids))));
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
    pub fn listed<'a, N: ModelIds + ?Sized>(
        &'a self,
        ids: &'a N,
    ) -> impl Iterator<Item = (&'a str, usize)> + 'a {
        self.listed
            .iter()
            .map(move |e| (e.id(ids), e.entry as usize))
    }

    /// The entry an exact id names (for `GET /v1/models/{id}`).
    pub fn exact<N: ModelIds + ?Sized>(&self, ids: &N, id: &str) -> Option<usize> {
        self.find(ids, id).map(|e| e.entry as usize)
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
    /// More entries than the table can name.
    TooMany,
}

impl Claimed {
    pub(super) fn into_error(self, path: &str, id: &str, entries: &[super::Entry]) -> ConfigError {
        match self {
            Claimed::By(first) => {
                super::checks::conflict(path, &format!("model {id:?}"), first, entries)
            }
            Claimed::Invalid(why) => ConfigError::new(path, why),
            Claimed::TooMany => ConfigError::new("agents", "too many agents"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids claimed one per claim: `which` is the claim's place in the list.
    struct Ids(Vec<&'static str>);

    impl ModelIds for Ids {
        fn model_id(&self, _entry: usize, which: u32) -> Option<&str> {
            self.0.get(which as usize).copied()
        }
    }

    fn table(claims: &[(&'static str, usize)]) -> (ModelTable, Ids) {
        let ids = Ids(claims.iter().map(|(id, _)| *id).collect());
        let mut t = ModelTable::default();
        for (which, (_, entry)) in claims.iter().enumerate() {
            t.claim(&ids, *entry, which as u32).unwrap();
        }
        (t, ids)
    }

    #[test]
    fn exact_then_longest_prefix_then_any() {
        let (t, ids) = table(&[
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
            ("openai/exac", Some(1)),
            ("openai/exactly", Some(1)),
            ("gpt-4o-mini", Some(3)),
            ("openai/", Some(3)),
            ("openai", Some(3)),
            ("anthropic/claude", Some(3)),
            ("", Some(3)),
        ];
        for (model, want) in cases {
            assert_eq!(t.lookup(&ids, model), want, "{model}");
        }
        assert_eq!(
            t.listed(&ids).collect::<Vec<_>>(),
            [("gpt-4o", 0), ("openai/exact", 4)]
        );
        assert_eq!(t.exact(&ids, "openai/exact"), Some(4));
        assert_eq!(t.exact(&ids, "openai/x"), None);
        let (without_any, ids) = table(&[("openai/*", 1)]);
        assert_eq!(without_any.lookup(&ids, "anthropic/claude"), None);
        assert_eq!(without_any.lookup(&ids, "openai/x/y"), Some(1));
    }

    #[test]
    fn claims_conflict_and_bad_patterns_are_refused() {
        let bad = ["gpt-*", "/*", "a*/*", "*/*", "a/*/b"];
        let mut claims = vec![("m", 0), ("p/*", 0), ("*", 1)];
        claims.extend(bad.iter().map(|b| (*b, 3)));
        let ids = Ids(claims.iter().map(|(id, _)| *id).collect());
        let mut t = ModelTable::default();
        for (which, (_, entry)) in claims.iter().enumerate().take(3) {
            t.claim(&ids, *entry, which as u32).unwrap();
        }
        assert_eq!(t.claim(&ids, 0, 0), Ok(()));
        assert_eq!(t.claim(&ids, 2, 0), Err(Claimed::By(0)));
        assert_eq!(t.claim(&ids, 2, 1), Err(Claimed::By(0)));
        assert_eq!(t.claim(&ids, 2, 2), Err(Claimed::By(1)));
        for (which, (id, _)) in claims.iter().enumerate().skip(3) {
            let got = t.claim(&ids, 3, which as u32);
            assert!(matches!(got, Err(Claimed::Invalid(_))), "{id}");
        }
    }

    #[test]
    fn many_ids_are_found_by_what_the_entries_hold() {
        let names: Vec<&'static str> = (0..5_000)
            .map(|i| &*Box::leak(format!("ns-{}/agent-{i}", i % 10).into_boxed_str()))
            .collect();
        let ids = Ids(names.clone());
        let mut t = ModelTable::default();
        for which in 0..names.len() {
            t.claim(&ids, which, which as u32).unwrap();
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(t.lookup(&ids, name), Some(i));
        }
        assert_eq!(t.lookup(&ids, "ns-0/agent-1"), None);
        assert_eq!(t.listed(&ids).count(), 5_000);
    }
}
