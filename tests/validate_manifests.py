#!/usr/bin/env python3
"""Validate the Kubernetes manifests the project ships against upstream CRD schemas.

Usage:
    python tests/validate_manifests.py [--crds DIR ...] [PATH ...]
    python tests/validate_manifests.py [--crds DIR ...] --self-test

PATH is a file or a directory (searched recursively for *.yaml / *.yml);
the defaults are the repository's `istio` and `envoy` directories. DIR
(repeatable) holds CustomResourceDefinitions: by default the upstream CRDs
in `<repo>/tests/crds` and the project's own schemas in
`<repo>/tests/schemas` (kinds no upstream CRD here covers, such as Istio's
AuthorizationPolicy, written by the project for the fields it ships).

Every YAML document with `apiVersion` and `kind` is a Kubernetes object. If a
CRD in DIR defines that group and kind, the whole object is validated against
the served version's `openAPIV3Schema` the way the API server would see it:

* the schema is a structural OpenAPI v3 schema, turned into JSON Schema
  (Draft 7): `nullable` allows null, `x-kubernetes-int-or-string` allows
  both, and an object that neither lists `additionalProperties` nor sets
  `x-kubernetes-preserve-unknown-fields` rejects fields it does not declare
  (the API server prunes them; `kubectl apply` rejects them under its default
  strict field validation), so a misspelt field is an error here too;
* `metadata` is checked as ObjectMeta (name, namespace, labels, annotations);
* formats int32/int64 are range-checked; CEL rules
  (`x-kubernetes-validations`) are NOT evaluated.

Documents without apiVersion/kind (Envoy bootstraps) are skipped silently;
Kubernetes objects of a kind no CRD in DIR defines (Service, Namespace, ...)
are listed as having no schema. A CRD directory that does not exist, or no
CRD at all, fails the run.

The last line is `manifests: N passed, M failed`; the exit status is 1 when
M > 0 (or a file cannot be read or parsed).

--self-test proves the validator rejects a broken object: it validates an
inline WasmPlugin with `failStrategy: FAIL_SOMETIMES` and one with a
misspelt field, both must be rejected, and a correct one must pass; the same
for the project's ClientTrafficPolicy schema and for the RequestAuthentication
and SecurityPolicy CRDs the identity manifests need (without them those would
be skipped, not validated).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        f"validate_manifests: missing Python module {e.name!r}; "
        "install the dependencies with: pip install pyyaml jsonschema\n"
    )
    sys.exit(2)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CRDS = [REPO / "tests" / "crds", REPO / "tests" / "schemas"]
DEFAULT_PATHS = [REPO / "istio", REPO / "envoy"]

# API groups served by Kubernetes itself (no CRD): "" is the core group.
BUILTIN_GROUPS = {
    "",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "apiregistration.k8s.io",
    "apps",
    "authentication.k8s.io",
    "authorization.k8s.io",
    "autoscaling",
    "batch",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "events.k8s.io",
    "flowcontrol.apiserver.k8s.io",
    "internal.apiserver.k8s.io",
    "networking.k8s.io",
    "node.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
    "storagemigration.k8s.io",
}

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

# What the API server accepts in metadata of any object (ObjectMeta).
OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": DNS1123_LABEL},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
        },
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
        "uid": {"type": "string"},
        "resourceVersion": {"type": "string"},
        "generation": {"type": "integer"},
        "creationTimestamp": {"type": ["string", "null"]},
        "deletionTimestamp": {"type": ["string", "null"]},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "managedFields": {"type": "array"},
        "selfLink": {"type": "string"},
    },
    "additionalProperties": False,
    "anyOf": [{"required": ["name"]}, {"required": ["generateName"]}],
}

# Keys of an OpenAPI schema that carry no validation for JSON Schema.
IGNORED_KEYS = {"description", "default", "example", "externalDocs", "nullable"}


def to_json_schema(node, structural: bool = True):
    """An OpenAPI v3 (Kubernetes structural) schema as a Draft 7 JSON Schema.

    `structural` is true along properties/items/additionalProperties, where
    unknown fields are pruned by the API server; false inside
    allOf/anyOf/oneOf/not, which only add constraints.
    """
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in IGNORED_KEYS or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub, True) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = to_json_schema(value, True) if isinstance(value, dict) else value
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub, False) for sub in value]
        elif key == "not":
            out[key] = to_json_schema(value, False)
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node and "type" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    is_object = node.get("type") == "object" or "properties" in node
    if (
        structural
        and is_object
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        if node.get("x-kubernetes-embedded-resource"):
            props = out.setdefault("properties", {})
            for name in ("apiVersion", "kind"):
                props.setdefault(name, {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        out["additionalProperties"] = False
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = list(out["enum"]) + [None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


def root_schema(openapi: dict) -> dict:
    """The schema of a whole object: the CRD's, plus apiVersion/kind/metadata."""
    schema = to_json_schema(copy.deepcopy(openapi), True)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = OBJECT_META
    schema.setdefault("type", "object")
    schema["additionalProperties"] = bool(openapi.get("x-kubernetes-preserve-unknown-fields"))
    return schema


