//! MCP servers behind the gateway: tool rules ([`rules`]), the JSON-RPC
//! message of a request read from its body ([`rpc`]), what the filter does
//! with it ([`judge`]), and `tools/list` answers with the tools a client may
//! not call removed ([`list`]). Pure logic; the host glue lives in `host`.

pub mod judge;
pub mod list;
pub mod rpc;
pub mod rules;
