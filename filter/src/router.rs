//! Request → entry lookup and the path rewrite that goes with it.
//!
//! Hosts are hash lookups; so are paths: a prefix matches by whole
//! segments, so the prefixes a path could match are the path cut at each
//! `/`, longest first, each one hash lookup. The cost of a lookup depends on
//! the path (at most as many lookups as the deepest configured prefix has
//! segments), not on the number of agents, and the table holds one small
//! record per prefix (a radix tree of 30,000 routes took ten times the
//! memory, kept in every worker's VM).

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use crate::config::{ConfigError, Layout};
use crate::fasthash::{hash_str, FastMap};

/// What replaces a matched prefix.
#[derive(Debug)]
enum Rewrite {
    /// `rewrite: null`: the path goes on unchanged.
    Keep,
    /// `/`, the layouts' and the common case, stored without a string.
    Root,
    To(Box<str>),
}

/// Where a prefix (explicit or from a layout) sends its requests. Kept small:
/// a config of 10,000 agents holds 30,000 of these.
#[derive(Debug)]
struct Target {
    entry: u32,
    rewrite: Rewrite,
}

/// What to do with the path of a matched request.
#[derive(Debug, PartialEq, Eq)]
pub enum PathAction {
    /// Forward the path unchanged (host matches, `rewrite: null`).
    Keep,
    /// Replace `:path`; the match's `prefix` is what was stripped
    /// (`x-forwarded-prefix`).
    Rewrite(String),
    /// The remainder holds a dot-segment: answer 400, never forward.
    RefuseDotSegments,
}

/// A request matched to an entry, with the parts of its path the filter
/// needs later (agent cards are rewritten from them).
#[derive(Debug, PartialEq, Eq)]
pub struct Match<'a> {
    pub entry: usize,
    pub path: PathAction,
    /// The external prefix the request matched: a slice of its path, empty
    /// for a host match.
    pub prefix: &'a str,
    /// The path below `prefix`, without the query.
    pub rest: &'a str,
    /// Where `prefix` lands upstream: `/` for layouts and hosts, the
    /// `rewrite` target, or the prefix itself when the path is kept.
    pub root: &'a str,
}

/// Host names, exact or `*.suffix` (one or more leading labels), matched
/// case-insensitively with the port ignored.
#[derive(Debug)]
pub struct HostTable<T> {
    exact: FastMap<String, T>,
    /// `*.example.com` stored as `example.com`.
    wildcard: FastMap<String, T>,
}

impl<T> Default for HostTable<T> {
    fn default() -> Self {
        HostTable {
            exact: FastMap::default(),
            wildcard: FastMap::default(),
        }
    }
}

impl<T> HostTable<T> {
    /// Adds a pattern (lowercase, exact or `*.suffix`); the first value for
    /// a pattern stays.
    pub fn insert(&mut self, pattern: &str, value: T) {
        let (table, key) = match pattern.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, pattern),
        };
        table.entry(key.to_string()).or_insert(value);
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }

    /// The value of the pattern `authority` matches: exact first, then the
    /// most specific wildcard.
    pub fn get(&self, authority: &str) -> Option<&T> {
        if self.is_empty() {
            return None;
        }
        let host = strip_port(authority).trim_end_matches('.');
        let host = host.to_ascii_lowercase();
        if let Some(value) = self.exact.get(&host) {
            return Some(value);
        }
        // `*.example.com` matches one or more leading labels: try the longest
        // suffix first so the most specific wildcard wins.
        host.match_indices('.')
            .find_map(|(i, _)| self.wildcard.get(host.get(i + 1..)?))
    }
}

#[derive(Debug)]
pub struct Router {
    hosts: HostTable<usize>,
    /// `gateway_hosts`: the hosts layouts, prefixes and the OpenAI surface
    /// answer on; `None` for all.
    gateway_hosts: Option<HostTable<()>>,
    /// Every prefix without its trailing `/` (the root `/` as ""), by its
    /// hash: a slot says where the prefix is read, not the prefix itself.
    paths: HashTable<Slot>,
    /// Explicit prefixes, which a [`Slot`] points to.
    explicit: Vec<Prefix>,
    /// Segments of the deepest prefix: no longer cut of a path can match.
    max_depth: usize,
}

