//! Helpers shared by the fuzz targets.
//!
//! Streaming code (usage meters, SSE lines, A2A streams) must give the same
//! result however the body is cut into chunks. The cuts are derived from the
//! input itself, so that a crash reproduces from the saved input alone.

use agentroute::llm::stream::{Events, Stream};

/// The ways a target cuts `data`: one byte at a time, and pieces of
/// pseudo-random sizes (empty pieces among them, as Envoy may deliver an
/// empty chunk) drawn from a generator seeded by a hash of the input.
pub fn chunkings(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    vec![bytes, random_cuts(data, fnv1a(data))]
}

/// Pieces of 0 to 16 bytes, with one piece in eight up to 4 KiB long.
pub fn random_cuts(data: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = SplitMix(seed);
    let mut pieces = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let roll = rng.next();
        let size = if roll.is_multiple_of(8) {
            (roll >> 8) as usize % 4096
        } else {
            (roll >> 8) as usize % 17
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How much a translated stream may hold while a target drives it.
pub enum Room {
    /// All it asks for: it holds at most `bound` between chunks, and
    /// nothing once ended.
    Unbounded { bound: usize },
    /// Little room (its share of the VM's budget): it may end early, with
    /// an error event, but never holds more than this.
    Within(usize),
}

/// Feeds `chunks` through a translated stream (A2A, provider), then
/// finishes it, checking what it holds against `room`: all it wrote.
pub fn translate_stream<T: Events>(mut stream: Stream<T>, chunks: &[&[u8]], room: Room) -> Vec<u8> {
    let (give, bound) = match room {
        Room::Unbounded { bound } => (usize::MAX, bound),
        Room::Within(room) => (room, room),
    };
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend(stream.feed_within(chunk, give));
        assert!(stream.held() <= bound, "held {} > {bound}", stream.held());
    }
    out.extend(stream.finish());
    if let Room::Unbounded { .. } = room {
        assert_eq!(stream.held(), 0, "an ended stream holds nothing");
    }
    out
}

/// Every way [`chunkings`] cuts `data` translates as the whole of it in
/// one chunk does: that output.
pub fn alike_however_cut(data: &[u8], translate: impl Fn(&[&[u8]]) -> Vec<u8>) -> Vec<u8> {
    let whole = translate(&[data]);
    for chunks in chunkings(data) {
        let out = translate(&chunks);
        assert!(
            out == whole,
            "{} chunks:\n{}\nvs one chunk:\n{}",
            chunks.len(),
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&whole)
        );
    }
    whole
}

/// SplitMix64: small, fast, and good enough to pick chunk sizes.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Splits an input at its first newline: two fields of a text input (an
/// authority and a path, say).
pub fn two_lines(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once('\n').unwrap_or(("", text)))
}

/// A member name, and whether it was written with escapes.
pub struct Key {
    pub text: String,
    pub escaped: bool,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            // serde_json lends the input's bytes when a name has no escape.
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key, E> {
                Ok(Key {
                    text: s.to_string(),
                    escaped: false,
                })
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key {
                    text: s.to_string(),
                    escaped: true,
                })
            }
        }
        d.deserialize_str(V)
    }
}

pub type Members = Vec<(Key, String)>;

/// The members of a top-level object in document order, duplicates kept,
/// each value as its raw text.
pub fn members(data: &[u8]) -> Option<Members> {
    struct All(Members);
    impl<'de> serde::Deserialize<'de> for All {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = All;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<All, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) =
                        map.next_entry::<Key, &serde_json::value::RawValue>()?
                    {
                        out.push((k, v.get().to_string()));
                    }
                    Ok(All(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<All>(data).ok().map(|a| a.0)
}

/// A configuration with every kind of route: the three layouts, explicit
/// prefixes rewritten to `/`, to a path and kept (`rewrite: null`), nested
/// prefixes, exact and wildcard hosts, models, A2A and rate-limited
/// entries, a canary split and an entry's own CORS.
pub const CONFIG: &str = r#"{
  "agents": [
    { "name": "coordinator", "namespace": "prod", "backend": "coordinator", "timeout": "300s",
      "models": ["coordinator-v2"], "hosts": ["coordinator.example.com"],
      "prefixes": [ { "prefix": "/customer-service", "rewrite": "/" },
                    { "prefix": "/customer-service/v2", "rewrite": "/api/v2" },
                    { "prefix": "/tick", "rewrite": "/tock" },
                    { "prefix": "/raw", "rewrite": null } ] },
    { "name": "researcher", "namespace": "prod", "backend": "researcher",
      "hosts": ["*.research.example.com", "*.example.com"],
      "canary": { "backend": "researcher-v2", "weight": 30, "by": "header:x-user", "header": "x-canary" },
      "cors": { "allow_origins": ["https://research.example.com"], "allow_credentials": true } },
    { "name": "llm", "namespace": "models", "kind": "modelapi", "backend": "llm",
      "models": ["gpt-demo"], "hosts": ["llm.internal"],
      "rate_limit": { "tokens_per_minute": 1000, "per": "header:x-api-key" } },
    { "name": "tools", "namespace": "prod", "kind": "mcp", "backend": "tools", "timeout": "5s",
      "rate_limit": { "requests_per_second": 1, "burst": 3 } },
    { "name": "echo", "namespace": "prod", "backend": "echo", "protocol": "a2a",
      "a2a": { "version": "0.3", "path": "/rpc" }, "models": ["echo-model"] },
    { "name": "echo", "namespace": "staging", "backend": "echo-staging", "timeout": "0s",
      "prefixes": [ { "prefix": "/staging/echo/deep/er" } ] }
  ]
}"#;
