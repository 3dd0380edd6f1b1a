#!/usr/bin/env python3
"""The documentation cannot go stale: `make docs-test`.

1. Every ```console block of README.md and the book (docs/src/) is run and
   its output compared. A line starting `$ ` is a command; the lines after
   it, up to the next `$ ` or the end of the block, are what it prints
   (stdout and stderr together). Commands run with bash in a scratch
   directory holding the repository's example files, with the built
   `agentroute` first on PATH. Placeholders: `...` alone on a line matches
   any number of lines (none too); `...` inside a line matches any run of
   characters on that line.
2. Self-test: the checker, run on a copy of a page with one expected output
   line changed, must fail.
3. The configuration reference (docs/src/reference/index.md) is what
   `agentroute schema --markdown` writes now, and every field of the JSON
   Schema (walked here, independently of the CLI's walk) has its entry.
4. Every error `code` the filter's sources give a local reply is listed in
   docs/src/troubleshooting.md.
5. The book builds with mdBook, and every relative link and #anchor of the
   built HTML resolves; so does every relative link of README.md.

usage: docs_test.py --agentroute PATH --mdbook PATH [--skip-book]
"""

import argparse
import glob
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SRC = os.path.join(DOCS, "src")
# What the examples may read, linked into the scratch directory.
EXAMPLE_FILES = ["istio", "envoy", "schema", "dashboards", "cli"]

results = {"passed": 0, "failed": 0}


def ok(name):
    results["passed"] += 1
    print(f"ok       {name}")


def fail(name, why):
    results["failed"] += 1
    print(f"FAILED   {name}\n{why}")


def pages():
    """README.md and every page of the book, relative to ROOT."""
    found = ["README.md"]
    for path in sorted(glob.glob(os.path.join(SRC, "**", "*.md"), recursive=True)):
        found.append(os.path.relpath(path, ROOT))
    return found


# --- 1. console examples -----------------------------------------------------


def examples(text):
    """(line number, command, expected lines) of every ```console block."""
    out = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            block = []
            i += 1
            start = i
            while i < len(lines) and not lines[i].startswith("```"):
                block.append((i + 1, lines[i]))
                i += 1
            command = None
            for number, line in block:
                if line.startswith("$ "):
                    if command:
                        out.append(command)
                    command = (number, line[2:], [])
                elif command:
                    command[2].append(line)
                else:
                    out.append((number, None, [line]))  # output without a command
            if command:
                out.append(command)
            del start
        i += 1
    return out


def matches(expected, actual):
    """Whether actual output (a list of lines) fits the expected lines."""
    pattern = ""
    for line in expected:
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            parts = [re.escape(p) for p in line.rstrip().split("...")]
            pattern += "[^\n]*".join(parts) + "\n"
    text = "".join(line.rstrip() + "\n" for line in actual)
    return re.fullmatch(pattern, text) is not None


def scratch():
    directory = tempfile.mkdtemp(prefix="agentroute-docs-")
    for name in EXAMPLE_FILES:
        os.symlink(os.path.join(ROOT, name), os.path.join(directory, name))
    return directory