/// An explicit prefix: stored, unlike layout paths.
#[derive(Debug)]
struct Prefix {
    /// Without its trailing `/`.
    path: Box<str>,
    target: Target,
}

/// Where the router reads the layout paths it does not store: each
/// entry's namespace, kind and name (the plan's entries). A layout path
/// kept as a string would cost every worker's VM three strings per agent.
pub trait LayoutNames {
    /// `(namespace, kind, name)` of `entry`.
    fn layout_names(&self, entry: usize) -> Option<(&str, &str, &str)>;
}

/// A slot of the path table, four bytes: a layout path as its entry and
/// layout (a lookup compares the path with the entry's names), or the
/// index of an explicit prefix.
#[derive(Debug, Clone, Copy)]
struct Slot(u32);

/// The low two bits of a slot: the layout, or `EXPLICIT`.
const EXPLICIT: u32 = 3;

/// What a slot names.
enum Key {
    Layout { entry: u32, layout: Layout },
    Explicit(usize),
}

impl Slot {
    /// `None` when the number does not fit beside the tag (a billion
    /// entries).
    fn new(index: usize, tag: u32) -> Option<Slot> {
        let index = u32::try_from(index).ok().filter(|&i| i < 1 << 30)?;
        Some(Slot(index << 2 | tag))
    }

    fn layout(entry: usize, layout: Layout) -> Option<Slot> {
        let tag = match layout {
            Layout::Kind => 0,
            Layout::Namespaced => 1,
            Layout::Shorthand => 2,
        };
        Slot::new(entry, tag)
    }

    fn key(self) -> Key {
        let index = self.0 >> 2;
        let layout = match self.0 & 3 {
            0 => Layout::Kind,
            1 => Layout::Namespaced,
            2 => Layout::Shorthand,
            _ => return Key::Explicit(index as usize),
        };
        Key::Layout {
            entry: index,
            layout,
        }
    }
}

/// Writes the layout path of an entry with these names into `path` (one
/// buffer for all entries: loading 10,000 agents writes 30,000 of them).
pub fn write_layout_path(
    path: &mut String,
    layout: Layout,
    (namespace, kind, name): (&str, &str, &str),
) {
    path.clear();
    let segments: &[&str] = match layout {
        Layout::Kind => &[namespace, kind, name],
        Layout::Namespaced => &[namespace, name],
        Layout::Shorthand => &[name],
    };
    for segment in segments {
        path.push('/');
        path.push_str(segment);
    }
}

/// Whether `path` is exactly that layout path, compared piece by piece
/// (no string is built per request).
fn is_layout_path(path: &str, layout: Layout, (namespace, kind, name): (&str, &str, &str)) -> bool {
    fn below<'p>(path: &'p str, segment: &str) -> Option<&'p str> {
        path.strip_prefix('/')?.strip_prefix(segment)
    }
    let rest = match layout {
        Layout::Kind => below(path, namespace).and_then(|r| below(r, kind)),
        Layout::Namespaced => below(path, namespace),
        Layout::Shorthand => Some(path),
    };
    rest.and_then(|r| below(r, name)) == Some("")
}

/// Segments of a prefix (without its trailing `/`).
fn depth(path: &str) -> usize {
    path.bytes().filter(|&b| b == b'/').count()
}

/// The path table's lookups and key reads, over the explicit prefixes and
/// the entries' names.
struct Paths<'a, N: ?Sized> {
    explicit: &'a [Prefix],
    names: &'a N,
}

