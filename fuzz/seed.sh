#!/usr/bin/env bash
# Seeds the fuzz corpora (fuzz/corpus/<target>/, not committed) from the
# third-party fixtures in tests/fixtures, the golden cases, the examples
# and the TOML in the tests, and adds the kept regression inputs
# (fuzz/regressions/<target>/). Safe to re-run: files are named by content.
#
#   fuzz/seed.sh            # the fixtures vendored in tests/fixtures
#   REDEPLOY_FIXTURES=/path/to/fixtures fuzz/seed.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
fixtures="${REDEPLOY_FIXTURES:-$root/tests/fixtures}"
if [ ! -f "$fixtures/SOURCES.md" ]; then
    echo "seed.sh: fixtures not found at $fixtures (set REDEPLOY_FIXTURES)" >&2
    exit 1
fi

python3 - "$root" "$fixtures" <<'PY'
import hashlib, json, os, re, sys, urllib.parse
from pathlib import Path

root, fixtures = Path(sys.argv[1]), Path(sys.argv[2])
corpus = root / "fuzz" / "corpus"
counts = {}

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
    counts[target] = counts.get(target, 0) + 1

def read_headers(path):
    out = []
    for line in path.read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out.append((k.strip(), v.strip()))
    return out

# Signature headers carry the upstream secret's HMAC: replace them with the
# fuzz target's placeholders, which it fills in with its own secret.
def placeholder(provider_dir, name, value):
    n = name.lower()
    if n == "x-hub-signature-256":
        return "sha256={sha256}"
    if n == "x-hub-signature":
        return "sha1={sha1}" if value.startswith("sha1=") else "sha256={sha256}"
    if n in ("x-gitea-signature", "x-gogs-signature", "x-forgejo-signature"):
        return "{sha256-json}"
    if n in ("x-gitlab-token", "x-gitee-token"):
        return "{secret}"
    return value

def delivery(method, selector, query, headers, body):
    head = f"{method} {selector} {query}".rstrip() + "\n"
    head += "".join(f"{k}: {v}\n" for k, v in headers)
    return head.encode() + b"\n" + body

# 1. delivery: every fixture payload with its headers...
for payload in sorted(fixtures.glob("*/*.json")):
    if payload.name.endswith(".golden.json"):
        continue
    hdr = payload.with_suffix(".headers")
    headers = read_headers(hdr) if hdr.exists() else []
    headers = [(k, placeholder(payload.parent.name, k, v)) for k, v in headers]
    put("delivery", delivery("POST", "*", "", headers, payload.read_bytes()))

# ...and every golden case (modifiers, form bodies, signatures, methods).
for case_file in sorted((root / "tests" / "golden" / "cases").glob("*/case.json")):
    case = json.loads(case_file.read_text())
    fixture = case.get("fixture")
    body = (fixtures / fixture).read_bytes() if fixture else case.get("body", "").encode()
    headers = []
    if case.get("headers"):
        headers += read_headers(fixtures / case["headers"])
    elif fixture and not case.get("no_headers_file"):
        hdr = (fixtures / fixture).with_suffix(".headers")
        if hdr.exists():
            headers += read_headers(hdr)
    headers = [(k, placeholder("", k, v)) for k, v in headers]
    headers += [tuple(h) for h in case.get("extra_headers", [])]
    raw = body
    if case.get("form"):
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        raw = ("payload=" + urllib.parse.quote_plus(body.decode())).encode()
    sign = case.get("sign")
    if sign:
        mark = "{sha256-json}" if sign.get("over") == "json" else "{sha256}"
        headers.append((sign["header"], sign.get("prefix", "") + mark))
    query = case.get("query", "")
    selector = "services" if "services=" in query or "deployment_profile=" in query else "*"
    put("delivery", delivery(case.get("method", "POST"), selector, query, headers, raw))

# 2. post_receive: lines built from the commit ids in the fixtures.
text = "\n".join(p.read_text(errors="replace") for p in sorted(fixtures.glob("*/*.json")))
sha1s = sorted(set(re.findall(r'"([0-9a-f]{40})"', text)))[:24]
sha256s = sorted(set(re.findall(r'sha256:([0-9a-f]{64})', text)))[:8]
zero1, zero2 = "0" * 40, "0" * 64
for old, new in zip(sha1s[0::2], sha1s[1::2]):
    put("post_receive", f"{old} {new} refs/heads/main\n")
    put("post_receive", f"{zero1} {new} refs/tags/v1.0\n{old} {zero1} refs/heads/old\n")
    put("post_receive", f"{old} {new} refs/heads/feature/x\n\n{old} {new} refs/heads/main\n")
for old, new in zip(sha256s[0::2], sha256s[1::2]):
    put("post_receive", f"{old} {new} refs/heads/main\n")
    put("post_receive", f"{zero2} {new.upper()} refs/tags/v2.0\r\n")
if sha1s:
    put("post_receive", f"{sha1s[0]} {sha1s[1]} refs/heads/main extra\n")
    put("post_receive", f"{sha1s[0]} refs/heads/main\n")

# 3. config: the examples and every TOML text in the tests.
for toml in sorted((root / "examples").glob("*.toml")):
    put("config", toml.read_bytes())
raw_string = re.compile(r'r(#*)"(.*?)"\1', re.S)
plain_string = re.compile(r'(?<![r#\w])"((?:[^"\\]|\\.)*)"', re.S)
def unescape(s):
    s = re.sub(r'\\\n\s*', "", s)
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), s)
sections = ("[[stacks]]", "[server]", "[hook]")
config_dir = root / "host" / "src" / "config"
sources = sorted(config_dir.rglob("*.rs")) + sorted((root / "tests").glob("*.rs"))
for source in sources:
    code = source.read_text()
    snippets = [m.group(2) for m in raw_string.finditer(code)]
    snippets += [unescape(m.group(1)) for m in plain_string.finditer(code)]
    for snippet in snippets:
        if any(s in snippet for s in sections):
            put("config", snippet)
        elif config_dir in source.parents and re.search(r'^\w[\w.]* = ', snippet, re.M):
            # A stack body the unit tests wrap in a [[stacks]] table.
            put("config", '[[stacks]]\nname = "web"\n' + snippet + "\n")

# The kept regression inputs.
regressions = root / "fuzz" / "regressions"
for target_dir in sorted(p for p in regressions.glob("*") if p.is_dir()):
    for f in sorted(target_dir.iterdir()):
        if f.is_file():
            put(target_dir.name, f.read_bytes())

for target, n in sorted(counts.items()):
    print(f"seed.sh: {n} inputs for {target} in {corpus / target}")
PY
