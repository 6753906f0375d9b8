#!/usr/bin/env bash
# Sends a correctly signed GitHub push (a real payload from tests/fixtures)
# to a running `redeploy serve`, as GitHub would.
# Run with:  examples/github-push.sh [BASE_URL]   (server started with examples/redeploy.toml)
# It signs the body with the `hello` stack's secret (X-Hub-Signature-256).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
redeploy=${REDEPLOY:-$here/../target/release/redeploy}
fixtures=${FIXTURES:-$here/../tests/fixtures}
url=$("$redeploy" hook-url hello --config "$here/redeploy.toml")
if [ $# -ge 1 ]; then url="$1/hooks/${url##*/hooks/}"; fi
body="$fixtures/github/goscm-push.json"
sig=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(b"topsecret", open(sys.argv[1],"rb").read(), hashlib.sha256).hexdigest())' "$body")
curl -sS -X POST "$url" \
  -H "Content-Type: application/json" \
  -H "X-GitHub-Event: push" \
  -H "X-GitHub-Delivery: $(python3 -c 'import uuid; print(uuid.uuid4())')" \
  -H "X-Hub-Signature-256: sha256=$sig" \
  --data-binary "@$body"
echo
