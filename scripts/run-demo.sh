#!/usr/bin/env bash
# Starts the demo agents and Envoy with the agentroute filter on localhost,
# prints curl lines that work as printed, and stops everything on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${ENVOY:-.venv/bin/envoy}
AGENT=target/release/demo-agent
PYTHON=${PYTHON:-.venv/bin/python}
LOGS=.run
mkdir -p "$LOGS"

pids=()
cleanup() {
  trap - EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo; echo "stopped the demo gateway and agents"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in 9101 9102 9103 9104 9105 9106 9107 9108 9109 9110 9111 10000 9901; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: stop what holds it (another 'make run'?) and retry" >&2
    exit 1
  fi
done

"$AGENT" coordinator=127.0.0.1:9101 researcher=127.0.0.1:9102 llm=127.0.0.1:9103 tools=127.0.0.1:9104 embedder=127.0.0.1:9105 \
  coordinator-next=127.0.0.1:9107 llm-backup=127.0.0.1:9110 \
  >"$LOGS/agents.log" 2>&1 &
pids+=($!)
# An A2A agent (official a2a-sdk) whose card names its in-cluster address:
# the gateway rewrites it to the address the client used.
"$PYTHON" tests/python/a2a_agent.py --port 9106 --name assistant \
  --base-url http://assistant.prod.svc.cluster.local:8000/ >"$LOGS/a2a-agent.log" 2>&1 &
pids+=($!)
# An MCP server (official mcp SDK), two replicas of it behind one cluster.
for replica in 1 2; do
  "$PYTHON" tests/python/mcp_server.py --port $((9107 + replica)) --replica "replica-$replica" \
    >"$LOGS/mcp-$replica.log" 2>&1 &
  pids+=($!)
done
# A stand-in Anthropic API (model claude-demo): OpenAI chats are translated
# to it; it answers only with the key Envoy injects (envoy/demo-secrets/).
"$PYTHON" tests/python/provider_server.py --port 9111 --kind anthropic --name claude \
  --key demo-anthropic-key >"$LOGS/anthropic.log" 2>&1 &
pids+=($!)
# Envoy's log goes to stderr, the access log (envoy/demo.yaml: JSON, one
# line per request) to stdout.
: >"$LOGS/access.log"
"$ENVOY" -c envoy/demo.yaml --concurrency 2 --disable-hot-restart \
  -l warning --component-log-level wasm:info >"$LOGS/access.log" 2>"$LOGS/envoy.log" &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fs -o /dev/null http://127.0.0.1:9901/ready 2>/dev/null; then break; fi
  if ! kill -0 "${pids[4]}" 2>/dev/null; then
    echo "Envoy exited; its log ($LOGS/envoy.log):" >&2; cat "$LOGS/envoy.log" >&2; exit 1
  fi
  sleep 0.1
done
for _ in $(seq 1 100); do
  if grep -q '^listening on' "$LOGS/a2a-agent.log" 2>/dev/null; then break; fi
  if ! kill -0 "${pids[1]}" 2>/dev/null; then
    echo "the A2A agent exited; its log ($LOGS/a2a-agent.log):" >&2; cat "$LOGS/a2a-agent.log" >&2; exit 1
  fi
  sleep 0.1
done

cat <<'TXT'

agentroute demo gateway on http://localhost:10000 (Envoy admin: http://localhost:9901)
agents: prod/coordinator (20 % canary: coordinator-next), prod/researcher (2 in flight at most),
        prod/tools (mcp), models/llm (modelapi, failover to llm-backup) and models/embedder (modelapi),
        prod/assistant (A2A, official a2a-sdk),
        prod/search (mcp, official mcp SDK, two replicas, tool rules);
        CORS for pages on http://localhost:3000 (and *.localhost:3000)

Try:
  curl -s localhost:10000/prod/agent/coordinator/hello?x=1     # kind layout: /{ns}/{kind}/{name}/...
  curl -s localhost:10000/prod/researcher/tasks                # namespaced layout: /{ns}/{name}/...
  curl -s localhost:10000/tools/.well-known/agent.json         # shorthand: /{name}/... (unique names)
  curl -s localhost:10000/customer-service/orders              # explicit prefix of prod/coordinator
  curl -s -H 'host: coordinator.localhost' localhost:10000/any/path   # host routing
  curl -s -H 'x-agent-backend: tools' localhost:10000/prod/researcher # client can't pick a backend
  curl -s localhost:10000/prod/coordinator/%2e%2e/admin        # dot-segments: 400
  curl -s localhost:10000/prod/mcp/tools/x?delay_ms=6000       # mcp timeout 5s: 504
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code} ' localhost:10000/prod/tools; done; echo
                                                               # prod/tools: 1 req/s, burst 3 -> 200 200 200 429 429
  curl -si localhost:10000/prod/tools | grep -i -E '^(HTTP|retry-after|x-ratelimit)'
  curl -s localhost:10000/v1/models                            # OpenAI: models, answered by the filter
  curl -s localhost:10000/v1/chat/completions -H 'content-type: application/json' \
       -d '{"model":"gpt-demo","messages":[{"role":"user","content":"hi"}]}'   # dispatched by model
  curl -s localhost:10000/prod/agent/assistant/.well-known/agent-card.json | grep -o '"url":"[^"]*"'
                                                               # A2A card: interface URLs point at the gateway
  curl -s localhost:10000/v1/chat/completions -H 'content-type: application/json' \
       -d '{"model":"prod/assistant","messages":[{"role":"user","content":"hi"}]}'  # OpenAI chat with the A2A agent
  for u in alice bob trent carol dave; do curl -s -H "x-user-id: $u" localhost:10000/prod/coordinator/x \
       -o /dev/null -w "$u: %header{x-served-by}\n"; done      # canary by user: each always on the same side
  curl -s -H 'x-canary: always' -o /dev/null -w '%header{x-served-by}\n' localhost:10000/prod/coordinator/x
                                                               # forced canary: coordinator-next
  curl -si -X OPTIONS localhost:10000/prod/researcher/x -H 'origin: http://localhost:3000' \
       -H 'access-control-request-method: POST' -H 'access-control-request-headers: content-type' \
       | grep -i -E '^(HTTP|access-control|vary)'              # CORS preflight, answered by the gateway: 204
  curl -si localhost:10000/prod/researcher/x -H 'origin: http://localhost:3000' | grep -i -E '^(HTTP|access-control|vary)'
                                                               # the actual request: CORS on the answer
  curl -s -o /dev/null 'localhost:10000/prod/researcher/slow?delay_ms=3000' & \
  curl -s -o /dev/null 'localhost:10000/prod/researcher/slow?delay_ms=3000' & sleep 0.5; \
  curl -si localhost:10000/prod/researcher/x | grep -E '^HTTP|^retry-after|"code"'; wait
                                                               # 2 in flight: the third gets 429 concurrency_limit_exceeded
  # MCP (prod/search allows search, fetch_*, whoami; denies fetch_secrets; fetch_* 0.2/s, burst 2):
  META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
  MCP=(-H 'content-type: application/json' -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28')
  curl -s localhost:10000/prod/mcp/search/mcp "${MCP[@]}" -H 'mcp-method: tools/list' \
       -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{'"$META"'}}'      # list without fetch_secrets, delete_all
  curl -s localhost:10000/prod/mcp/search/mcp "${MCP[@]}" -H 'mcp-method: tools/call' -H 'mcp-name: fetch_secrets' \
       -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"fetch_secrets",'"$META"'}}'  # Unknown tool (-32602)
  curl -s localhost:10000/prod/mcp/search/mcp "${MCP[@]}" -H 'mcp-method: tools/call' -H 'mcp-name: search' \
       -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fetch_url",'"$META"'}}'      # header mismatch: 400
  .venv/bin/python tests/python/mcp_client.py --url http://localhost:10000/prod/mcp/search/mcp \
       --mode legacy list repeat:5:whoami                      # one session, one replica (Mcp-Session-Id envelope)
  curl -s localhost:10000/v1/chat/completions -H 'content-type: application/json' \
       -d '{"model":"gpt-demo","stream":true,"stream_options":{"include_usage":true},"messages":[]}'
                                                               # a stream: its usage lands in the access log and stats
  # Providers: an OpenAI chat for claude-demo, translated to Anthropic's
  # Messages API (the key is Envoy's, the client's is removed), then the
  # Anthropic surface: a Messages request for gpt-demo, translated to OpenAI.
  curl -s localhost:10000/v1/chat/completions -H 'content-type: application/json' -H 'authorization: Bearer mine' \
       -d '{"model":"claude-demo","messages":[{"role":"user","content":"hello"}]}'
  curl -s localhost:10000/v1/messages -H 'content-type: application/json' \
       -d '{"model":"gpt-demo","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}'
  # Failover (models/llm -> llm-backup; ?fail=NAME makes that demo agent fail):
  curl -s -o /dev/null -w '%{http_code} %header{x-served-by}\n' 'localhost:10000/models/llm/x?fail=llm'
                                                               # llm answers 503: retried on llm-backup, 200 (Envoy >= 1.39)
  curl -s -o /dev/null -w '%{http_code} %header{x-served-by}\n' localhost:10000/models/llm/x
                                                               # llm ejected for 10s: llm-backup answers directly
  curl -s -o /dev/null -w '%{http_code} %header{x-served-by}\n' 'localhost:10000/models/llm/x?fail=llm,llm-backup&fail_status=429&retry_after=30'
                                                               # both fail: the last backend's 429 reaches the client as it was
  sleep 1.5; curl -s localhost:9901/stats/prometheus | grep agentroute_failover
                                                               # ejections and retries per backend, ejected backends
                                                               # (the filter flushes its counters once a second: read after)
  sleep 1.5; curl -s localhost:9901/stats/prometheus | grep '^agentroute_'   # per-agent stats: requests, canary sides,
                                                               # in-flight, refusals, per tool, tokens per model
  curl -s localhost:9901/stats/prometheus | grep '^envoy_cluster_agentroute_upstream_rq_time_count'
                                                               # Envoy's upstream stats per agent and backend

Access log: one JSON line per request in .run/access.log (entry, kind, backend,
model, tokens, the limit that refused it), printed below as requests come in.
Other logs in .run/ — Ctrl-C stops everything.

TXT
# The access log as it grows, for the curl lines above.
tail -n 0 -F "$LOGS/access.log" 2>/dev/null | sed -u 's/^/access: /' &
pids+=($!)
wait -n "${pids[@]}" || true
echo "a demo process exited; see $LOGS/" >&2
