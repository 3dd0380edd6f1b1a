//! agentroute: agent-aware routing for Envoy, as a Proxy-Wasm HTTP filter.
//!
//! The core is plain Rust with no host dependency, tested natively, read top
//! to bottom: `config` (the contract, compiled into a plan), `router`,
//! `request` (one request → header changes or a local reply), `openai`,
//! `ratelimit` (local buckets), `client_key` (the one value a per-client
//! limit keys on), `rls` (global limits), `usage`, `a2a`,
//! `canary` (splits), `cors` (origins, preflights), `concurrency`
//! (in-flight counts shared by the workers).
//! `host` is the only module that talks to the Proxy-Wasm ABI and is
//! compiled for wasm32 only.

pub mod a2a;
pub mod canary;
pub mod client_key;
pub mod concurrency;
pub mod config;
pub mod cors;
pub mod failover;
pub mod fasthash;
pub mod identity;
pub mod json_scan;
pub mod llm;
pub mod mcp;
pub mod observe;
pub mod openai;
pub mod ratelimit;
pub mod reply;
pub mod request;
pub mod rls;
pub mod router;
pub mod sse;
pub mod stats;
pub mod usage;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod host;
