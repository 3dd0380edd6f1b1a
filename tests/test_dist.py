#!/usr/bin/env python3
"""The release bundle as a user gets it (`make dist-test`): unpacked on a
clean path away from the repository, its checksums hold, its manifests name
the image and its digest, its CLI checks the example configuration, and the
local quick start works from it: Envoy with the bundle's agentroute.wasm and
its envoy/demo.yaml routes a request to an agent.

Usage: tests/test_dist.py dist/agentroute-VERSION.tar.gz --envoy ENVOY
"""

import argparse
import gzip
import hashlib
import http.server
import io
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request

failures = []


def check(ok: bool, what: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent(http.server.BaseHTTPRequestHandler):
    """A stand-in agent: answers what it was sent, as JSON."""

    def do_GET(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = json.dumps({"path": self.path, "headers": headers}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


def elf_machine(path: str) -> int:
    """ELF e_machine: 62 x86-64, 183 AArch64."""
    with open(path, "rb") as f:
        head = f.read(20)
    check(head[:4] == b"\x7fELF", f"{path} is an ELF binary")
    return int.from_bytes(head[18:20], "little")


def run(cmd, cwd):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tarball")
    parser.add_argument("--envoy", required=True)
    args = parser.parse_args()
    envoy = os.path.abspath(args.envoy)
    started = time.monotonic()
    name = re.sub(r"\.tar\.gz$", "", os.path.basename(args.tarball))
    version = name.removeprefix("agentroute-")

    with tempfile.TemporaryDirectory(prefix="agentroute dist ") as tmp:
        with tarfile.open(args.tarball) as tar:
            tar.extractall(tmp, filter="data")
        bundle = os.path.join(tmp, name)
        check(os.listdir(tmp) == [name], f"the tarball holds {name}/ alone")

        # Checksums: every file, and the plugin's own.
        sums = run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], bundle)
        check(sums.returncode == 0, f"SHA256SUMS holds {sums.stdout}{sums.stderr}")
        listed = {l.split("  ", 1)[1] for l in open(os.path.join(bundle, "SHA256SUMS")).read().splitlines()}
        on_disk = {
            os.path.relpath(os.path.join(b, f), bundle)
            for b, _, fs in os.walk(bundle)
            for f in fs
            if f != "SHA256SUMS"
        }
        check(listed == on_disk, "SHA256SUMS lists every file")
        wasm = os.path.join(bundle, "agentroute.wasm")
        wasm_hex = sha256(wasm)
        check(
            open(wasm + ".sha256").read() == f"{wasm_hex}  agentroute.wasm\n",
            "agentroute.wasm.sha256 is the module's SHA-256",
        )

        # The OCI image: a layout whose one manifest is the digest named.
        digest = open(os.path.join(bundle, "oci", "image.digest")).read().strip()
        with tarfile.open(os.path.join(bundle, "oci", f"{name}.oci.tar")) as oci:
            index = json.load(oci.extractfile("index.json"))
            names = oci.getnames()
            manifest = oci.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}").read()
            layer = json.loads(manifest)["layers"][0]["digest"]
            blob = oci.extractfile(f"blobs/sha256/{layer.split(':', 1)[1]}").read()
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as files:
            plugin = files.extractfile("plugin.wasm").read()
        check(hashlib.sha256(plugin).hexdigest() == wasm_hex, "the image's plugin.wasm is agentroute.wasm")
        check("oci-layout" in names, "the OCI tar is an image layout")
        check(index["manifests"][0]["digest"] == digest, f"oci/image.digest is the image's ({digest})")
        check(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == version,
            f"the image is tagged {version}",
        )
        check(hashlib.sha256(manifest).hexdigest() == digest.split(":", 1)[1], "the manifest blob is whole")
        check(f"blobs/sha256/{layer.split(':', 1)[1]}" in names, "the layer is in the archive")

        # Manifests: the image named with this version and pinned.
        hexd = digest.split(":", 1)[1]
        for rel in (
            "istio/wasmplugin.yaml",
            "istio/identity/wasmplugin.yaml",
            "istio/global-limits/wasmplugin.yaml",
            "istio/large/wasmplugin.yaml",
            "istio/body-mode/envoyfilter-agentroute.yaml",
            "envoy/gateway/extensionpolicy.yaml",
            "envoy/gateway/identity/extensionpolicy.yaml",
            "envoy/gateway/large/extensionpolicy.yaml",
        ):
            text = open(os.path.join(bundle, rel)).read()
            check(
                f"agentroute:{version}" in text and re.search(rf'^\s*sha256: "?{hexd}"?', text, re.M),
                f"{rel} names the image :{version} and pins sha256 {hexd[:12]}...",
            )
        for rel in ("envoy/demo.yaml", "envoy/ecds/agentroute.yaml"):
            text = open(os.path.join(bundle, rel)).read()
            check(
                "filename: agentroute.wasm" in text and "dist/agentroute.wasm" not in text.split("#")[0],
                f"{rel} reads the bundle's agentroute.wasm",
            )

        # The filled manifests still validate against the CRDs.
        validator = os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate_manifests.py")
        r = run([sys.executable, validator, "istio", "envoy"], bundle)
        check(r.returncode == 0, f"the bundle's manifests validate against the CRDs: {r.stdout.strip().splitlines()[-1:]}")

        # The CLI per architecture.
        machines = {"x86_64": 62, "aarch64": 183}
        clis = sorted(os.listdir(os.path.join(bundle, "bin")))
        for d in clis:
            arch = d.removeprefix("linux-")
            check(elf_machine(os.path.join(bundle, "bin", d, "agentroute")) == machines.get(arch), f"bin/{d}/agentroute is for {arch}")
        readme = open(os.path.join(bundle, "README.md")).read()
        for arch in machines:
            if f"linux-{arch}" not in clis:
                check(f"No `agentroute` for Linux {arch}" in readme, f"the README says why there is no CLI for {arch}")
        cli = os.path.join(bundle, "bin", f"linux-{platform.machine()}", "agentroute")
        check(os.access(cli, os.X_OK), f"a CLI for this machine ({platform.machine()})")

        # The quick start, from the bundle's directory.
        r = run([cli, "check", "envoy/demo.yaml"], bundle)
        check(r.returncode == 0 and "envoy/demo.yaml" in r.stdout, f"agentroute check envoy/demo.yaml: {r.stdout.strip()[:200]} {r.stderr.strip()[:400]}")
        r = run([cli, "check", "istio/wasmplugin.yaml", "istio/gateway.yaml", "istio/httproutes.yaml"], bundle)
        check(r.returncode == 0, f"agentroute check on the filled Istio manifests: {r.stderr.strip()[:400]}")

        agent = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Agent)
        threading.Thread(target=agent.serve_forever, daemon=True).start()
        gateway, admin = free_port(), free_port()
        config = open(os.path.join(bundle, "envoy/demo.yaml")).read()
        # The same configuration on ports free here, the coordinator on the
        # stand-in (make run's agents sit on fixed ports).
        config = config.replace("port_value: 10000", f"port_value: {gateway}")
        config = config.replace("port_value: 9901", f"port_value: {admin}")
        # coordinator and its canary (coordinator-next) on the stand-in
        for port in (9101, 9107):
            config = config.replace(f"port_value: {port}", f"port_value: {agent.server_address[1]}")
        demo = os.path.join(tmp, "demo-here.yaml")
        with open(demo, "w") as f:
            f.write(config)
        log = open(os.path.join(tmp, "envoy.log"), "w")
        proc = subprocess.Popen(
            [envoy, "-c", demo, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"],
            cwd=bundle,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 20
            ready = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    ready = urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1).status == 200
                except OSError:
                    pass
                if ready:
                    break
                time.sleep(0.1)
            check(ready, "Envoy started with the bundle's plugin and envoy/demo.yaml")
            if ready:
                with urllib.request.urlopen(f"http://127.0.0.1:{gateway}/prod/agent/coordinator/hello?x=1", timeout=5) as resp:
                    status, body = resp.status, json.loads(resp.read())
                backend = body["headers"].get("x-agent-backend")
                check(
                    status == 200
                    and body["path"] == "/hello?x=1"
                    and backend in ("coordinator", "coordinator-next"),
                    f"curl localhost/prod/agent/coordinator/hello?x=1: routed to {backend} as {body['path']} ({status})",
                )
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{gateway}/prod/agent/nobody/x", timeout=5)
                    check(False, "an unknown agent is refused")
                except urllib.error.HTTPError as e:
                    check(e.code == 404, f"an unknown agent: {e.code} from the filter")
        finally:
            proc.terminate()
            proc.wait(10)
            agent.shutdown()
            log.close()
            if failures:
                print(open(os.path.join(tmp, "envoy.log")).read()[-3000:], file=sys.stderr)

    took = time.monotonic() - started
    print(f"dist: {len(failures)} failed, in {took:.1f} s")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
