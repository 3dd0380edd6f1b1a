#!/usr/bin/env python3
"""MCP test server built with the official MCP Python SDK (`mcp`, MCPServer).

Serves streamable HTTP at /mcp: the session protocol (initialize, then
`Mcp-Session-Id` on every request, MCP <= 2025-11-25) and the stateless
2026-07-28 protocol (`Mcp-Method` / `Mcp-Name` headers), as the SDK does.
With --sse, the legacy HTTP+SSE transport instead (the SDK's `sse_app()`):
GET /sse is the event stream (first event `endpoint`, then every answer),
POST /messages/?session_id=... takes each message and answers 202.

Tools: search(query), fetch_url(url), fetch_secrets(), expensive_a(),
expensive_b(), delete_all(), whoami() (the replica's name and the calls its
session made so far). With --page-size N, tools/list answers in pages of N
(the cursor is the next index).

With --oauth-issuer URL, a server that runs its own OAuth as the SDK does
it (`AuthSettings` and a token verifier): /mcp needs a bearer token, a
request without one gets 401 with `resource_metadata` naming its own
protected-resource metadata at
http://127.0.0.1:PORT/.well-known/oauth-protected-resource/mcp (its
`resource` http://127.0.0.1:PORT/mcp, its authorization server the URL
given); the only token accepted is --oauth-token's (scope tools:read).

Records every JSON-RPC message it gets, before the SDK sees it:
GET /calls answers [{"method": ..., "tool": ... or null, "session": ...}],
DELETE /calls forgets them. GET /requests answers every HTTP request but
those two as "METHOD PATH" strings; DELETE /requests forgets them.

Prints exactly one line `listening on 127.0.0.1:PORT` on stdout once it
accepts connections.
"""

import argparse
import asyncio
import json
import socket
import sys

import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import ListToolsResult, PaginatedRequestParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

CALLS: list[dict] = []
REQUESTS: list[str] = []
OWN = ("/calls", "/requests")


class OneToken:
    """The SDK's TokenVerifier: accepts exactly the token given."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def verify_token(self, token: str) -> AccessToken | None:
        if token != self.token:
            return None
        return AccessToken(token=token, client_id="test-client", scopes=["tools:read"])


class PagedServer(MCPServer):
    """MCPServer whose tools/list pages (the SDK's own answers one page)."""

    page_size = 0

    async def _handle_list_tools(self, ctx, params: PaginatedRequestParams | None) -> ListToolsResult:
        tools = await self.list_tools()
        if not self.page_size:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


def build(replica: str, page_size: int, auth: AuthSettings | None = None, token: str = "") -> PagedServer:
    if auth is None:
        server = PagedServer(name=f"test-mcp-{replica}")
    else:
        server = PagedServer(name=f"test-mcp-{replica}", auth=auth, token_verifier=OneToken(token))
    server.page_size = page_size
    per_session: dict[str, int] = {}

    @server.tool()
    def search(query: str) -> str:
        """Searches."""
        return f"results for {query}"

    @server.tool()
    def fetch_url(url: str) -> str:
        """Fetches a URL."""
        return f"fetched {url}"

    @server.tool()
    def fetch_secrets() -> str:
        """Must never be reachable through the gateway's rules."""
        return "the secrets"

    @server.tool()
    def expensive_a() -> str:
        """Costly."""
        return "a"

    @server.tool()
    def expensive_b() -> str:
        """Costly too."""
        return "b"

    @server.tool()
    def delete_all() -> str:
        """Unlisted in the gateway's allow list."""
        return "deleted"

    @server.tool()
    def whoami(session: str = "") -> str:
        """The replica's name and how many calls this session made here."""
        per_session[session] = per_session.get(session, 0) + 1
        return json.dumps({"replica": replica, "count": per_session[session]})

    @server.custom_route("/calls", methods=["GET", "DELETE"])
    async def calls(request: Request) -> Response:
        if request.method == "DELETE":
            CALLS.clear()
            return Response(status_code=204)
        return JSONResponse(CALLS)

    @server.custom_route("/requests", methods=["GET", "DELETE"])
    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            REQUESTS.clear()
            return Response(status_code=204)
        return JSONResponse(REQUESTS)

    return server


def recording(app):
    """ASGI middleware: records each HTTP request's method and path, and each
    POSTed JSON-RPC message to /mcp (or /messages/)."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OWN:
            REQUESTS.append(f"{scope['method']} {scope['path']}")
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(("/mcp", "/messages")):
            return await app(scope, receive, send)
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The request was reset before its body was whole (a gateway
                # refusing it mid-body): no message reached the server.
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        for msg in decoded if isinstance(decoded, list) else [decoded]:
            if isinstance(msg, dict):
                params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
                CALLS.append({
                    "method": msg.get("method"),
                    "tool": params.get("name") if msg.get("method") == "tools/call" else None,
                    "session": headers.get("mcp-session-id"),
                })
            else:
                CALLS.append({"method": None, "tool": None, "session": headers.get("mcp-session-id")})
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await app(scope, replay, send)

    return wrapped


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    ap.add_argument("--replica", default="r0", help="name whoami answers with")
    ap.add_argument("--json", action="store_true", help="answer POSTs with JSON, not SSE")
    ap.add_argument("--page-size", type=int, default=0, help="tools/list page size (0 = one page)")
    ap.add_argument("--sse", action="store_true", help="serve the legacy HTTP+SSE transport (GET /sse)")
    ap.add_argument("--oauth-issuer", help="run its own OAuth: the authorization server's URL")
    ap.add_argument("--oauth-token", default="", help="with --oauth-issuer: the one bearer token accepted")
    args = ap.parse_args()
    if args.oauth_issuer and not args.oauth_token:
        ap.error("--oauth-issuer needs --oauth-token")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    auth = None
    if args.oauth_issuer:
        # The server's own URL: what its 401 and its metadata name.
        auth = AuthSettings(
            issuer_url=args.oauth_issuer,
            resource_server_url=f"http://127.0.0.1:{port}/mcp",
            required_scopes=["tools:read"],
            validate_token_resource=False,
        )
    server = build(args.replica, args.page_size, auth, args.oauth_token)
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if args.sse:
        app = server.sse_app(transport_security=security)
    else:
        app = server.streamable_http_app(json_response=args.json, transport_security=security)
    config = uvicorn.Config(recording(app), log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    serve = asyncio.create_task(uv.serve(sockets=[sock]))
    while not uv.started:
        if serve.done():
            return 1
        await asyncio.sleep(0.02)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await serve
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
