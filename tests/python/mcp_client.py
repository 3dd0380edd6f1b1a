#!/usr/bin/env python3
"""MCP test client built with the official MCP Python SDK (`mcp.Client`).

Usage:
    mcp_client.py --url URL [--mode legacy|2026-07-28|sse] [--host HOST]
                  [--timeout SECONDS] ACTION...

--mode legacy speaks the session protocol (initialize, Mcp-Session-Id);
2026-07-28 the stateless one (Mcp-Method / Mcp-Name headers on every
request); sse the legacy HTTP+SSE transport with the SDK's own client for it
(`mcp.client.sse.sse_client`: URL is the GET /sse stream). --host sends that
Host header; --timeout bounds each request (default 10 s). Actions run in
order on one connection (one session):
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

from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError
from mcp_types import PaginatedRequestParams


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


@contextlib.asynccontextmanager
async def connect(args):
    if args.mode != "sse":
        async with Client(args.url, mode=args.mode, read_timeout_seconds=args.timeout) as client:
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
    ap.add_argument("actions", nargs="+")
    args = ap.parse_args()

    out = {"pages": 0, "tools": [], "results": []}
    try:
        async with connect(args) as client:
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
