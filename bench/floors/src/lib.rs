//! Floors for `make bench`: one minimal Proxy-Wasm HTTP filter whose plugin
//! configuration (a plain string) names the host calls it makes on request
//! headers, so the bench shows what each way of dispatching costs at the
//! least, next to agentroute:
//!
//! - `noop`: nothing;
//! - `set1`: sets `x-agent-backend` (one `proxy_replace_header_map_value`);
//! - `readmap`: reads the whole request header map, sets nothing;
//! - `read2set7`: reads `:path` and `:authority` (one call each), sets the 7
//!   headers agentroute sets (one call each);
//! - `mapmap`: reads the whole map and replaces it with the same pairs, `:path`
//!   rewritten, plus the 6 headers agentroute adds (what agentroute does);
//! - `read2set1`: reads `:path` and `:authority`, sets `x-agent-backend` and
//!   `:path` (the cheapest useful dispatch);
//! - `mapset7`: reads the whole map, sets the 7 headers one call each (what
//!   agentroute does by default: the map shows client copies to remove).
//!
//! One mode is no floor but a fault on demand, for the fail-mode tests
//! (tests/tests/fail_modes.rs): what clients see when a VM traps is Envoy's
//! doing, the same whichever filter trapped, and agentroute itself must
//! never trap:
//!
//! - `trap`: a request carrying the header `x-floors-trap` traps the VM
//!   (`unreachable`) in `on_http_request_headers`; any other request gets
//!   `x-agent-backend: upstream`, so whether the filter ran shows in where
//!   the request goes.
//!
//! Host calls go through the raw ABI; nothing here panics (a panic traps the
//! VM) except `trap` on purpose. An unknown mode is refused in `on_configure`.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { mode: Mode::Noop }) });
    }}

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Noop,
        Set1,
        ReadMap,
        Read2Set7,
        MapMap,
        Read2Set1,
        MapSet7,
        Trap,
    }

    impl Mode {
        fn parse(text: &str) -> Option<Mode> {
            // Plain string; a JSON string (quoted) reads the same.
            Some(match text.trim().trim_matches('"') {
                "" | "noop" => Mode::Noop,
                "set1" => Mode::Set1,
                "readmap" => Mode::ReadMap,
                "read2set7" => Mode::Read2Set7,
                "mapmap" => Mode::MapMap,
                "read2set1" => Mode::Read2Set1,
                "mapset7" => Mode::MapSet7,
                "trap" => Mode::Trap,
                _ => return None,
            })
        }
    }

    struct Root {
        mode: Mode,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            {
                Ok(Some(bytes)) => bytes,
                _ => Vec::new(),
            };
            let text = String::from_utf8_lossy(&config);
            match Mode::parse(&text) {
                Some(mode) => {
                    self.mode = mode;
                    true
                }
                None => {
                    let _ =
                        hostcalls::log(LogLevel::Error, &format!("floors: unknown mode {text:?}"));
                    false
                }
            }
        }

        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Floor { mode: self.mode }))
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct Floor {
        mode: Mode,
    }

    impl Context for Floor {}

    const BACKEND: (&str, &[u8]) = ("x-agent-backend", b"upstream");
    const KIND: (&str, &[u8]) = ("x-agent-kind", b"agent");
    const TIMEOUT: (&str, &[u8]) = ("x-envoy-upstream-rq-timeout-ms", b"120000");
    /// The request header that makes `trap` trap.
    const TRAP_HEADER: &str = "x-floors-trap";
    /// Headers a dispatching filter owns: client copies are dropped in `mapmap`.
    const OWNED: [&str; 6] = [
        "x-agent-backend",
        "x-agent-name",
        "x-agent-namespace",
        "x-agent-kind",
        "x-forwarded-prefix",
        "x-envoy-upstream-rq-timeout-ms",
    ];

    impl HttpContext for Floor {
        fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
            match self.mode {
                Mode::Noop => {}
                Mode::Set1 => {
                    abi::replace(BACKEND.0, BACKEND.1);
                }
                Mode::Trap => {
                    if abi::get(TRAP_HEADER).is_some() {
                        // The fault under test: the VM dies here, as on a panic.
                        core::arch::wasm32::unreachable();
                    }
                    abi::replace(BACKEND.0, BACKEND.1);
                }
                Mode::ReadMap => {
                    if let Some(bytes) = abi::get_pairs() {
                        let _ = wire::parse(&bytes);
                    }
                }
                Mode::Read2Set7 => {
                    let path = abi::get(":path").unwrap_or_default();
                    let _authority = abi::get(":authority");
                    abi::replace(BACKEND.0, BACKEND.1);
                    if let Some(d) = Dispatch::of(&path) {
                        abi::replace("x-agent-name", d.name);
                        abi::replace("x-agent-namespace", d.namespace);
                        abi::replace(KIND.0, KIND.1);
                        abi::replace("x-forwarded-prefix", d.prefix);
                        abi::replace(TIMEOUT.0, TIMEOUT.1);
                        abi::replace(":path", d.rest);
                    }
                }
                Mode::MapSet7 => {
                    let Some(bytes) = abi::get_pairs() else {
                        return Action::Continue;
                    };
                    let path = wire::parse(&bytes).and_then(|pairs| {
                        pairs
                            .iter()
                            .find(|(k, _)| *k == ":path")
                            .map(|(_, v)| v.to_vec())
                    });
                    abi::replace(BACKEND.0, BACKEND.1);
                    if let Some(d) = path.as_deref().and_then(Dispatch::of) {
                        abi::replace("x-agent-name", d.name);
                        abi::replace("x-agent-namespace", d.namespace);
                        abi::replace(KIND.0, KIND.1);
                        abi::replace("x-forwarded-prefix", d.prefix);
                        abi::replace(TIMEOUT.0, TIMEOUT.1);
                        abi::replace(":path", d.rest);
                    }
                }
                Mode::Read2Set1 => {
                    let path = abi::get(":path").unwrap_or_default();
                    let _authority = abi::get(":authority");
                    abi::replace(BACKEND.0, BACKEND.1);
                    if let Some(d) = Dispatch::of(&path) {
                        abi::replace(":path", d.rest);
                    }
                }
                Mode::MapMap => {
                    let Some(bytes) = abi::get_pairs() else {
                        return Action::Continue;
                    };
                    let Some(pairs) = wire::parse(&bytes) else {
                        return Action::Continue;
                    };
                    let path = pairs
                        .iter()
                        .find(|(k, _)| *k == ":path")
                        .map(|(_, v)| *v)
                        .unwrap_or_default();
                    let mut out: Vec<(&str, &[u8])> = Vec::with_capacity(pairs.len() + 6);
                    match Dispatch::of(path) {
                        Some(d) => {
                            for &(k, v) in &pairs {
                                if k == ":path" {
                                    out.push((k, d.rest));
                                } else if !OWNED.contains(&k) {
                                    out.push((k, v));
                                }
                            }
                            out.extend([
                                BACKEND,
                                ("x-agent-name", d.name),
                                ("x-agent-namespace", d.namespace),
                                KIND,
                                ("x-forwarded-prefix", d.prefix),
                                TIMEOUT,
                            ]);
                        }
                        None => {
                            out.extend(pairs.iter().copied().filter(|(k, _)| !OWNED.contains(k)));
                            out.push(BACKEND);
                        }
                    }
                    abi::set_pairs(&wire::serialize(&out));
                }
            }
            Action::Continue
        }
    }

    /// `/{ns}/agent/{name}{rest}` split the way agentroute's default layout
    /// reads it; `rest` is `/` when empty. Query strings stay in `rest`.
    struct Dispatch<'a> {
        namespace: &'a [u8],
        name: &'a [u8],
        prefix: &'a [u8],
        rest: &'a [u8],
    }

    impl<'a> Dispatch<'a> {
        fn of(path: &'a [u8]) -> Option<Self> {
            let after = path.strip_prefix(b"/")?;
            let ns_end = after.iter().position(|&b| b == b'/')?;
            let namespace = after.get(..ns_end)?;
            let after = after.get(ns_end..)?.strip_prefix(b"/agent/")?;
            let name_end = after
                .iter()
                .position(|&b| b == b'/' || b == b'?')
                .unwrap_or(after.len());
            let name = after.get(..name_end)?;
            let prefix_len = 1 + ns_end + "/agent/".len() + name_end;
            let prefix = path.get(..prefix_len)?;
            let rest = match path.get(prefix_len..)? {
                r if r.is_empty() || r.first() == Some(&b'?') => b"/".as_slice(),
                r => r,
            };
            Some(Dispatch {
                namespace,
                name,
                prefix,
                rest,
            })
        }
    }

    /// Header-map host calls through the raw ABI (the SDK's versions panic on
    /// a non-UTF-8 value or an unexpected status).
    mod abi {
        const REQUEST_HEADERS: u32 = 0;

        #[link(wasm_import_module = "env")]
        extern "C" {
            fn proxy_get_header_map_value(
                map_type: u32,
                key_data: *const u8,
                key_size: usize,
                value_data: *mut *mut u8,
                value_size: *mut usize,
            ) -> u32;
            fn proxy_replace_header_map_value(
                map_type: u32,
                key_data: *const u8,
                key_size: usize,
                value_data: *const u8,
                value_size: usize,
            ) -> u32;
            fn proxy_get_header_map_pairs(
                map_type: u32,
                data: *mut *mut u8,
                size: *mut usize,
            ) -> u32;
            fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
        }

        /// Takes ownership of a buffer the host allocated through the SDK's
        /// `proxy_on_memory_allocate` (a Vec of capacity exactly `size`).
        fn owned(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
            match status {
                0 if data.is_null() => Some(Vec::new()),
                // SAFETY: see above; the host hands the buffer over to us.
                0 => Some(unsafe { Vec::from_raw_parts(data, size, size) }),
                _ => None,
            }
        }

        pub fn get(name: &str) -> Option<Vec<u8>> {
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size = 0usize;
            // SAFETY: the host reads `name` during the call and writes the two out-params.
            let status = unsafe {
                proxy_get_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    &mut data,
                    &mut size,
                )
            };
            owned(status, data, size)
        }

        pub fn replace(name: &str, value: &[u8]) -> bool {
            // SAFETY: the host only reads both buffers during the call.
            unsafe {
                proxy_replace_header_map_value(
                    REQUEST_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    value.as_ptr(),
                    value.len(),
                ) == 0
            }
        }

        pub fn get_pairs() -> Option<Vec<u8>> {
            let mut data: *mut u8 = std::ptr::null_mut();
            let mut size = 0usize;
            // SAFETY: the host writes the two out-params.
            let status =
                unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size) };
            owned(status, data, size)
        }

        pub fn set_pairs(serialized: &[u8]) -> bool {
            // SAFETY: the host only reads `size` bytes from `data` during the call.
            unsafe {
                proxy_set_header_map_pairs(REQUEST_HEADERS, serialized.as_ptr(), serialized.len())
                    == 0
            }
        }
    }

    /// The Proxy-Wasm header-map serialisation (as agentroute's `wire.rs`):
    /// `u32` count, per pair `u32` key and value lengths, then each key and
    /// value followed by a NUL.
    mod wire {
        pub fn parse(bytes: &[u8]) -> Option<Vec<(&str, &[u8])>> {
            if bytes.is_empty() {
                return Some(Vec::new());
            }
            let count = read_u32(bytes, 0)? as usize;
            let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
            let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
            for i in 0..count {
                let key_len = read_u32(bytes, 4 + i * 8)? as usize;
                let value_len = read_u32(bytes, 8 + i * 8)? as usize;
                let key = bytes.get(data..data.checked_add(key_len)?)?;
                data = data.checked_add(key_len + 1)?;
                let value = bytes.get(data..data.checked_add(value_len)?)?;
                data = data.checked_add(value_len + 1)?;
                pairs.push((std::str::from_utf8(key).ok()?, value));
            }
            Some(pairs)
        }

        pub fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
            let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
            out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
            for (k, v) in pairs {
                out.extend_from_slice(&(k.len() as u32).to_le_bytes());
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            }
            for (k, v) in pairs {
                out.extend_from_slice(k.as_bytes());
                out.push(0);
                out.extend_from_slice(v);
                out.push(0);
            }
            out
        }

        fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
            let b = bytes.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes(b.try_into().ok()?))
        }
    }
}
