// Runs a wasm32-wasip1 program (a `cargo test` harness) under Node's own
// WASI, so the unit tests also run where the filter runs: 32-bit usize, no
// threads, the Wasm allocator. Set as CARGO_TARGET_WASM32_WASIP1_RUNNER by
// `make unit-wasm`; cargo passes the .wasm file and the test arguments.
import { readFile } from "node:fs/promises";
import process from "node:process";
import { WASI } from "node:wasi";

const [wasmPath, ...args] = process.argv.slice(2);
if (!wasmPath) {
  console.error("usage: node wasi-run.mjs FILE.wasm [ARGS...]");
  process.exit(2);
}

const wasi = new WASI({
  version: "preview1",
  args: [wasmPath, ...args],
  env: process.env,
  // The current directory, for tests that read fixtures by relative path.
  preopens: { ".": process.cwd() },
  returnOnExit: true,
});

const module = await WebAssembly.compile(await readFile(wasmPath));
// The plugin's Proxy-Wasm imports (`env.proxy_*`) are linked into the test
// binary but no unit test may reach them: a call is a test bug, said so.
const imports = wasi.getImportObject();
for (const { module: from, name, kind } of WebAssembly.Module.imports(module)) {
  if (kind !== "function" || from.startsWith("wasi_")) continue;
  imports[from] ??= {};
  imports[from][name] = () => {
    throw new Error(`host function ${from}.${name} called outside a proxy`);
  };
}
const instance = await WebAssembly.instantiate(module, imports);
// The plugin exports `_initialize` too (proxy-wasm's entry point), which
// WASI refuses beside `_start`: the harness needs only `_start`.
const { _start, memory } = instance.exports;
let code;
try {
  code = wasi.start({ exports: { _start, memory } });
} catch (err) {
  // A Rust panic aborts: the Wasm `unreachable` trap lands here.
  console.error(`wasi-run: ${wasmPath} trapped: ${err}`);
  code = 101;
}
process.exit(code);