impl<N: LayoutNames + ?Sized> Paths<'_, N> {
    fn is(&self, slot: Slot, path: &str) -> bool {
        match slot.key() {
            Key::Explicit(i) => self.explicit.get(i).is_some_and(|p| &*p.path == path),
            Key::Layout { entry, layout } => self
                .names
                .layout_names(entry as usize)
                .is_some_and(|names| is_layout_path(path, layout, names)),
        }
    }

    /// The slot's key, to hash it again when the table grows.
    fn hash(&self, slot: Slot) -> u64 {
        match slot.key() {
            Key::Explicit(i) => hash_str(self.explicit.get(i).map_or("", |p| &p.path)),
            Key::Layout { entry, layout } => {
                let mut path = String::new();
                if let Some(names) = self.names.layout_names(entry as usize) {
                    write_layout_path(&mut path, layout, names);
                }
                hash_str(&path)
            }
        }
    }

    fn find<'t>(&self, table: &'t HashTable<Slot>, path: &str) -> Option<&'t Slot> {
        table.find(hash_str(path), |&slot| self.is(slot, path))
    }
}

/// Builds a [`Router`] over the entries `names` reads.
pub struct RouterBuilder<'n, N: ?Sized> {
    names: &'n N,
    hosts: HostTable<usize>,
    gateway_hosts: Option<HostTable<()>>,
    /// Filled as prefixes come (the first claim of a prefix wins): no list
    /// of claims kept beside the table, no string copied twice.
    paths: HashTable<Slot>,
    explicit: Vec<Prefix>,
    max_depth: usize,
    too_many: bool,
    /// Where layout paths are written to be hashed.
    scratch: String,
}

impl<'n, N: LayoutNames + ?Sized> RouterBuilder<'n, N> {
    /// `paths`: how many prefixes are coming (room made at once).
    pub fn new(names: &'n N, paths: usize) -> Self {
        RouterBuilder {
            names,
            hosts: HostTable::default(),
            gateway_hosts: None,
            paths: HashTable::with_capacity(paths),
            explicit: Vec::new(),
            max_depth: 0,
            too_many: false,
            scratch: String::new(),
        }
    }

    /// Adds a host pattern (lowercase, exact or `*.suffix`); the first
    /// claim of a pattern wins.
    pub fn host(&mut self, pattern: &str, entry: usize) {
        self.hosts.insert(pattern, entry);
    }

    /// Confines paths and the OpenAI surface to these host patterns
    /// (lowercase, exact or `*.suffix`).
    pub fn gateway_hosts(&mut self, patterns: &[String]) {
        let mut table = HostTable::default();
        for pattern in patterns {
            table.insert(pattern, ());
        }
        self.gateway_hosts = Some(table);
    }

    /// Adds a path prefix rewritten to `rewrite` (`None`: kept); the first
    /// claim of a prefix wins.
    pub fn prefix(&mut self, prefix: &str, rewrite: Option<&str>, entry: usize) {
        let base = prefix.trim_end_matches('/');
        let rewrite = match rewrite {
            None => Rewrite::Keep,
            Some("/") => Rewrite::Root,
            Some(to) => Rewrite::To(to.into()),
        };
        let (Ok(entry), Some(slot)) = (
            u32::try_from(entry),
            Slot::new(self.explicit.len(), EXPLICIT),
        ) else {
            self.too_many = true;
            return;
        };
        if self.insert(base, slot) {
            self.explicit.push(Prefix {
                path: base.into(),
                target: Target { entry, rewrite },
            });
        }
    }

