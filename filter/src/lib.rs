//! agentroute: agent-aware routing for Envoy, as a Proxy-Wasm HTTP filter.
//!
//! The core (`config`, `router`, `request`, `openai`, `ratelimit`, `stats`) is plain Rust with no
//! host dependency and is tested natively; `host` is the only module that
//! talks to the Proxy-Wasm ABI and is compiled for wasm32 only.

pub mod config;
pub mod openai;
pub mod ratelimit;
pub mod request;
pub mod router;
pub mod stats;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod host;
