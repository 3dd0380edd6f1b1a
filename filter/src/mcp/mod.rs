//! MCP servers behind the gateway: tool rules ([`rules`]), the JSON-RPC
//! message of a request read from its body ([`rpc`]), what the filter does
//! with it ([`judge`]), a watch for batches in bodies judged from metadata
//! ([`batch`]), `tools/list` answers with the tools a client may
//! not call removed ([`list`]), and the legacy HTTP+SSE transport refused
//! ([`legacy`]). Pure logic; the host glue lives in `host`.

pub mod batch;
pub mod judge;
pub mod legacy;
pub mod list;
pub mod rpc;
pub mod rules;