    /// Adds an entry's layout path (rewritten to `/`); `path` is that path
    /// as the caller wrote it for its own checks (written again here if it
    /// is not). No lookup first: the compile step never offers a layout
    /// path another claim has (ids are unique, shared names get no
    /// shorthand, explicit prefixes are checked before), and were one
    /// offered twice the earlier slot would still answer (equal paths share
    /// a probe sequence and the table never deletes). At 100,000 agents the
    /// lookup was a fifth of the load.
    pub fn layout(&mut self, layout: Layout, entry: usize, path: &str) {
        let Some(names) = self.names.layout_names(entry) else {
            return;
        };
        let Some(slot) = Slot::layout(entry, layout) else {
            self.too_many = true;
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let path = if is_layout_path(path, layout, names) {
            path
        } else {
            write_layout_path(&mut scratch, layout, names);
            scratch.as_str()
        };
        let keys = Paths {
            explicit: &self.explicit,
            names: self.names,
        };
        self.paths
            .insert_unique(hash_str(path), slot, |&s| keys.hash(s));
        self.max_depth = self.max_depth.max(depth(path));
        self.scratch = scratch;
    }

    /// Puts `slot` under `path` unless the table has the path: whether it
    /// did. Explicit slots must be pushed by the caller right after.
    fn insert(&mut self, path: &str, slot: Slot) -> bool {
        let keys = Paths {
            explicit: &self.explicit,
            names: self.names,
        };
        // One probe finds the path or its place. The explicit prefix a new
        // explicit slot names is not pushed yet: growing the table hashes
        // the slots it already has only.
        let hash = hash_str(path);
        let Entry::Vacant(place) = self
            .paths
            .entry(hash, |&s| keys.is(s, path), |&s| keys.hash(s))
        else {
            return false;
        };
        place.insert(slot);
        self.max_depth = self.max_depth.max(depth(path));
        true
    }

    pub fn build(self) -> Result<Router, ConfigError> {
        if self.too_many {
            return Err(ConfigError::new("agents", "too many agents"));
        }
        Ok(Router {
            hosts: self.hosts,
            gateway_hosts: self.gateway_hosts,
            paths: self.paths,
            explicit: self.explicit,
            max_depth: self.max_depth,
        })
    }
}

impl Router {
    /// Finds the entry for a request: hosts first, then the longest prefix.
    /// `names` are the entries the router was built over.
    pub fn route<'a, N: LayoutNames + ?Sized>(
        &'a self,
        authority: &str,
        path: &'a str,
        names: &N,
    ) -> Option<Match<'a>> {
        let (path_only, query) = match path.find('?') {
            Some(i) => path.split_at(i),
            None => (path, ""),
        };
        if let Some(&entry) = self.hosts.get(authority) {
            // For a host match the remainder is the whole path: dot-segments
            // are refused there just the same.
            let action = if has_dot_segment(path_only) {
                PathAction::RefuseDotSegments
            } else {
                PathAction::Keep
            };
            return Some(Match {
                entry,
                path: action,
                prefix: "",
                rest: path_only,
                root: "/",
            });
        }
        if !path_only.starts_with('/') || !self.serves(authority) {
            return None;
        }
        let (prefix_len, entry, to) = self.longest_prefix(path_only, names)?;
        let (prefix, rest) = path_only.split_at_checked(prefix_len)?;
        let root = match to {
            Rewrite::Keep => prefix,
            Rewrite::Root => "/",
            Rewrite::To(to) => to,
        };
        Some(Match {
            entry: entry as usize,
            path: rewrite(to, rest, query),
            prefix,
            rest,
            root,
        })
    }

    /// The longest configured prefix `path` lies below by whole segments:
    /// the path itself, then the path cut before each `/`, longest first
    /// (never more segments than the deepest prefix has), down to the root.
    fn longest_prefix<N: LayoutNames + ?Sized>(
        &self,
        path: &str,
        names: &N,
    ) -> Option<(usize, u32, &Rewrite)> {
        let keys = Paths {
            explicit: &self.explicit,
            names,
        };
        let mut end = path
            .match_indices('/')
            .nth(self.max_depth)
            .map_or(path.len(), |(i, _)| i);
        loop {
            let cut = path.get(..end)?;
            if let Some(slot) = keys.find(&self.paths, cut) {
                return match slot.key() {
                    // Layout paths land on `/`.
                    Key::Layout { entry, .. } => Some((end, entry, &Rewrite::Root)),
                    Key::Explicit(i) => {
                        let target = &self.explicit.get(i)?.target;
                        Some((end, target.entry, &target.rewrite))
                    }
                };
            }
            if end == 0 {
                return None;
            }
            // The next shorter cut: before the last `/` of this one (the
            // leading `/` gives the root's empty cut).
            end = cut.rfind('/')?;
        }
    }

    /// Hosts plus path prefixes (explicit and from layouts) that lead to an
    /// entry: the size `agentroute check` reports.
    pub fn route_count(&self) -> usize {
        self.hosts.len() + self.paths.len()
    }

    /// Whether layouts, prefixes and the OpenAI surface answer on this host
    /// (`gateway_hosts`; every host when it is not set).
    pub fn serves(&self, authority: &str) -> bool {
        match &self.gateway_hosts {
            Some(hosts) => hosts.get(authority).is_some(),
            None => true,
        }
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // IPv6 literal: keep up to the closing bracket.
        return match authority.find(']') {
            Some(end) => authority.get(..=end).unwrap_or(authority),
            None => authority,
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn rewrite(to: &Rewrite, rest: &str, query: &str) -> PathAction {
    if has_dot_segment(rest) {
        return PathAction::RefuseDotSegments;
    }
    let replacement = match to {
        Rewrite::Keep => return PathAction::Keep,
        Rewrite::Root => "/",
        Rewrite::To(to) => to,
    };
    // Collapse leading slashes so the upstream never sees `//host`-like paths.
    let rest = match rest.trim_start_matches('/') {
        r if r.len() == rest.len() => rest,
        r => &rest[rest.len() - r.len() - 1..],
    };
    let mut path = String::with_capacity(replacement.len() + rest.len() + query.len());
    if replacement == "/" {
        path.push_str(if rest.is_empty() { "/" } else { rest });
    } else {
        path.push_str(replacement);
        path.push_str(rest);
    }
    path.push_str(query);
    PathAction::Rewrite(path)
}

/// True when a path holds a `.` or `..` segment in any spelling a backend
/// might decode: `%2e`, encoded slashes (`%2f`, `%5c`), backslashes, and
/// `;`-parameters (`..;x`), all of which servers are known to normalise.
pub fn has_dot_segment(path: &str) -> bool {
    let bytes = path.as_bytes();
    if !bytes.iter().any(|&b| b == b'.' || b == b'%') {
        return false;
    }
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).map(|h| h.to_ascii_lowercase());
            let mapped = match hex.as_deref() {
                Some(b"2e") => Some(b'.'),
                Some(b"2f") => Some(b'/'),
                Some(b"5c") => Some(b'\\'),
                _ => None,
            };
            if let Some(m) = mapped {
                decoded.push(m);
                i += 3;
                continue;
            }
        }
        decoded.push(b);
        i += 1;
    }
    decoded
        .split(|&b| b == b'/' || b == b'\\')
        .map(|seg| seg.split(|&b| b == b';').next().unwrap_or(seg))
        .any(|seg| seg == b"." || seg == b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No entry names: these tables hold explicit prefixes only.
    struct NoNames;

    impl LayoutNames for NoNames {
        fn layout_names(&self, _: usize) -> Option<(&str, &str, &str)> {
            None
        }
    }

    /// Entries as `(namespace, kind, name)`.
    struct Names(Vec<(&'static str, &'static str, &'static str)>);

    impl LayoutNames for Names {
        fn layout_names(&self, entry: usize) -> Option<(&str, &str, &str)> {
            self.0.get(entry).copied()
        }
    }

    #[test]
    fn layout_paths_are_read_from_the_entries() {
        let names = Names(vec![("prod", "agent", "a"), ("prod", "mcpserver", "tools")]);
        let mut b = RouterBuilder::new(&names, 8);
        b.prefix("/prod/agent/a/deep", Some("/d"), 1);
        for (entry, layout) in [
            (0, Layout::Kind),
            (0, Layout::Namespaced),
            (1, Layout::Kind),
        ] {
            let mut path = String::new();
            write_layout_path(&mut path, layout, names.0[entry]);
            b.layout(layout, entry, &path);
        }
        // A path that is not the layout's is written again, not trusted.
        b.layout(Layout::Shorthand, 1, "/wrong");
        let r = b.build().unwrap();
        let entry = |p| r.route("gw", p, &names).map(|m| m.entry);
        assert_eq!(entry("/prod/agent/a/x"), Some(0));
        assert_eq!(entry("/prod/a"), Some(0));
        assert_eq!(entry("/prod/mcpserver/tools/mcp"), Some(1));
        assert_eq!(entry("/tools"), Some(1));
        assert_eq!(entry("/wrong"), None);
        assert_eq!(entry("/prod/agent/a/deep/x"), Some(1), "longest first");
        for miss in [
            "/prod/agent/ab",
            "/prod/agent",
            "/prod/tools",
            "/prod//a",
            "/prodx/a",
            "/a",
        ] {
            assert_eq!(entry(miss), None, "{miss}");
        }
        // Without the names it was built over, no layout path matches.
        assert_eq!(r.route("gw", "/prod/a", &NoNames).map(|m| m.entry), None);
    }

    fn router(prefixes: &[(&str, Option<&str>, usize)], hosts: &[(&str, usize)]) -> Router {
        let mut b = RouterBuilder::new(&NoNames, prefixes.len());
        for (p, r, e) in prefixes {
            b.prefix(p, *r, *e);
        }
        for (h, e) in hosts {
            b.host(h, *e);
        }
        b.build().unwrap()
    }

    fn rewritten(m: Option<Match>) -> Option<(usize, String, String)> {
        let m = m?;
        match m.path {
            PathAction::Rewrite(path) => Some((m.entry, path, m.prefix.to_string())),
            other => panic!("expected a rewrite, got {other:?}"),
        }
    }

    #[test]
    fn strips_prefix_and_keeps_query() {
        let r = router(&[("/prod/agent/a", Some("/"), 0)], &[]);
        let cases = [
            ("/prod/agent/a", "/"),
            ("/prod/agent/a/", "/"),
            ("/prod/agent/a/x/y", "/x/y"),
            ("/prod/agent/a?q=1", "/?q=1"),
            ("/prod/agent/a/x?q=1&r=/..", "/x?q=1&r=/.."),
            ("/prod/agent/a//x", "/x"),
            ("/prod/agent/a///x//y", "/x//y"),
        ];
        for (req, up) in cases {
            let (entry, path, prefix) = rewritten(r.route("gw", req, &NoNames)).unwrap();
            assert_eq!(
                (entry, path.as_str(), prefix.as_str()),
                (0, up, "/prod/agent/a"),
                "{req}"
            );
        }
    }

    #[test]
    fn matches_whole_segments_only() {
        let r = router(&[("/prod/agent/a1", Some("/"), 0)], &[]);
        assert!(r.route("gw", "/prod/agent/a1x", &NoNames).is_none());
        assert!(r.route("gw", "/prod/agent/a", &NoNames).is_none());
        assert!(r.route("gw", "/prod/agent", &NoNames).is_none());
        assert!(
            r.route("gw", "/Prod/agent/a1", &NoNames).is_none(),
            "case-sensitive"
        );
        assert!(r.route("gw", "/prod/agent/a1/", &NoNames).is_some());
    }

    #[test]
    fn longest_prefix_wins_and_backtracks() {
        let r = router(
            &[
                ("/a", Some("/"), 0),
                ("/a/b", Some("/"), 1),
                ("/a/b/c", Some("/"), 2),
            ],
            &[],
        );
        let entry = |p| r.route("gw", p, &NoNames).map(|m| m.entry);
        assert_eq!(entry("/a/b/c/d"), Some(2));
        assert_eq!(entry("/a/b/cd"), Some(1));
        assert_eq!(entry("/a/bc"), Some(0));
        assert_eq!(entry("/a/b"), Some(1));
        assert_eq!(entry("/a"), Some(0));
        assert_eq!(entry("/ab"), None);
    }

    #[test]
    fn explicit_rewrite_targets() {
        let r = router(
            &[
                ("/cs", Some("/api"), 0),
                ("/keep", None, 1),
                ("/", Some("/root"), 2),
            ],
            &[],
        );
        assert_eq!(
            rewritten(r.route("gw", "/cs/x?y", &NoNames)).unwrap().1,
            "/api/x?y"
        );
        assert_eq!(rewritten(r.route("gw", "/cs", &NoNames)).unwrap().1, "/api");
        let keep = r.route("gw", "/keep/x", &NoNames).unwrap();
        assert_eq!((keep.entry, keep.path), (1, PathAction::Keep));
        assert_eq!(
            rewritten(r.route("gw", "/other", &NoNames)).unwrap().1,
            "/root/other"
        );
        assert_eq!(rewritten(r.route("gw", "/", &NoNames)).unwrap().1, "/root/");
    }

    #[test]
    fn refuses_dot_segments_in_the_remainder() {
        let r = router(&[("/a", Some("/"), 0), ("/k", None, 1)], &[]);
        for p in [
            "/a/..",
            "/a/../x",
            "/a/./x",
            "/a/%2e%2e/x",
            "/a/%2E%2e",
            "/a/.%2e/x",
            "/a/%2e",
            "/a/x/..%2fy",
            "/a/x\\..\\y",
            "/a/..;jsessionid=1/x",
            "/a/x%5c..",
            "/k/../admin",
        ] {
            let m = r.route("gw", p, &NoNames).unwrap();
            assert_eq!(m.path, PathAction::RefuseDotSegments, "{p}");
        }
        for p in [
            "/a/...",
            "/a/..x",
            "/a/x.y",
            "/a/.well-known/agent.json",
            "/a/x?p=/../",
        ] {
            let m = r.route("gw", p, &NoNames).unwrap();
            assert_ne!(m.path, PathAction::RefuseDotSegments, "{p}");
        }
    }

    #[test]
    fn hosts_exact_wildcard_port_and_case() {
        let r = router(
            &[("/p", Some("/"), 9)],
            &[
                ("a.example.com", 0),
                ("*.example.com", 1),
                ("*.b.example.com", 2),
            ],
        );
        let entry = |h| r.route(h, "/p/x", &NoNames).map(|m| m.entry);
        assert_eq!(entry("a.example.com"), Some(0));
        assert_eq!(entry("A.Example.COM:8080"), Some(0));
        assert_eq!(entry("a.example.com."), Some(0));
        assert_eq!(entry("z.example.com"), Some(1));
        assert_eq!(entry("x.y.example.com"), Some(1));
        assert_eq!(entry("x.b.example.com"), Some(2));
        assert_eq!(entry("example.com"), Some(9), "wildcard needs a label");
        assert_eq!(entry("[::1]:80"), Some(9));
        let m = r.route("a.example.com", "/prod/agent/x", &NoNames).unwrap();
        assert_eq!(m.path, PathAction::Keep, "host matches keep the path");
        assert_eq!((m.prefix, m.rest, m.root), ("", "/prod/agent/x", "/"));
    }

    #[test]
    fn host_matches_refuse_dot_segments_too() {
        let r = router(&[], &[("chat.example.com", 0)]);
        for p in ["/x/%2e%2e/../admin", "/..", "/a/./b", "/a/%2E%2e"] {
            let m = r.route("chat.example.com", p, &NoNames).unwrap();
            assert_eq!(m.path, PathAction::RefuseDotSegments, "{p}");
        }
        let m = r.route("chat.example.com", "/ok?x=/../", &NoNames).unwrap();
        assert_eq!(m.path, PathAction::Keep, "a query is not a path");
    }

    #[test]
    fn matches_say_where_the_prefix_lands() {
        let r = router(
            &[
                ("/tick", Some("/tock"), 0),
                ("/raw", None, 1),
                ("/p/agent/a", Some("/"), 2),
            ],
            &[],
        );
        let m = r
            .route("gw", "/tick/.well-known/agent.json?q", &NoNames)
            .unwrap();
        assert_eq!(
            (m.prefix, m.rest, m.root),
            ("/tick", "/.well-known/agent.json", "/tock")
        );
        let m = r.route("gw", "/raw/x", &NoNames).unwrap();
        assert_eq!((m.prefix, m.rest, m.root), ("/raw", "/x", "/raw"));
        let m = r.route("gw", "/p/agent/a", &NoNames).unwrap();
        assert_eq!((m.prefix, m.rest, m.root), ("/p/agent/a", "", "/"));
    }
}