def format_checker() -> "jsonschema.FormatChecker":
    checker = jsonschema.FormatChecker()

    def in_range(bits: int):
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

        def check(value) -> bool:
            if isinstance(value, bool) or not isinstance(value, int):
                return True  # the type keyword reports non-integers
            return low <= value <= high

        return check

    checker.checks("int32")(in_range(32))
    checker.checks("int64")(in_range(64))
    return checker


class Crds:
    """CRD schemas by (group, kind) and version, from one or more
    directories; a kind defined twice is taken from the first."""

    def __init__(self, directories: list[Path]):
        self.directory = ", ".join(str(d) for d in directories)
        self.schemas: dict[tuple[str, str], dict[str, dict]] = {}
        self.groups: set[str] = set()
        self.checker = format_checker()
        self._validators: dict[tuple[str, str, str], jsonschema.Draft7Validator] = {}
        files = sorted(
            p for d in directories for p in d.rglob("*") if p.suffix in (".yaml", ".yml", ".json")
        )
        for path in files:
            with path.open(encoding="utf-8") as f:
                docs = list(yaml.safe_load_all(f))
            for doc in docs:
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc.get("spec") or {}
                group, kind = spec.get("group", ""), (spec.get("names") or {}).get("kind", "")
                versions = {}
                for v in spec.get("versions") or []:
                    schema = ((v.get("schema") or {}).get("openAPIV3Schema")) or {}
                    versions[v["name"]] = {"schema": schema, "served": v.get("served", True)}
                self.schemas.setdefault((group, kind), versions)
                self.groups.add(group)

    def validator(self, group: str, version: str, kind: str):
        key = (group, version, kind)
        if key not in self._validators:
            schema = root_schema(self.schemas[(group, kind)][version]["schema"])
            self._validators[key] = jsonschema.Draft7Validator(schema, format_checker=self.checker)
        return self._validators[key]


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def json_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def describe(error) -> str:
    """One line for a jsonschema error, naming the deepest useful cause."""
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None and best.message != error.message:
            return f"{error.message}; closest alternative: {describe(best)}"
    if error.validator == "additionalProperties" and error.validator_value is False:
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return "unknown field(s): " + ", ".join(repr(e) for e in extra)
    return error.message


