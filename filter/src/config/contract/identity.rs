//! The identity part of the contract: where verified claims are read
//! (`identity`), who may use an entry (`agents[].access`) and the OAuth
//! protected-resource metadata an MCP entry advertises (`mcp.oauth`).

use std::collections::BTreeMap;

use serde::Deserialize;

#[cfg(not(target_arch = "wasm32"))]
use schemars::JsonSchema;

/// Where the caller's verified identity is read: never from anything a
/// client can send.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "Identity"))]
pub struct RawIdentity {
    /// Where verified claims are read: `jwt_authn`, the payload Envoy's
    /// `jwt_authn` filter stores in dynamic metadata (its provider's
    /// `payload_in_metadata`). Default `jwt_authn`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "jwt_authn")))]
    pub from: Option<IdentitySource>,
    /// The key of that payload under `envoy.filters.http.jwt_authn` (Istio
    /// stores it under the issuer: give the issuer). Default `jwt_payload`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "jwt_payload"), length(min = 1)))]
    pub metadata_key: Option<String>,
    /// The claim that names the caller (the access log's `subject`).
    /// Default `sub`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = "sub"), length(min = 1)))]
    pub subject: Option<String>,
    /// `true`: a request to an entry with `access` rules and no verified
    /// identity gets 401. `false`: such a request is judged with no claims
    /// (only a rule with empty `claims` admits it). Default `false`.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("default" = false)))]
    pub required: Option<bool>,
}

/// Where verified claims come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
pub enum IdentitySource {
    #[serde(rename = "jwt_authn")]
    JwtAuthn,
}

/// One rule of `agents[].access`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "AccessRule"))]
pub struct RawAccessRule {
    /// Claims the caller's verified identity must all hold: the claim is
    /// that string, an array holding it, or (for `scope` and `scp`) a
    /// space-delimited list with that word. Booleans and numbers compare
    /// as text (`"true"`, `"3"`). `{}` admits every caller.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Model ids or patterns (`prefix/*`, `*`) this caller may use on the
    /// entry (OpenAI dispatch). Default: all of the entry's.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(length(min = 1), pattern(r"^[^\u0000-\u001F\u007F-\u009F]*$")))
    )]
    pub models: Option<Vec<String>>,
    /// MCP tool patterns (`*` as a suffix wildcard) this caller may list and
    /// call, within the entry's `mcp.tools`. Default: all of those.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(length(min = 1, max = 256), pattern(r"^[^*\u0000-\u001F\u007F]*\*?$")))
    )]
    pub tools: Option<Vec<String>>,
}

/// RFC 9728 protected-resource metadata the filter serves for an MCP
/// entry whose authorization the gateway does.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(target_arch = "wasm32"), derive(JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(rename = "McpOAuth"))]
pub struct RawOAuth {
    /// Issuer URLs of the authorization servers clients get tokens from.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(length(min = 1), inner(pattern(r"^https?://[^\s]+$")))
    )]
    pub authorization_servers: Vec<String>,
    /// Scopes clients may ask for.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(inner(length(min = 1), pattern(r"^[!#-\[\]-~]+$")))
    )]
    pub scopes_supported: Option<Vec<String>>,
}
