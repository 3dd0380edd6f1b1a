#!/usr/bin/env python3
"""make bench: agentroute against the baselines a user compares it with, in one
run on one machine, as ratios (absolute numbers vary from machine to machine).

  A  plain Envoy proxying to the upstream (the floor)
  B  Envoy + a no-op Rust Proxy-Wasm filter (the cost of any Wasm filter)
  C  agentroute: routing + rewrite + timeout, N agents, first and last agent
  D  what a Gateway controller generates today: one Envoy route per agent
     with prefix_rewrite and timeout, N routes, first and last route
  E  agentroute with a rate-limited agent (bucket never empty) vs C
  F  OpenAI dispatch reading `model` from 1 KB / 64 KB bodies vs plain
     proxying of the same POST

The Envoy under test runs with --concurrency 1 on core 0; wrk and the upstream
(a direct-response Envoy) share core 1. Cases are interleaved in rounds so
machine drift shows as spread (min–max). The Envoy-under-test CPU column
says whether it was the bottleneck (near 100 %) and so whether the ratio
measures it.

Usage: bench/run.py [--quick]   (needs dist/agentroute.wasm, the no-op
filter built for wasm32-wasip1, .venv/bin/envoy and wrk: `make bench` does all)
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.environ.get("ENVOY_BIN", os.path.join(ROOT, ".venv/bin/envoy"))
AGENTROUTE = os.path.join(ROOT, "dist/agentroute.wasm")
NOOP = os.path.join(ROOT, "target/wasm32-wasip1/release/agentroute_bench_noop.wasm")
UPSTREAM_PORT = 19100
CONNECTIONS = 32
TICKS = os.sysconf("SC_CLK_TCK")

procs = []


def die(message):
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(1)


def pin(core):
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


# ---------------------------------------------------------------- configs


def cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}],
        },
    }


def bootstrap(port, routes, filters=(), clusters=()):
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
                        "http_filters": list(filters) + [{
                            "name": "envoy.filters.http.router",
                            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                        }],
                    },
                }]}],
            }],
            "clusters": list(clusters),
        },
    }


def wasm_filter(path, plugin_config=None, stop_iteration=False):
    config = {
        "root_id": "agentroute",
        "allow_on_headers_stop_iteration": stop_iteration,
        "vm_config": {"vm_id": "bench", "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": path}}},
    }
    if plugin_config is not None:
        config["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": json.dumps(plugin_config)}
    return {"name": "wasm", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": config}}


def agents(n, limited=False):
    out = [{"name": f"agent-{i}", "namespace": f"ns-{i % 100}", "backend": "upstream"} for i in range(n)]
    if limited:
        out[0]["rate_limit"] = {"requests_per_second": 1e9, "burst": 1000000000}
    return out


def agent_path(i):
    return f"/ns-{i % 100}/agent/agent-{i}/x"


UP = [cluster("upstream", UPSTREAM_PORT)]
TO_UPSTREAM = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s"}}]
BY_HEADER = [{"match": {"prefix": "/", "headers": [{"name": "x-agent-backend", "present_match": True}]},
              "route": {"cluster_header": "x-agent-backend", "timeout": "0s"}}]


def native_routes(n):
    return [{"match": {"prefix": f"/ns-{i % 100}/agent/agent-{i}/"},
             "route": {"cluster": "upstream", "prefix_rewrite": "/", "timeout": "120s"}} for i in range(n)]


def openai_config():
    return {"openai": {"model_from": "body"},
            "agents": [{"name": "llm", "namespace": "models", "kind": "modelapi", "backend": "upstream", "models": ["gpt-demo"]}]}


def chat_body(size):
    head = '{"model":"gpt-demo","messages":[{"role":"user","content":"'
    tail = '"}]}'
    return head + "x" * (size - len(head) - len(tail)) + tail


# ---------------------------------------------------------------- processes


def start_envoy(name, config, port, workdir, concurrency=1, core=0, wasm_log=False):
    path = os.path.join(workdir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    args = pin(core) + [ENVOY, "-c", path, "--concurrency", str(concurrency), "--disable-hot-restart",
                        "-l", "warning", "--component-log-level", "wasm:info" if wasm_log else "wasm:warning"]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(proc)
    proc.bench_name, proc.bench_log, proc.bench_port = name, log.name, port
    return proc


def wait_ready(proc, path="/", method="GET", body=None, timeout=60):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"{proc.bench_name}: Envoy exited ({proc.returncode}):\n{open(proc.bench_log).read()[-3000:]}")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{proc.bench_port}{path}", method=method,
                                         data=body.encode() if body else None,
                                         headers={"content-type": "application/json"} if body else {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
                last = r.status
        except Exception as e:  # not up yet, or a non-200 answer
            last = e
        time.sleep(0.2)
    die(f"{proc.bench_name}: no 200 for {method} {path} ({last}):\n{open(proc.bench_log).read()[-3000:]}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def wrk(proc, path, seconds, workdir, body=None):
    args = pin(1) + ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    if body is not None:
        script = os.path.join(workdir, f"post-{len(body)}.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["content-type"] = "application/json"\n'
                    f"wrk.body = {json.dumps(body)}\n")
        args += ["-s", script]
    args.append(f"http://127.0.0.1:{proc.bench_port}{path}")
    before, t0 = cpu_ticks(proc.pid), time.time()
    out = subprocess.run(args, capture_output=True, text=True, check=False)
    cpu = (cpu_ticks(proc.pid) - before) / TICKS / (time.time() - t0)
    if out.returncode != 0:
        die(f"wrk failed for {proc.bench_name}: {out.stderr}")
    text = out.stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    if bad or errors:
        die(f"{proc.bench_name} {path}: {bad.group(0) if bad else ''} {errors.group(0) if errors else ''}\n{text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    return rps, latency(text, "50%"), latency(text, "99%"), cpu


def latency(text, pct):
    m = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def stop_all():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    procs.clear()


# ---------------------------------------------------------------- the run


def cases(sizes, bodies):
    """(case, server, path, body) in the order each round visits them."""
    out = [("A plain Envoy", "A", "/x", None), ("B no-op Wasm", "B", "/x", None)]
    for n in sizes:
        for which, i in (("first", 0), ("last", n - 1)):
            out.append((f"C agentroute {n} {which}", f"C{n}", agent_path(i), None))
            out.append((f"D native routes {n} {which}", f"D{n}", agent_path(i), None))
    out.append(("E rate-limited", "E", agent_path(0), None))
    for size, label in bodies:
        out.append((f"F OpenAI body {label}", "F", "/v1/chat/completions", chat_body(size)))
        out.append((f"F plain POST {label}", "A", "/v1/chat/completions", chat_body(size)))
    return out


def memory_and_startup(sizes, workdir):
    rows = []
    for n in sizes:
        row = {"agents": n}
        for conc in (1, 2):
            name = f"mem{n}c{conc}"
            p = start_envoy(name, bootstrap(19300, BY_HEADER, [wasm_filter(AGENTROUTE, {"agents": agents(n)})], UP),
                            19300, workdir, concurrency=conc, wasm_log=True)
            wait_ready(p, agent_path(n - 1))
            time.sleep(0.5)
            row[f"rss{conc}"] = rss_kb(p.pid) / 1024
            log = open(p.bench_log).read()
            loads = [float(x) for x in re.findall(r"configured \d+ entries in ([\d.]+) ms", log)]
            vm = re.findall(r"VM memory ([\d.]+) MiB", log)
            row[f"load{conc}"] = max(loads) if loads else float("nan")
            row["vm_mib"] = float(vm[-1]) if vm else float("nan")
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
            procs.remove(p)
        row["per_vm"] = row["rss2"] - row["rss1"]
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="CI smoke: 1 round, 1 s runs, fewer sizes, no BENCHMARKS.md")
    args = parser.parse_args()
    rounds, seconds, sizes = (1, 1, [10, 10000]) if args.quick else (3, 5, [10, 1000, 10000])
    bodies = [(1024, "1KB"), (65536, "64KB")] + ([] if args.quick else [(1000000, "1MB")])
    for tool in ("wrk",):
        if not shutil.which(tool):
            die(f"{tool} not found (apt-get install {tool}; `make bench` installs it)")
    for path in (ENVOY, AGENTROUTE, NOOP):
        if not os.path.exists(path):
            die(f"{path} is missing (run `make bench`, which builds it)")

    workdir = tempfile.mkdtemp(prefix="agentroute-bench-")
    started = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        up = start_envoy("upstream", bootstrap(UPSTREAM_PORT, [{"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": {"inline_string": "ok"}}}]), UPSTREAM_PORT, workdir, core=1)
        wait_ready(up)
        servers = {"A": start_envoy("A", bootstrap(19200, TO_UPSTREAM, [], UP), 19200, workdir),
                   "B": start_envoy("B", bootstrap(19201, TO_UPSTREAM, [wasm_filter(NOOP)], UP), 19201, workdir)}
        port = 19210
        for n in sizes:
            servers[f"C{n}"] = start_envoy(f"C{n}", bootstrap(port, BY_HEADER, [wasm_filter(AGENTROUTE, {"agents": agents(n)})], UP), port, workdir)
            servers[f"D{n}"] = start_envoy(f"D{n}", bootstrap(port + 1, native_routes(n), [], UP), port + 1, workdir)
            port += 2
        servers["E"] = start_envoy("E", bootstrap(port, BY_HEADER, [wasm_filter(AGENTROUTE, {"agents": agents(10, limited=True)})], UP), port, workdir)
        servers["F"] = start_envoy("F", bootstrap(port + 1, BY_HEADER, [wasm_filter(AGENTROUTE, openai_config(), stop_iteration=True)], UP), port + 1, workdir)
        plan = cases(sizes, bodies)
        for _, server, path, body in plan:
            wait_ready(servers[server], path, "POST" if body else "GET", body)

        results = {name: [] for name, *_ in plan}
        for r in range(rounds):
            for name, server, path, body in plan:
                results[name].append(wrk(servers[server], path, seconds, workdir, body))
            print(f"round {r + 1}/{rounds} done ({time.time() - started:.0f} s)", file=sys.stderr)
        memory = memory_and_startup(sizes, workdir)
        extraction = model_extraction()
    finally:
        stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    report = render(results, memory, sizes, rounds, seconds, extraction)
    print(report)
    print(f"bench: finished in {time.time() - started:.0f} s", file=sys.stderr)
    if not args.quick:
        with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
            f.write(report)
        print("bench: wrote BENCHMARKS.md", file=sys.stderr)


def model_extraction():
    """The native cost of reading `model` vs building the whole JSON tree."""
    out = subprocess.run(["cargo", "run", "--release", "-q", "--example", "model_extraction", "-p", "agentroute"],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        die(f"model_extraction failed:\n{out.stderr}")
    return out.stdout.strip().splitlines()


def med(runs, i):
    return statistics.median(r[i] for r in runs)


def render(results, memory, sizes, rounds, seconds, extraction):
    rps = {name: med(runs, 0) for name, runs in results.items()}
    a = rps["A plain Envoy"]
    lines = [
        "| case | req/s (median) | min–max | p50 ms | p99 ms | Envoy CPU | vs A |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        lo, hi = min(r[0] for r in runs), max(r[0] for r in runs)
        lines.append(f"| {name} | {rps[name]:,.0f} | {lo:,.0f}–{hi:,.0f} | {med(runs, 1):.2f} | {med(runs, 2):.2f} "
                     f"| {med(runs, 3) * 100:.0f} % | {rps[name] / a:.2f} |")

    def ratio(x, y):
        return rps[x] / rps[y]

    big, small = max(sizes), min(sizes)
    targets = [
        (f"C({small}) ≥ 0.85 × A", ratio(f"C agentroute {small} first", "A plain Envoy"), 0.85),
        (f"C({small}) ≥ 0.95 × B", ratio(f"C agentroute {small} first", "B no-op Wasm"), 0.95),
        (f"C({big}) ≥ 0.95 × C({small})", ratio(f"C agentroute {big} last", f"C agentroute {small} first"), 0.95),
        (f"C({big}, last) ≥ 5 × D({big}, last)", ratio(f"C agentroute {big} last", f"D native routes {big} last"), 5.0),
        (f"E ≥ 0.95 × C({small})", ratio("E rate-limited", f"C agentroute {small} first"), 0.95),
        ("F(1KB) ≥ 0.8 × plain POST 1KB", ratio("F OpenAI body 1KB", "F plain POST 1KB"), 0.8),
    ]
    vs = ["", "| N | C first / D first | C last / D last |", "|---:|---:|---:|"]
    for n in sizes:
        vs.append(f"| {n} | {ratio(f'C agentroute {n} first', f'D native routes {n} first'):.2f} "
                  f"| {ratio(f'C agentroute {n} last', f'D native routes {n} last'):.2f} |")
    mem = ["", "| agents | config load per VM | VM memory | Envoy RSS, 1 worker | 2 workers | per extra VM |",
           "|---:|---:|---:|---:|---:|---:|"]
    for m in memory:
        mem.append(f"| {m['agents']} | {max(m['load1'], m['load2']):.1f} ms | {m['vm_mib']:.1f} MiB | {m['rss1']:.0f} MiB "
                   f"| {m['rss2']:.0f} MiB | {m['per_vm']:.1f} MiB |")
    size_kb = os.path.getsize(AGENTROUTE) / 1024
    big_mem = next(m for m in memory if m["agents"] == big)
    targets += [
        (f"config with {big} agents loads in ≤ 200 ms per VM", 200 / max(big_mem["load1"], big_mem["load2"]), 1.0),
        (f"≤ 32 MB per VM with {big} agents (VM memory {big_mem['vm_mib']:.1f} MiB, RSS +{big_mem['per_vm']:.1f} MiB)",
         32 / max(big_mem["vm_mib"], big_mem["per_vm"]), 1.0),
        (f".wasm ≤ 600 KB ({size_kb:.0f} KB)", 600 / size_kb, 1.0),
    ]
    tgt = ["", "| target | measured | holds |", "|---|---:|:---:|"]
    for label, value, need in targets:
        shown = f"{value:.2f}" if need != 1.0 else "—"
        tgt.append(f"| {label} | {shown} | {'✅' if value >= need else '❌'} |")
    machine = describe_machine()
    return "\n".join([
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.date.today().isoformat()}: {machine}.",
        f"{rounds} interleaved round(s) of {seconds} s per case; wrk -t1 -c{CONNECTIONS} on core 1 with the",
        "direct-response upstream; the Envoy under test with --concurrency 1 on core 0. Ratios are what",
        "carries over to other machines; absolute numbers do not.",
        "",
        "## Throughput and latency",
        "",
        *lines,
        "",
        "## agentroute (C) vs one Envoy route per agent (D)",
        *vs,
        "",
        "## Memory and start-up",
        *mem,
        "",
        "## Reading `model` from a body (native, same run; the model last in the body)",
        "",
        *extraction,
        "",
        "## Targets",
        *tgt,
        "",
    ])


def describe_machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    version = subprocess.run([ENVOY, "--version"], capture_output=True, text=True).stdout
    v = re.search(r"/(\d+\.\d+\.\d+)/", version)
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Envoy {v.group(1) if v else '?'}"


if __name__ == "__main__":
    main()