def validate_object(crds: Crds, obj: dict) -> tuple[str, list[str]]:
    """('ok' | 'skip' | 'fail', messages) for one Kubernetes object."""
    api_version, kind = str(obj.get("apiVersion")), str(obj.get("kind"))
    group, version = split_api_version(api_version)
    versions = crds.schemas.get((group, kind))
    if versions is None:
        if group in BUILTIN_GROUPS or "." not in group:
            return "skip", ["skipped (built-in kind)"]
        return "skip", [f"skipped (no CRD for {group}/{kind} in {crds.directory})"]
    if version not in versions:
        return "fail", [f"apiVersion: version {version!r} is not defined by the CRD (has: {', '.join(versions)})"]
    if not versions[version]["served"]:
        return "fail", [f"apiVersion: version {version!r} is not served by the CRD"]
    validator = crds.validator(group, version, kind)
    errors = sorted(validator.iter_errors(obj), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if not errors:
        return "ok", []
    return "fail", [f"at {json_path(e.absolute_path)}: {describe(e)}" for e in errors]


def label(obj: dict) -> str:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = meta.get("name") or meta.get("generateName") or "?"
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{name}"


def manifest_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in (".yaml", ".yml"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(p)
    return files


def display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def run(crds: Crds, paths: list[Path]) -> int:
    passed = failed = skipped = 0
    try:
        files = manifest_files(paths)
    except FileNotFoundError as e:
        print(f"error: no such file or directory: {e}")
        print("manifests: 0 passed, 1 failed")
        return 1
    for path in files:
        try:
            with path.open(encoding="utf-8") as f:
                docs = list(yaml.safe_load_all(f))
        except (OSError, yaml.YAMLError) as e:
            reason = " ".join(str(e).split())
            print(f"FAIL {display(path)}: cannot read YAML: {reason}")
            failed += 1
            continue
        for index, doc in enumerate(docs):
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                continue  # not a Kubernetes object (e.g. an Envoy bootstrap)
            where = f"{display(path)}[{index}] {label(doc)}"
            status, messages = validate_object(crds, doc)
            if status == "ok":
                passed += 1
                print(f"ok   {where}")
            elif status == "skip":
                skipped += 1
                print(f"skip {where}: {messages[0]}")
            else:
                failed += 1
                print(f"FAIL {where}")
                for m in messages:
                    print(f"       {m}")
    if skipped:
        print(f"manifests: {skipped} skipped (no CRD schema)")
    print("note: CEL rules (x-kubernetes-validations) are not evaluated")
    print(f"manifests: {passed} passed, {failed} failed")
    return 1 if failed else 0


SELF_TEST_GOOD = """
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: { name: selftest, namespace: istio-ingress }
spec:
  targetRefs: [ { group: gateway.networking.k8s.io, kind: Gateway, name: agents } ]
  url: oci://ghcr.io/agentroute/agentroute:0.1.0
  phase: STATS
  failStrategy: FAIL_CLOSE
  pluginConfig: { agents: [ { name: a, backend: a } ] }
"""

SELF_TEST_BROKEN = {
    "failStrategy: FAIL_SOMETIMES": ("failStrategy: FAIL_CLOSE", "failStrategy: FAIL_SOMETIMES"),
    "misspelt field failStrategyy": ("failStrategy: FAIL_CLOSE", "failStrategyy: FAIL_CLOSE"),
}


def self_test(crds: Crds) -> int:
    if ("extensions.istio.io", "WasmPlugin") not in crds.schemas:
        print(f"self-test: FAIL no WasmPlugin CRD in {crds.directory}")
        return 1
    ok = True
    status, messages = validate_object(crds, yaml.safe_load(SELF_TEST_GOOD))
    if status == "ok":
        print("self-test: ok   a valid WasmPlugin passes")
    else:
        ok = False
        print("self-test: FAIL a valid WasmPlugin was rejected:")
        for m in messages:
            print(f"       {m}")
    for what, (old, new) in SELF_TEST_BROKEN.items():
        broken = yaml.safe_load(SELF_TEST_GOOD.replace(old, new))
        status, messages = validate_object(crds, broken)
        if status == "fail":
            print(f"self-test: ok   a WasmPlugin with {what} is rejected: {messages[0]}")
        else:
            ok = False
            print(f"self-test: FAIL a WasmPlugin with {what} was NOT rejected")
    ok = self_test_vendored(crds) and ok
    ok = self_test_identity(crds) and ok
    print(f"self-test: {'passed' if ok else 'FAILED'}")
    return 0 if ok else 1


SELF_TEST_CTP = """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: { name: selftest, namespace: eg }
spec:
  targetRefs: [ { group: gateway.networking.k8s.io, kind: Gateway, name: agents } ]
  headers: { earlyRequestHeaders: { remove: [ x-agent-backend ] } }
"""


def self_test_vendored(crds: Crds) -> bool:
    """The project's schemas in tests/schemas are read too: a ClientTrafficPolicy
    passes, and one with a misspelt field does not."""
    if ("gateway.envoyproxy.io", "ClientTrafficPolicy") not in crds.schemas:
        print(f"self-test: FAIL no ClientTrafficPolicy CRD in {crds.directory} (tests/schemas has one)")
        return False
    good = validate_object(crds, yaml.safe_load(SELF_TEST_CTP))[0] == "ok"
    bad = validate_object(crds, yaml.safe_load(SELF_TEST_CTP.replace("earlyRequestHeaders", "earlyRequestHeader")))[0]
    print(f"self-test: {'ok  ' if good else 'FAIL'} a valid ClientTrafficPolicy passes")
    print(f"self-test: {'ok  ' if bad == 'fail' else 'FAIL'} a ClientTrafficPolicy with a misspelt field is rejected")
    return good and bad == "fail"


SELF_TEST_IDENTITY = {
    ("security.istio.io", "RequestAuthentication"): ("""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: selftest, namespace: istio-ingress }
spec:
  targetRefs: [ { group: gateway.networking.k8s.io, kind: Gateway, name: agents } ]
  jwtRules: [ { issuer: https://idp.example.com, jwksUri: https://idp.example.com/jwks.json, forwardOriginalToken: false } ]
""", "forwardOriginalToken"),
    ("gateway.envoyproxy.io", "SecurityPolicy"): ("""
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: { name: selftest, namespace: envoy-gateway }
spec:
  targetRefs: [ { group: gateway.networking.k8s.io, kind: Gateway, name: agents } ]
  jwt: { optional: true, providers: [ { name: idp, issuer: https://idp.example.com, remoteJWKS: { uri: https://idp.example.com/jwks.json } } ] }
""", "remoteJWKS"),
}


def self_test_identity(crds: Crds) -> bool:
    """The JWT verification the identity manifests wire (istio/identity,
    envoy/gateway/identity) is validated, not skipped: its upstream CRDs are
    in tests/crds, a valid object passes and one with a misspelt field does
    not."""
    ok = True
    for (group, kind), (text, field) in SELF_TEST_IDENTITY.items():
        if (group, kind) not in crds.schemas:
            print(f"self-test: FAIL no {kind} CRD in {crds.directory} (tests/crds has one)")
            ok = False
            continue
        good = validate_object(crds, yaml.safe_load(text))[0] == "ok"
        misspelt = text.replace(field, field + "s")
        bad = validate_object(crds, yaml.safe_load(misspelt))[0]
        print(f"self-test: {'ok  ' if good else 'FAIL'} a valid {kind} passes")
        print(f"self-test: {'ok  ' if bad == 'fail' else 'FAIL'} a {kind} with a misspelt field is rejected")
        ok = ok and good and bad == "fail"
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--crds", type=Path, action="append", help=f"CRD directory, repeatable (default: {DEFAULT_CRDS})"
    )
    parser.add_argument("--self-test", action="store_true", help="prove that a broken WasmPlugin is rejected")
    parser.add_argument("paths", nargs="*", type=Path, help="manifest files or directories (default: istio envoy)")
    args = parser.parse_args(argv)

    crd_dirs = [d.resolve() for d in (args.crds or DEFAULT_CRDS)]
    present = [d for d in crd_dirs if d.is_dir()]
    missing = sorted(set(crd_dirs) - set(present))
    for d in missing:
        print(f"error: CRD schemas not found at {d}")
    crds = Crds(present)
    if not crds.schemas:
        print(f"error: no CustomResourceDefinition in {crds.directory}")
    if missing or not crds.schemas:
        return 1
    if args.self_test:
        return self_test(crds)
    return run(crds, args.paths or DEFAULT_PATHS)


if __name__ == "__main__":
    sys.exit(main())
