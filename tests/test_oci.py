#!/usr/bin/env python3
"""Checks `scripts/oci.py`: the OCI layout it writes is reproducible, holds the
plugin byte for byte, is internally consistent, and a standard tool (skopeo)
reads it. Usage: tests/test_oci.py [WASM]"""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "oci.py")
results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}{'' if ok else ': ' + detail}")


def build(wasm, out, tag="test"):
    return subprocess.run([sys.executable, SCRIPT, wasm, out, "--tag", tag], capture_output=True, text=True)


def index_digest(out):
    with open(os.path.join(out, "index.json")) as f:
        return json.load(f)["manifests"][0]["digest"]


def blob(out, digest):
    with open(os.path.join(out, "blobs", "sha256", digest.split(":", 1)[1]), "rb") as f:
        return f.read()


def main():
    wasm = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dist", "agentroute.wasm")
    with open(wasm, "rb") as f:
        module = f.read()
    tmp = tempfile.mkdtemp()
    try:
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        ra, rb = build(wasm, a), build(wasm, b)
        check("builds", ra.returncode == 0 and rb.returncode == 0, ra.stderr + rb.stderr)
        check("reproducible digests", index_digest(a) == index_digest(b))
        check("prints the image digest", index_digest(a) in ra.stdout, ra.stdout)

        manifest = json.loads(blob(a, index_digest(a)))
        for desc in [manifest["config"]] + manifest["layers"]:
            data = blob(a, desc["digest"])
            ok = "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"] and len(data) == desc["size"]
            check(f"blob {desc['mediaType']} matches its descriptor", ok)
        check("one layer", len(manifest["layers"]) == 1)
        layer = gzip.decompress(blob(a, manifest["layers"][0]["digest"]))
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            names = tar.getnames()
            member = tar.extractfile("plugin.wasm") if names == ["plugin.wasm"] else None
            check("layer holds exactly plugin.wasm", names == ["plugin.wasm"], str(names))
            check("plugin.wasm is the module byte for byte", member is not None and member.read() == module)
        config = json.loads(blob(a, manifest["config"]["digest"]))
        diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
        check("config diff_id is the uncompressed layer", config["rootfs"]["diff_ids"] == [diff_id])

        bad = os.path.join(tmp, "bad.wasm")
        with open(bad, "wb") as f:
            f.write(b"not wasm")
        r = build(bad, os.path.join(tmp, "c"))
        check("non-wasm input exits 2 with a message", r.returncode == 2 and "not a WebAssembly" in r.stderr, r.stderr)
        r = build(os.path.join(tmp, "missing.wasm"), os.path.join(tmp, "d"))
        check("missing input exits 2 with a message", r.returncode == 2 and "cannot read" in r.stderr, r.stderr)

        if shutil.which("skopeo"):
            r = subprocess.run(["skopeo", "inspect", f"oci:{a}:test"], capture_output=True, text=True)
            ok = r.returncode == 0 and json.loads(r.stdout)["Digest"] == index_digest(a)
            check("skopeo inspect reads the image and its digest", ok, r.stderr)
            pulled = os.path.join(tmp, "pulled")
            r = subprocess.run(["skopeo", "copy", "-q", f"oci:{a}:test", f"dir:{pulled}"], capture_output=True, text=True)
            check("skopeo copy verifies and copies every blob", r.returncode == 0, r.stderr)
        else:
            print("skopeo not installed: skipped the standard-tool check (apt-get install skopeo)")
    finally:
        shutil.rmtree(tmp)
    print(f"oci: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
