//! The legacy HTTP+SSE transport (MCP 2024-11-05, the official Python
//! SDK's `sse_app()`) on entries with tool rules: refused.
//!
//! Its client opens `GET /sse`, an event stream whose first event names
//! the endpoint (`/messages/?session_id=…`) it then POSTs each message to;
//! the server answers every POST `202` and sends every answer on the GET
//! stream. Tool rules cannot hold there: a `tools/list` answer comes on a
//! stream the filter cannot tie to its request, and a refused `tools/call`
//! can only be answered on the POST, which the SDK's legacy client never
//! reads (it checks the status only; one that is not 2xx ends its writer
//! and the call waits for ever). The filter has no way to write into
//! another request's stream. So on an entry with tool rules, an event
//! stream that a GET opens and no session names is refused before its
//! first byte reaches the client: the legacy client fails at once with the
//! status, instead of listing every tool or hanging on a refused call.
//!
//! What tells the streams apart is the server's answer, never the
//! client's request (a client could send any header): a Streamable HTTP
//! server names the session of a GET stream in `Mcp-Session-Id` (the
//! official SDKs do); the legacy transport has no such header.

use super::judge::rpc_error;
use crate::reply::LocalReply;

/// JSON-RPC internal error: the gateway cannot serve what the server
/// answered.
const INTERNAL_ERROR: i64 = -32603;

/// The status of the refusal: the server's answer is one the gateway
/// does not pass on.
pub const REFUSED_STATUS: u32 = 502;

/// Whether the answer to a GET on an entry with tool rules is an event
/// stream no session names: a 2xx `text/event-stream` (any parameters,
/// any case) without a non-empty `Mcp-Session-Id`.
pub fn is_unbound_stream(status: u32, content_type: Option<&str>, session: Option<&str>) -> bool {
    let event_stream = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"));
    let named = session.is_some_and(|s| !s.trim().is_empty());
    (200..300).contains(&status) && event_stream && !named
}

/// The answer given in place of such a stream.
pub fn refused() -> LocalReply {
    rpc_error(
        REFUSED_STATUS,
        "null",
        INTERNAL_ERROR,
        "Internal error: the legacy HTTP+SSE transport (an event stream without Mcp-Session-Id) \
         is not served on an MCP entry with tool rules: its answers and refusals cannot reach \
         the client where it reads them. Use the Streamable HTTP transport",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn only_event_streams_no_session_names_are_refused() {
        let sse = Some("text/event-stream; charset=utf-8");
        // The legacy transport, as the SDK's sse_app answers GET /sse.
        assert!(is_unbound_stream(200, sse, None));
        assert!(is_unbound_stream(200, Some("Text/Event-Stream"), None));
        assert!(is_unbound_stream(
            200,
            Some(" text/event-stream "),
            Some("  ")
        ));
        assert!(is_unbound_stream(203, sse, Some("")));
        // A Streamable HTTP session's GET stream (and a resumed one).
        assert!(!is_unbound_stream(200, sse, Some("8a6c1f")));
        // Not a stream the transport opened: errors, other answers.
        for (status, content_type) in [
            (400, sse),
            (405, sse),
            (404, Some("text/plain")),
            (200, Some("application/json")),
            (200, Some("text/event-streamx")),
            (200, None),
            (101, sse),
        ] {
            assert!(
                !is_unbound_stream(status, content_type, None),
                "{status} {content_type:?}"
            );
        }
    }

    #[test]
    fn the_refusal_says_why_in_json_rpc() {
        let reply = refused();
        assert_eq!(reply.status, 502);
        let body: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(body["id"], Value::Null);
        assert_eq!(body["error"]["code"], -32603);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("legacy HTTP+SSE transport"), "{message}");
        assert!(message.contains("Streamable HTTP"), "{message}");
    }
}
