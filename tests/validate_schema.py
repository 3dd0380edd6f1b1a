#!/usr/bin/env python3
"""Validate the shipped plugin configurations against schema/agentroute.schema.json.

Usage:
    python tests/validate_schema.py [PATH ...]

PATH is a file or directory (searched recursively for *.yaml / *.yml / *.json);
the defaults are the repository's `envoy` and `istio` directories. A plugin
configuration is what the filter is given: a WasmPlugin's
`spec.pluginConfig`, an EnvoyExtensionPolicy's `spec.wasm[].config`, or the
JSON in the `configuration` StringValue of Envoy's Wasm HTTP filter (in a
bootstrap or an ECDS resource). Each is validated with a JSON Schema
validator of its own (python-jsonschema, draft 2020-12): a second opinion
on the schema that `agentroute schema` generates from the contract types.

Before that, a self-test: the schema must accept a correct configuration and
refuse one with a misspelt field, a wrong enum value and a bad
`rate_limit.per`. The last line is `schema: N passed, M failed`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover - depends on the environment
    sys.stderr.write(
        f"validate_schema: missing Python module {e.name!r}; "
        "install the dependencies with: pip install pyyaml jsonschema\n"
    )
    sys.exit(2)

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schema" / "agentroute.schema.json"
DEFAULT_PATHS = [REPO / "envoy", REPO / "istio"]
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


def wasm_configs(node, where: str):
    """(where, config) for every Wasm filter's configuration below node."""
    if isinstance(node, dict):
        if node.get("@type") == WASM:
            conf = (node.get("config") or {}).get("configuration")
            if conf and conf.get("@type") == STRING_VALUE and conf.get("value", "").strip():
                yield where, json.loads(conf["value"])
            return
        for key, value in node.items():
            yield from wasm_configs(value, f"{where}.{key}" if where else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from wasm_configs(value, f"{where}[{i}]")


def configs(doc):
    """(where, config) for the plugin configurations in one YAML document."""
    if not isinstance(doc, dict):
        return
    kind = doc.get("kind")
    if kind == "WasmPlugin":
        if "pluginConfig" in (doc.get("spec") or {}):
            yield "spec.pluginConfig", doc["spec"]["pluginConfig"]
    elif kind == "EnvoyExtensionPolicy":
        for i, module in enumerate((doc.get("spec") or {}).get("wasm") or []):
            if "config" in module:
                yield f"spec.wasm[{i}].config", module["config"]
    else:
        yield from wasm_configs(doc, "")


def files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json"))
        else:
            out.append(p)
    return out


def describe(error) -> str:
    # `anyOf [X, null]` (an optional field) fails as a whole: name the cause.
    while error.context:
        causes = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        if not causes:
            break
        error = max(causes, key=lambda e: len(e.absolute_path))
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"{where.lstrip('.') or '(root)'}: {error.message}"


def errors(validator, config) -> list[str]:
    return [describe(e) for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path)))]


GOOD = {
    "layouts": ["kind", "namespaced"],
    "agents": [
        {
            "name": "a",
            "backend": "a",
            "timeout": "1m30s",
            "prefixes": [{"prefix": "/p", "rewrite": None}, {"prefix": "/q"}],
            "rate_limit": {"requests_per_second": 0.5, "per": "header:x-api-key"},
        }
    ],
}
BROKEN = {
    "a misspelt field (bakend)": {"agents": [{"name": "a", "bakend": "a"}]},
    "a misspelt top-level field": {"agent": []},
    "an unknown layout": {"layouts": ["flat"]},
    "a bad rate_limit.per": {"agents": [{"name": "a", "backend": "a", "rate_limit": {"per": "ip"}}]},
    "a bad timeout": {"agents": [{"name": "a", "backend": "a", "timeout": "30"}]},
    "an upper-case name": {"agents": [{"name": "A", "backend": "a"}]},
}


def self_test(validator) -> bool:
    ok = True
    found = errors(validator, GOOD)
    if found:
        ok = False
        print(f"self-test: FAIL a valid configuration was rejected: {found}")
    else:
        print("self-test: ok   a valid configuration passes")
    for what, config in BROKEN.items():
        found = errors(validator, config)
        if found:
            print(f"self-test: ok   {what} is rejected: {found[0]}")
        else:
            ok = False
            print(f"self-test: FAIL {what} was NOT rejected")
    return ok


def main(argv: list[str]) -> int:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    passed = failed = 0
    if not self_test(validator):
        failed += 1
    for path in files([Path(a) for a in argv] or DEFAULT_PATHS):
        shown = os.path.relpath(path)
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError, json.JSONDecodeError) as e:
            print(f"FAIL {shown}: cannot read: {' '.join(str(e).split())}")
            failed += 1
            continue
        for index, doc in enumerate(docs):
            try:
                found = list(configs(doc))
            except json.JSONDecodeError as e:
                print(f"FAIL {shown}[{index}]: configuration is not JSON: {e}")
                failed += 1
                continue
            for where, config in found:
                problems = errors(validator, config)
                if problems:
                    failed += 1
                    print(f"FAIL {shown}[{index}] {where}")
                    for p in problems:
                        print(f"       {p}")
                else:
                    passed += 1
                    print(f"ok   {shown}[{index}] {where}")
    print(f"schema: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