def run_examples(page_path, label, bin_dir):
    """Runs a page's examples: the number run, and the failures."""
    text = open(page_path, encoding="utf-8").read()
    found = examples(text)
    failures = []
    if not found:
        return 0, failures
    work = scratch()
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    env.pop("NO_COLOR", None)
    try:
        for number, command, expected in found:
            if command is None:
                failures.append(f"{label}:{number}: output in a console block without a `$ ` command")
                continue
            run = subprocess.run(
                ["bash", "-c", command],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=60,
            )
            actual = run.stdout.rstrip("\n").split("\n") if run.stdout else []
            while expected and expected[-1].strip() == "":
                expected = expected[:-1]
            if not matches(expected, actual):
                diff = "\n".join(
                    ["  expected:"] + ["    " + l for l in expected] + ["  got:"] + ["    " + l for l in actual]
                )
                failures.append(f"{label}:{number}: $ {command}\n{diff}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return len(found), failures


def test_examples(bin_dir):
    total = 0
    for page in pages():
        count, failures = run_examples(os.path.join(ROOT, page), page, bin_dir)
        total += count
        if failures:
            fail(f"examples of {page}", "\n".join(failures))
        elif count:
            ok(f"examples of {page} ({count})")
    print(f"         {total} console examples run")
    return total


def test_self(bin_dir):
    """An edited expected output must fail."""
    for page in pages():
        text = open(os.path.join(ROOT, page), encoding="utf-8").read()
        found = [e for e in examples(text) if e[1] and any(l.strip() and l.strip() != "..." for l in e[2])]
        if not found:
            continue
        line = next(l for l in found[0][2] if l.strip() and l.strip() != "...")
        edited = text.replace(line, line.replace("o", "0", 1) + " (edited)", 1)
        with tempfile.TemporaryDirectory() as directory:
            copy = os.path.join(directory, "page.md")
            open(copy, "w", encoding="utf-8").write(edited)
            _, failures = run_examples(copy, "page.md", bin_dir)
        if failures:
            ok(f"self-test: an edited output of {page} fails")
        else:
            fail("self-test", f"an edited output of {page} ({line!r}) did not fail")
        return
    fail("self-test", "no console example with output to edit")


# --- 3. the configuration reference ------------------------------------------


def schema_paths(schema):
    """Every field path of the schema: `[]` an array's items, `.*` a map's values."""
    defs = schema.get("$defs", {})

    def resolve(s):
        seen = None
        while True:
            if "$ref" in s:
                seen = s["$ref"].split("/")[-1]
                s = defs[seen]
                continue
            alternatives = [a for a in s.get("anyOf", []) if a.get("type") != "null"]
            if "anyOf" in s and len(alternatives) == 1:
                s = alternatives[0]
                continue
            return s, seen

    paths = []

    def below(s, path, stack):
        for name, prop in s.get("properties", {}).items():
            field(prop, f"{path}.{name}" if path else name, stack)
        if "items" in s:
            item, seen = resolve(s["items"])
            if seen is None or seen not in stack:
                below(item, path + "[]", stack + [seen])
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            value, seen = resolve(extra)
            if "properties" in value or "items" in value:
                field(extra, path + ".*", stack)

    def field(prop, path, stack):
        paths.append(path)
        target, seen = resolve(prop)
        if seen is not None and seen in stack:
            return
        below(target, path, stack + [seen])

    below(schema, "", [])
    return paths


def test_reference(agentroute):
    generated = subprocess.run([agentroute, "schema", "--markdown"], stdout=subprocess.PIPE, text=True, check=True).stdout
    committed_path = os.path.join(SRC, "reference", "index.md")
    committed = open(committed_path, encoding="utf-8").read()
    if generated != committed:
        fail("reference is current", "docs/src/reference/index.md differs from `agentroute schema --markdown`: run make docs")
    else:
        ok("reference is current")
    schema = json.loads(subprocess.run([agentroute, "schema"], stdout=subprocess.PIPE, text=True, check=True).stdout)
    paths = schema_paths(schema)
    headings = set(re.findall(r"^## `+ ?(.*?) ?`+$", committed, re.M))
    missing = [p for p in paths if p not in headings]
    if missing or not paths:
        fail("every schema field has its entry", "no entry for: " + ", ".join(missing))
    else:
        ok(f"every schema field has its entry ({len(paths)} fields)")


# --- 4. troubleshooting lists every error code -------------------------------

ERROR_TYPES = r'"(invalid_request_error|server_error|permission_error|authentication_error|rate_limit_error|api_error|not_found_error)"'


def error_codes():
    """Error codes the filter's (non-test) sources give local replies."""
    found = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "filter", "src", "**", "*.rs"), recursive=True)):
        text = open(path, encoding="utf-8").read().split("#[cfg(test)]")[0]
        lines = text.split("\n")
        rel = os.path.relpath(path, ROOT)
        for i, line in enumerate(lines):
            if "LocalReply::error(" in line:
                call = "\n".join(lines[i : i + 6])
                m = re.search(r"LocalReply::error\(\s*[^,]+,\s*[^,]+,\s*Some\(\"([a-z]+(?:_[a-z]+)*)\"\)", call)
                if m:
                    found.setdefault(m.group(1), rel)
            m = re.search(ERROR_TYPES, line)
            if m:
                rest = line[m.end() :] + "\n" + "\n".join(lines[i + 1 : i + 3])
                c = re.search(r'"([a-z]+(?:_[a-z]+)+)"', rest)
                if c and not c.group(1).endswith("_error"):
                    found.setdefault(c.group(1), rel)
            for c in re.finditer(r'=> \("([a-z]+(?:_[a-z]+)+)", ', line):
                found.setdefault(c.group(1), rel)
    return found


