#!/usr/bin/env python3
"""MCP test client built with the official MCP Python SDK (`mcp.Client`).

Usage:
    mcp_client.py --url URL [--mode legacy|2026-07-28|sse] [--host HOST]
                  [--timeout SECONDS] [--authorization VALUE | --oauth]
                  ACTION...

--mode legacy speaks the session protocol (initialize, Mcp-Session-Id);
2026-07-28 the stateless one (Mcp-Method / Mcp-Name headers on every
request); sse the legacy HTTP+SSE transport with the SDK's own client for it
(`mcp.client.sse.sse_client`: URL is the GET /sse stream). --host sends that
Host header; --timeout bounds each request (default 10 s).

For legacy and 2026-07-28, who is calling: --authorization sends that
`Authorization` header on every request ("" sends none); --oauth lets the
SDK's OAuth client (`OAuthClientProvider`) get a token itself on a 401:
protected-resource metadata, the authorization server's metadata, dynamic
registration, the authorization request (the "browser" here GETs the
authorization URL and takes the code from its redirect), the token. With
either, the output adds "http": every HTTP exchange the SDK made
([{"method", "url", "status"}], the OAuth client's own requests included),
and with --oauth, "authorization_url": the one it sent the user to.

Actions run in order on one connection (one session):
    list              every page of tools/list (following nextCursor)
    call:NAME[:JSON]  one tools/call with JSON arguments
    repeat:N:NAME     N sequential calls of NAME ({"session": <id>} as
                      arguments), stopping at the first error
    pause:SECONDS     wait (the test changes something meanwhile)

Prints one JSON line and exits 0:
    {"pages": <tools/list pages>,
     "tools": [names listed], "results": [{"tool", "ok", "text" | "code", "message"}]}
On an error outside a call prints {"error": ...} and exits 1.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import uuid

import httpx2
from mcp import Client, ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPError
from mcp_types import PaginatedRequestParams

# Where the authorization server sends the "browser" back; never listened
# on: the redirect's Location is read, not followed.
REDIRECT_URI = "http://127.0.0.1:9/callback"


class SseClient:
    """The calls this script makes, on the SDK's legacy HTTP+SSE client."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def list_tools(self, cursor, cache_mode):
        del cache_mode
        params = PaginatedRequestParams(cursor=cursor) if cursor else None
        return await self.session.list_tools(params=params)

    async def call_tool(self, name: str, arguments: dict):
        return await self.session.call_tool(name, arguments)


class MemoryStorage:
    """The SDK's TokenStorage for one run: nothing is kept between runs."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Browser:
    """The user's browser at the authorization server: opens the
    authorization URL and comes back with what its redirect carries."""

    def __init__(self, out: dict) -> None:
        self.out = out
        self.location: httpx2.URL | None = None

    async def redirect(self, authorization_url: str) -> None:
        self.out["authorization_url"] = authorization_url
        async with httpx2.AsyncClient(timeout=10) as http:
            response = await http.get(authorization_url)
        if not response.is_redirect:
            raise RuntimeError(f"authorization answered {response.status_code}: {response.text}")
        self.location = httpx2.URL(response.headers["location"])

    async def callback(self) -> AuthorizationCodeResult:
        if self.location is None:
            raise RuntimeError("no redirect from the authorization server")
        params = self.location.params
        return AuthorizationCodeResult(code=params.get("code", ""), state=params.get("state"), iss=params.get("iss"))


def oauth_provider(url: str, out: dict) -> OAuthClientProvider:
    browser = Browser(out)
    metadata = OAuthClientMetadata(
        client_name="agentroute test client",
        redirect_uris=[REDIRECT_URI],
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(
        server_url=url,
        client_metadata=metadata,
        storage=MemoryStorage(),
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )


@contextlib.asynccontextmanager
async def connect(args, out: dict):
    if args.mode != "sse" and args.authorization is None and not args.oauth:
        async with Client(args.url, mode=args.mode, read_timeout_seconds=args.timeout) as client:
            yield client
        return
    if args.mode != "sse":
        headers = {"Authorization": args.authorization} if args.authorization else None
        auth = oauth_provider(args.url, out) if args.oauth else None
        out["http"] = []

        async def record(response: httpx2.Response) -> None:
            request = response.request
            out["http"].append({"method": request.method, "url": str(request.url), "status": response.status_code})

        # The client the SDK would make (its timeouts: 30 s, reads 300 s),
        # with the caller's credentials and a record of every exchange.
        timeout = httpx2.Timeout(30, read=300)
        hooks = {"response": [record]}
        async with httpx2.AsyncClient(headers=headers, auth=auth, timeout=timeout, event_hooks=hooks) as http:
            transport = streamable_http_client(args.url, http_client=http)
            async with Client(transport, mode=args.mode, read_timeout_seconds=args.timeout) as client:
                yield client
        return
    headers = {"Host": args.host} if args.host else None
    async with sse_client(args.url, headers=headers, timeout=args.timeout) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=args.timeout) as session:
            await session.initialize()
            yield SseClient(session)


async def call(client, name: str, arguments: dict) -> dict:
    try:
        result = await client.call_tool(name, arguments)
    except MCPError as e:
        return {"tool": name, "ok": False, "code": e.code, "message": e.message}
    text = "".join(getattr(c, "text", "") for c in result.content)
    return {"tool": name, "ok": not result.is_error, "text": text}


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--mode", default="legacy", choices=["legacy", "2026-07-28", "sse"])
    ap.add_argument("--host", help="Host header to send (--mode sse)")
    ap.add_argument("--timeout", type=float, default=10, help="seconds each request may take")
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--authorization", help="Authorization header to send (legacy, 2026-07-28)")
    who.add_argument("--oauth", action="store_true", help="get a token with the SDK's OAuth client on a 401")
    ap.add_argument("actions", nargs="+")
    args = ap.parse_args()
    if args.mode == "sse" and (args.authorization is not None or args.oauth):
        ap.error("--authorization and --oauth are for the streamable HTTP modes")

    out = {"pages": 0, "tools": [], "results": []}
    try:
        async with connect(args, out) as client:
            for action in args.actions:
                kind, _, rest = action.partition(":")
                if kind == "list":
                    cursor = None
                    while True:
                        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
                        out["pages"] += 1
                        out["tools"] += [t.name for t in page.tools]
                        cursor = page.next_cursor
                        if not cursor:
                            break
                elif kind == "call":
                    name, _, arguments = rest.partition(":")
                    out["results"].append(await call(client, name, json.loads(arguments or "{}")))
                elif kind == "repeat":
                    count, _, name = rest.partition(":")
                    session = str(uuid.uuid4())
                    for _ in range(int(count)):
                        result = await call(client, name, {"session": session})
                        out["results"].append(result)
                        if not result["ok"]:
                            break
                elif kind == "pause":
                    print(json.dumps({"paused": True}), flush=True)
                    await asyncio.sleep(float(rest))
                else:
                    raise ValueError(f"unknown action {action!r}")
    except BaseException as e:  # noqa: BLE001 - report anything, the test reads it
        errors = e.exceptions if isinstance(e, BaseExceptionGroup) else [e]
        out["error"] = "; ".join(f"{type(x).__name__}: {x}" for x in errors)
        print(json.dumps(out), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
