#!/usr/bin/env python3
"""Packs dist/agentroute.wasm as an OCI image layout on disk, for Istio's
WasmPlugin (`url: oci://...`) and Envoy Gateway's EnvoyExtensionPolicy
(`code.type: Image`). No registry and no Docker are needed to build it; push
it with a standard tool afterwards (skopeo, oras, crane).

The image is a plain OCI image with a single layer holding `plugin.wasm`:
the format both Istio's and Envoy Gateway's image fetchers accept (besides
the older Wasm-artifact media type, which only some registries serve).

The build is reproducible: fixed timestamps and owners, so the same wasm
always gives the same digests.

Usage: scripts/oci.py WASM OUT_DIR [--tag TAG]
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def fail(message: str) -> None:
    print(f"oci: {message}", file=sys.stderr)
    sys.exit(2)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(wasm: bytes) -> bytes:
    """A tar with one file, plugin.wasm, owned by root, dated 0."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime = len(wasm), 0o444, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return out.getvalue()


def build(wasm: bytes, out_dir: str, tag: str) -> dict:
    """Writes the layout and returns its digests."""
    if not wasm.startswith(b"\0asm"):
        fail("input is not a WebAssembly module (no \\0asm magic)")
    tar = layer_tar(wasm)
    layer = gzipped(tar)
    config = json.dumps(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
            "config": {},
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [
                {
                    "mediaType": LAYER,
                    "digest": sha256(layer),
                    "size": len(layer),
                    "annotations": {"org.opencontainers.image.title": "plugin.wasm"},
                }
            ],
            "annotations": {"org.opencontainers.image.title": "agentroute"},
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": sha256(manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }

    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    blobs = os.path.join(out_dir, "blobs", "sha256")
    os.makedirs(blobs)
    for blob in (layer, config, manifest):
        with open(os.path.join(blobs, sha256(blob).split(":", 1)[1]), "wb") as f:
            f.write(blob)
    with open(os.path.join(out_dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    return {"wasm": sha256(wasm), "manifest": sha256(manifest), "layer": sha256(layer)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wasm")
    parser.add_argument("out_dir")
    parser.add_argument("--tag", default="latest")
    args = parser.parse_args()
    try:
        with open(args.wasm, "rb") as f:
            wasm = f.read()
    except OSError as e:
        fail(f"cannot read {args.wasm}: {e.strerror} (run `make build` first)")
    digests = build(wasm, args.out_dir, args.tag)
    image = f"{args.out_dir}:{args.tag}"
    print(f"OCI image layout: {image}")
    print(f"  image digest   {digests['manifest']}")
    print(f"  plugin.wasm    {digests['wasm']}")
    print("Push it, then pin the image digest:")
    print(f"  skopeo copy oci:{image} docker://REGISTRY/agentroute:{args.tag}")
    print(f"  Istio WasmPlugin:            url: oci://REGISTRY/agentroute:{args.tag}")
    print(f"                               sha256: {digests['manifest'].split(':', 1)[1]}")
    print(f"  Envoy Gateway image source:  url: REGISTRY/agentroute:{args.tag}")
    print(f"                               sha256: {digests['manifest'].split(':', 1)[1]}")


if __name__ == "__main__":
    main()