def test_troubleshooting():
    page = open(os.path.join(SRC, "troubleshooting.md"), encoding="utf-8").read()
    codes = error_codes()
    missing = [f"{code} ({where})" for code, where in sorted(codes.items()) if f"`{code}`" not in page]
    if missing or len(codes) < 10:
        fail("troubleshooting lists every error code", "not on docs/src/troubleshooting.md: " + ", ".join(missing))
    else:
        ok(f"troubleshooting lists every error code ({len(codes)})")


# --- 5. the book builds, and its links resolve -------------------------------


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            self.links.append(attrs["src"])


def test_book(mdbook, book_dir):
    build = subprocess.run([mdbook, "build", DOCS, "--dest-dir", book_dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if build.returncode != 0 or re.search(r"\[(WARN|ERROR)\]", build.stdout):
        fail("mdbook build", build.stdout)
        return
    ok("mdbook build")
    parsed = {}

    def parse(path):
        if path not in parsed:
            p = Links()
            p.feed(open(path, encoding="utf-8").read())
            parsed[path] = p
        return parsed[path]

    broken = []
    count = 0
    for page in sorted(glob.glob(os.path.join(book_dir, "**", "*.html"), recursive=True)):
        if os.path.basename(page) in ("print.html", "toc.html", "404.html"):
            continue
        for link in parse(page).links:
            url = urllib.parse.urlparse(link)
            if url.scheme or link.startswith("//") or link.startswith("mailto:"):
                continue
            count += 1
            target = page if not url.path else os.path.normpath(os.path.join(os.path.dirname(page), urllib.parse.unquote(url.path)))
            if os.path.isdir(target):
                target = os.path.join(target, "index.html")
            if not os.path.exists(target):
                broken.append(f"{os.path.relpath(page, book_dir)}: {link} (no such file)")
                continue
            if url.fragment and target.endswith(".html") and urllib.parse.unquote(url.fragment) not in parse(target).ids:
                broken.append(f"{os.path.relpath(page, book_dir)}: {link} (no such anchor)")
    if broken:
        fail("links of the book", "\n".join(broken))
    else:
        ok(f"links of the book ({count})")


def test_readme_links():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path = target.split("#")[0]
        if path and not os.path.exists(os.path.join(ROOT, path)):
            broken.append(target)
    if broken:
        fail("links of README.md", ", ".join(broken))
    else:
        ok("links of README.md")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--agentroute", required=True, help="the built agentroute binary")
    parser.add_argument("--mdbook", help="the mdbook binary")
    parser.add_argument("--book-dir", default=os.path.join(ROOT, "target", "book"))
    args = parser.parse_args()
    agentroute = os.path.abspath(args.agentroute)
    bin_dir = tempfile.mkdtemp(prefix="agentroute-bin-")
    os.symlink(agentroute, os.path.join(bin_dir, "agentroute"))
    try:
        test_self(bin_dir)
        test_examples(bin_dir)
        test_reference(agentroute)
        test_troubleshooting()
        test_readme_links()
        if args.mdbook:
            test_book(os.path.abspath(args.mdbook), os.path.abspath(args.book_dir))
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
