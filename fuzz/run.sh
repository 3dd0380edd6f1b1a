#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each and prints the executions per
# target. Usage: fuzz/run.sh BIN_DIR SECONDS JOBS TARGET...
# Each target reads its committed seeds (seeds/T) and dictionary, grows a
# corpus in corpus/T (not committed) and saves a crashing input in
# artifacts/T/. Exits 1 when any target found a crash, a timeout or a leak
# of memory past the limit, after printing how to reproduce it.
set -uo pipefail
cd "$(dirname "$0")"
bin_dir=$1 seconds=$2 jobs=$3
shift 3
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

dict_of() {
  case $1 in
    usage|sse_lines|a2a_stream|anthropic_stream|gemini_stream|messages_stream) echo dict/sse.dict ;;
    model_body|a2a_chat) echo dict/model_body.dict ;;
    route|host) echo dict/route.dict ;;
    mcp_message|mcp_list) echo dict/mcp.dict ;;
    *) echo "dict/$1.dict" ;;
  esac
}

run_one() {
  local t=$1 dict args=()
  dict=$(dict_of "$t")
  [ -f "$dict" ] && args+=("-dict=$dict")
  mkdir -p "corpus/$t" "artifacts/$t"
  # -timeout: an input that takes seconds is a hang, reported as a crash.
  "$bin_dir/$t" "corpus/$t" "seeds/$t" "${args[@]}" \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" \
    >"$logs/$t.log" 2>&1
  echo $? >"$logs/$t.rc"
}

running=0
for t in "$@"; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz: no target binary $bin_dir/$t" >&2; exit 2; }
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n; running=$((running - 1)); fi
done
wait

failed=0 passed=0
printf '%-12s %12s %10s %8s\n' target executions exec/s corpus
for t in "$@"; do
  rc=$(cat "$logs/$t.rc")
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf '%-12s %12s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$corpus"
  if [ "$rc" != 0 ]; then
    failed=$((failed + 1))
    echo "---- $t FAILED (exit $rc):" >&2
    grep -v '^#[0-9]' "$logs/$t.log" | tail -40 >&2
    echo "reproduce: cd fuzz && cargo +nightly fuzz run -O -s none $t $(ls -t "artifacts/$t"/* 2>/dev/null | head -1)" >&2
  else
    passed=$((passed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" = 0 ]
