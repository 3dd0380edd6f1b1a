#!/usr/bin/env bash
# Global limits on localhost: Redis, the rate limit service (tests/rls-server,
# a stand-in for envoyproxy/ratelimit or Limitador) and TWO Envoys with the
# agentroute filter, as two gateway replicas sharing one limit. Prints curl
# lines that work as printed; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${ENVOY:-.venv/bin/envoy}
RLS_SERVER=${RLS_SERVER:-target/debug/rls-server}
AGENT=target/release/demo-agent
REDIS_PORT=6390
LOGS=.run/global
mkdir -p "$LOGS"

command -v redis-server >/dev/null || {
  echo "redis-server is not installed (make setup installs it with apt-get: apt-get install redis-server)" >&2
  exit 1
}
[ -x "$RLS_SERVER" ] || { echo "$RLS_SERVER is missing: run make rls-server" >&2; exit 1; }

pids=()
# Processes whose exit ends the demo: all but the rate limit service, which
# may be stopped on purpose to see failure_mode.
watched=()
cleanup() {
  trap - EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo; echo "stopped Redis, the rate limit service, both gateways and the agents"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for port in 9101 9102 9103 9104 8081 $REDIS_PORT 10000 10001 9901 9902; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is already in use: stop what holds it (make run? another make run-global?) and retry" >&2
    exit 1
  fi
done

# Waits until $2 answers on 127.0.0.1, or says why not: $1 names the process
# (its pid is the last started), $3 its log.
wait_port() {
  local what=$1 port=$2 log=$3 pid=${pids[-1]}
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$what exited; its log ($log):" >&2; cat "$log" >&2; exit 1
    fi
    sleep 0.1
  done
  echo "$what did not listen on $port; its log ($log):" >&2; cat "$log" >&2; exit 1
}

# Counters live in Redis: nothing persisted, gone when it stops.
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$LOGS" >"$LOGS/redis.log" 2>&1 &
pids+=($!)
watched+=($!)
wait_port redis-server "$REDIS_PORT" "$LOGS/redis.log"

# --count-over-limit: token usage is counted even past the budget, as
# envoyproxy/ratelimit does (README.md, "Limits across replicas").
"$RLS_SERVER" --listen 127.0.0.1:8081 --redis "redis://127.0.0.1:$REDIS_PORT" \
  --limits envoy/ratelimit/limitador-limits.yaml --count-over-limit >"$LOGS/rls-server.log" 2>&1 &
pids+=($!)
rls_pid=$!
wait_port rls-server 8081 "$LOGS/rls-server.log"

"$AGENT" coordinator=127.0.0.1:9101 researcher=127.0.0.1:9102 llm=127.0.0.1:9103 tools=127.0.0.1:9104 \
  >"$LOGS/agents.log" 2>&1 &
pids+=($!)
watched+=($!)

# Replica 2: the same bootstrap on other ports.
sed -e 's/port_value: 10000/port_value: 10001/' -e 's/port_value: 9901/port_value: 9902/' \
  envoy/global-limits.yaml >"$LOGS/replica-2.yaml"
for replica in 1 2; do
  config=envoy/global-limits.yaml
  [ "$replica" = 2 ] && config=$LOGS/replica-2.yaml
  "$ENVOY" -c "$config" --concurrency 2 --disable-hot-restart \
    -l warning --component-log-level wasm:info >"$LOGS/envoy-$replica.log" 2>&1 &
  pids+=($!)
  watched+=($!)
  wait_port "Envoy replica $replica" "$((9900 + replica))" "$LOGS/envoy-$replica.log"
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$((9900 + replica))/ready" 2>/dev/null && break
    sleep 0.1
  done
done

cat <<'TXT'

agentroute with global limits: two gateway replicas, http://localhost:10000 and http://localhost:10001
(admin :9901, :9902), one rate limit service (tests/rls-server on 127.0.0.1:8081, counters in Redis :6390).
Limits (envoy/ratelimit/limitador-limits.yaml): prod/tools 3 a minute in total; prod/researcher 2 a minute
per x-api-key; models/llm a budget of 100 LLM tokens a minute per x-api-key.

Try:
  for p in 10000 10001 10000 10001 10000; do curl -s -o /dev/null -w "$p:%{http_code} " localhost:$p/prod/tools; done; echo
                                                               # one limit across both: 10000:200 10001:200 10000:200 10001:429 10000:429
  curl -si localhost:10001/prod/tools | grep -i -E '^(HTTP|retry-after|x-ratelimit)'   # 429 with the service's numbers
  for p in 10000 10001 10000; do curl -s -o /dev/null -w "$p:%{http_code} " -H 'x-api-key: alice' localhost:$p/prod/researcher; done; echo
                                                               # alice: 200 200 429, on either replica
  curl -s -o /dev/null -w '%{http_code}\n' -H 'x-api-key: bob' localhost:10001/prod/researcher   # bob has his own: 200
  curl -s localhost:10000/v1/chat/completions -H 'x-api-key: alice' -H 'content-type: application/json' \
       -d "{\"model\":\"gpt-demo\",\"input\":\"$(printf 'x%.0s' $(seq 1 400))\"}" | grep -o '"usage":{[^}]*}'
                                                               # ~105 tokens spent through replica 1 ...
  curl -s localhost:10001/v1/chat/completions -H 'x-api-key: alice' -H 'content-type: application/json' \
       -d '{"model":"gpt-demo"}'                               # ... so replica 2 refuses alice: 429 "tokens"
  sleep 1.5; curl -s localhost:9901/stats/prometheus | grep -E 'agentroute_ratelimit_(admitted|limited|service_failures)'
                                                               # after the filter's once-a-second flush of its counters

Stop the rate limit service to see failure_mode "allow" (requests pass, counted in
agentroute_ratelimit_service_failures_total):
TXT
echo "  kill $rls_pid"
echo
echo "Logs in $LOGS/ — Ctrl-C stops everything."
wait -n "${watched[@]}" || true
echo "a process exited; see $LOGS/" >&2
