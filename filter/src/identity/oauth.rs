//! MCP servers that run their own OAuth, behind the gateway's paths: their
//! protected-resource metadata (RFC 9728) and the `resource_metadata` of
//! their 401s name the server's internal URL, which a client that connects
//! through `/{ns}/mcp/{name}/…` refuses (its `resource` must be the URL it
//! connects to). Both are rewritten to the gateway's address with the
//! rules of agent cards (`a2a::card::rewrite_url`): only URLs below the
//! entry's root on another address are rewritten, the address is the
//! client's only when it is a plain `host[:port]`.

use crate::a2a::card::{rewrite_url, CardAddress};

use super::WELL_KNOWN_PREFIX;

/// Documents larger than this pass unchanged.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// The server's protected-resource metadata with `resource` rewritten to
/// the gateway's URL; `None` when it is not a JSON object with a string
/// `resource` the gateway serves (passed unchanged).
pub fn rewrite_document(body: &[u8], address: &CardAddress) -> Option<Vec<u8>> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return None;
    }
    let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    let resource = doc.get("resource")?.as_str()?;
    let rewritten = rewrite_url(resource, address)?;
    doc.insert("resource".into(), rewritten.into());
    serde_json::to_vec(&doc).ok()
}

/// A `WWW-Authenticate` value with its `resource_metadata="URL"` pointed
/// at the gateway: the URL's path is the well-known prefix before the
/// resource's own path, and that path is rewritten as an interface URL
/// is. `None` when there is nothing to rewrite.
pub fn rewrite_challenge(value: &str, address: &CardAddress) -> Option<String> {
    const PARAM: &str = "resource_metadata=\"";
    let start = value.find(PARAM)? + PARAM.len();
    let len = value.get(start..)?.find('"')?;
    let url = value.get(start..start + len)?;
    let (scheme, rest) = url.split_once("://")?;
    let path_start = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    let resource_path = path.strip_prefix(WELL_KNOWN_PREFIX)?;
    if !(resource_path.is_empty() || resource_path.starts_with('/')) {
        return None;
    }
    // The resource's own URL, rewritten to the gateway's...
    let resource = rewrite_url(&format!("{scheme}://{authority}{resource_path}"), address)?;
    // ...then the well-known prefix put back after its authority.
    let (new_scheme, new_rest) = resource.split_once("://")?;
    let cut = new_rest.find(['/', '?', '#']).unwrap_or(new_rest.len());
    let (new_authority, new_path) = new_rest.split_at(cut);
    // A resource at the server's root is the entry's root: no slash after.
    let new_path = if resource_path.is_empty() {
        new_path.trim_end_matches('/')
    } else {
        new_path
    };
    let new_url = format!("{new_scheme}://{new_authority}{WELL_KNOWN_PREFIX}{new_path}");
    let mut out = String::with_capacity(value.len() + new_url.len());
    out.push_str(value.get(..start)?);
    out.push_str(&new_url);
    out.push_str(value.get(start + len..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> CardAddress {
        CardAddress {
            scheme: "https".into(),
            authority: "gw.example.com".into(),
            prefix: "/prod/mcp/tools".into(),
            root: "/".into(),
        }
    }

    #[test]
    fn the_document_names_the_gateways_url() {
        let doc = br#"{"resource":"http://tools.internal:8000/mcp","authorization_servers":["https://auth.example.com"]}"#;
        let out = rewrite_document(doc, &gateway()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["resource"], "https://gw.example.com/prod/mcp/tools/mcp");
        assert_eq!(v["authorization_servers"][0], "https://auth.example.com");
        // Already the gateway's, or not a URL the gateway serves: unchanged.
        assert!(rewrite_document(
            br#"{"resource":"https://gw.example.com/prod/mcp/tools/mcp"}"#,
            &gateway()
        )
        .is_none());
        assert!(rewrite_document(br#"{"resource":"ftp://x/mcp"}"#, &gateway()).is_none());
        assert!(rewrite_document(br#"["resource"]"#, &gateway()).is_none());
        assert!(rewrite_document(b"not json", &gateway()).is_none());
    }

    #[test]
    fn the_challenge_points_at_the_gateway() {
        let value = r#"Bearer error="invalid_token", resource_metadata="http://tools.internal:8000/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            rewrite_challenge(value, &gateway()).unwrap(),
            r#"Bearer error="invalid_token", resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/tools/mcp""#
        );
        let root = r#"Bearer resource_metadata="http://tools.internal:8000/.well-known/oauth-protected-resource""#;
        assert_eq!(
            rewrite_challenge(root, &gateway()).unwrap(),
            r#"Bearer resource_metadata="https://gw.example.com/.well-known/oauth-protected-resource/prod/mcp/tools""#
        );
        assert!(rewrite_challenge("Bearer", &gateway()).is_none());
        assert!(rewrite_challenge(
            r#"Bearer resource_metadata="http://x/elsewhere""#,
            &gateway()
        )
        .is_none());
        assert!(rewrite_challenge(
            r#"Bearer resource_metadata="http://x/.well-known/oauth-protected-resource"#,
            &gateway()
        )
        .is_none());
    }
}
