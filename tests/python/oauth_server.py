#!/usr/bin/env python3
"""A stand-in OAuth authorization server (Python stdlib only), for the MCP
SDK's OAuth client to find through the gateway's protected-resource
metadata. Just enough of RFC 8414 / 7591 / 6749 for the authorization-code
flow with PKCE:

    GET  /.well-known/oauth-authorization-server   its metadata (issuer: its own URL)
    POST /register    dynamic client registration: client id "test-client"
    GET  /authorize   302 to the redirect_uri with a code and the request's state
    POST /token       the access token given with --token (the test signs it
                      for the gateway's jwt_authn; no real grant is checked)

It records every request but its own GET /requests, which answers
[{"method", "path", "query": {name: value}, "form": {name: value} | null,
"json": object | null}]; DELETE /requests forgets them (answering []). Anything else: 404.

Prints exactly one line `listening on 127.0.0.1:PORT` on stdout once it
accepts connections.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

REQUESTS: list[dict] = []
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    token = ""

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        del format, args

    def issuer(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, status: int, body=None, headers=None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body is not None:
            self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self) -> dict:
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        kind = self.headers.get("content-type", "")
        entry = {
            "method": self.command,
            "path": url.path,
            "query": dict(parse_qsl(url.query)),
            "form": dict(parse_qsl(body.decode())) if kind.startswith("application/x-www-form-urlencoded") else None,
            "json": json.loads(body) if kind.startswith("application/json") and body else None,
        }
        if url.path != "/requests":
            with LOCK:
                REQUESTS.append(entry)
        return entry

    def do_GET(self):  # noqa: N802 - the stdlib's name
        request = self.record()
        path, query = request["path"], request["query"]
        if path == "/requests":
            with LOCK:
                return self.answer(200, list(REQUESTS))
        if path == "/.well-known/oauth-authorization-server":
            base = self.issuer()
            return self.answer(200, {
                "issuer": base,
                "authorization_endpoint": f"{base}/authorize",
                "token_endpoint": f"{base}/token",
                "registration_endpoint": f"{base}/register",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["none"],
            })
        if path == "/authorize" and "redirect_uri" in query:
            location = f"{query['redirect_uri']}?{urlencode({'code': 'code-1', 'state': query.get('state', '')})}"
            return self.answer(302, headers={"location": location})
        return self.answer(404, {"error": "not_found"})

    def do_POST(self):  # noqa: N802 - the stdlib's name
        request = self.record()
        if request["path"] == "/register":
            sent = request["json"] or {}
            return self.answer(201, {
                "client_id": "test-client",
                "redirect_uris": sent.get("redirect_uris", []),
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            })
        if request["path"] == "/token":
            return self.answer(200, {"access_token": self.token, "token_type": "Bearer", "expires_in": 3600})
        return self.answer(404, {"error": "not_found"})

    def do_DELETE(self):  # noqa: N802 - the stdlib's name
        request = self.record()
        if request["path"] == "/requests":
            with LOCK:
                REQUESTS.clear()
            return self.answer(200, [])
        return self.answer(404, {"error": "not_found"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    ap.add_argument("--token", required=True, help="the access token /token hands out")
    args = ap.parse_args()
    Handler.token = args.token
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
