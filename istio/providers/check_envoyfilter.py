#!/usr/bin/env python3
"""Check envoyfilter-credentials.yaml's Envoy configuration with real Envoys.

Usage: python istio/providers/check_envoyfilter.py ENVOY [ENVOY ...]

No Istio here, so this does what Istio would do with the EnvoyFilter, for
each of its CLUSTER patches: a cluster shaped like Istio's for the
ServiceEntry's host (`outbound|443||<host>`, DNS, TLS origination), the
patch's `typed_extension_protocol_options` MERGEd into it (Istio replaces
the map entry whole), in a minimal bootstrap; the SDS files of
provider-keys.yaml written to a scratch directory laid out the way the
kubelet lays out a Secret volume (`..data` symlink). Then, per Envoy:

1. `envoy --mode validate` on that bootstrap;
2. the same clusters pointed at a local plain-HTTP echo server, Envoy run:
   a request routed to each cluster must reach it with the provider's
   header set from the file (the client's value overwritten) and the
   provider's Host; then the key is rotated as the kubelet does (new
   directory, `..data` swapped by rename) and the next request must carry
   the new key, without a restart.

Exit status 0 when every step passes on every Envoy given.
"""

import copy
import http.server
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml

HERE = pathlib.Path(__file__).resolve().parent
MOUNT = "/etc/agentroute/provider-keys"
HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_volume(root: pathlib.Path) -> tuple[pathlib.Path, dict[str, str]]:
    """provider-keys.yaml's files, as a Secret volume: <dir>/..v1/<file>,
    ..data -> ..v1, <file> -> ..data/<file>; and each SDS secret's value."""
    secret = yaml.safe_load((HERE / "provider-keys.yaml").read_text())
    vol = root / "provider-keys"
    (vol / "..v1").mkdir(parents=True)
    values = {}
    for name, text in secret["stringData"].items():
        (vol / "..v1" / name).write_text(text)
        os.symlink(f"..data/{name}", vol / name)
        for res in yaml.safe_load(text)["resources"]:
            values[res["name"]] = res["generic_secret"]["secret"]["inline_string"]
    os.symlink("..v1", vol / "..data")
    return vol, values


def rotate(vol: pathlib.Path, old: str, new: str) -> None:
    (vol / "..v2").mkdir()
    for f in (vol / "..v1").iterdir():
        (vol / "..v2" / f.name).write_text(f.read_text().replace(old, new))
    os.symlink("..v2", vol / "..data_tmp")
    os.rename(vol / "..data_tmp", vol / "..data")


def bootstrap(vol: pathlib.Path, echo_port: int | None, listen_port: int) -> tuple[dict, list[tuple[str, str, str, str]]]:
    ef = yaml.safe_load((HERE / "envoyfilter-credentials.yaml").read_text())
    clusters, routes, cases = [], [], []
    for patch in ef["spec"]["configPatches"]:
        assert patch["applyTo"] == "CLUSTER" and patch["patch"]["operation"] == "MERGE", patch
        host = patch["match"]["cluster"]["service"]
        port = patch["match"]["cluster"]["portNumber"]
        name = f"outbound|{port}||{host}"
        value = json.loads(json.dumps(copy.deepcopy(patch["patch"]["value"])).replace(MOUNT, str(vol)))
        filters = value["typed_extension_protocol_options"][HPO]["http_filters"]
        assert filters[-1]["name"] == "envoy.filters.http.upstream_codec", f"{name}: the codec must be last"
        generic = filters[0]["typed_config"]["credential"]["typed_config"]
        header, sds_name = generic["header"], generic["credential"]["name"]
        if echo_port is None:  # as Istio builds it
            address = {"address": host, "port_value": port}
            cluster = {
                "type": "STRICT_DNS",
                "dns_lookup_family": "V4_ONLY",
                "transport_socket": {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": host,
                        "common_tls_context": {"validation_context": {"trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}},
                    },
                },
            }
        else:
            address = {"address": "127.0.0.1", "port_value": echo_port}
            cluster = {"type": "STATIC"}
        cluster.update(
            name=name,
            connect_timeout="1s",
            load_assignment={"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": address}}}]}]},
        )
        cluster.update(value)
        clusters.append(cluster)
        routes.append(
            {
                "match": {"prefix": "/", "headers": [{"name": "x-agent-backend", "string_match": {"exact": name}}]},
                "route": {"cluster": name, "host_rewrite_literal": host},
            }
        )
        cases.append((name, host, header, sds_name))
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "check",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
        ],
    }
    boot = {
        # Istio always sets the node; SDS from a file needs it.
        "node": {"id": "router~10.0.0.1~agents-istio.istio-ingress~istio-ingress.svc.cluster.local", "cluster": "agents-istio.istio-ingress"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "check",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
                }
            ],
            "clusters": clusters,
        },
    }
    return boot, cases


class Echo(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def ask(port: int, cluster: str) -> dict:
    client = {"x-api-key": "client", "x-goog-api-key": "client", "authorization": "Bearer client"}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages", data=b"{}", headers={"x-agent-backend": cluster, **client})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def check(envoy: str) -> bool:
    ok = True
    out = subprocess.run([envoy, "--version"], capture_output=True, text=True).stdout
    version = re.search(r"version: \S+?/(\d+\.\d+\.\d+)/", out)
    print(f"== Envoy {version.group(1) if version else '?'} ({envoy})")
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        vol, values = key_volume(root)
        boot, _ = bootstrap(vol, None, 0)
        (root / "validate.yaml").write_text(yaml.safe_dump(boot, sort_keys=False))
        r = subprocess.run([envoy, "--mode", "validate", "-l", "error", "-c", str(root / "validate.yaml")], capture_output=True, text=True)
        said = (r.stdout + r.stderr).strip().splitlines()[-1]
        print(f"{'ok  ' if r.returncode == 0 else 'FAIL'} envoy --mode validate: {said[:400]}")
        if r.returncode != 0:
            return False

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        listen = free_port()
        boot, cases = bootstrap(vol, server.server_address[1], listen)
        (root / "live.yaml").write_text(yaml.safe_dump(boot, sort_keys=False))
        proc = subprocess.Popen(
            [envoy, "-c", str(root / "live.yaml"), "-l", "error", "--base-id", str(listen)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", listen), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            for cluster, host, header, sds_name in cases:
                seen = ask(listen, cluster)
                want = values[sds_name]
                good = seen.get(header) == want and seen.get("host") == host
                print(f"{'ok  ' if good else 'FAIL'} {cluster}: {header}={seen.get(header)!r} host={seen.get('host')!r}")
                ok &= good
            cluster, host, header, sds_name = cases[0]
            old = values[sds_name]
            rotate(vol, old, "rotated-key")
            for _ in range(50):
                seen = ask(listen, cluster)
                if seen.get(header) != old:
                    break
                time.sleep(0.1)
            good = seen.get(header) == "rotated-key"
            print(f"{'ok  ' if good else 'FAIL'} {cluster} after the key's rotation: {header}={seen.get(header)!r}")
            ok &= good
        finally:
            proc.terminate()
            proc.wait()
            server.shutdown()
    return ok


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.split("\n\n")[1])
        return 2
    results = [check(e) for e in sys.argv[1:]]
    print("envoyfilter-credentials.yaml:", "passed" if all(results) else "FAILED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
