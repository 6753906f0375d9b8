#!/usr/bin/env bash
# Posts a legacy Bitbucket POST-service body (form-encoded `payload=`, the
# way the service sent it) to the `legacy` stack.
# Run with:  examples/bitbucket-post.sh [BASE_URL]   (server started with examples/redeploy.toml)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
redeploy=${REDEPLOY:-$here/../target/release/redeploy}
fixtures=${FIXTURES:-$here/../tests/fixtures}
url=$("$redeploy" hook-url legacy --config "$here/redeploy.toml")
if [ $# -ge 1 ]; then url="$1/hooks/${url##*/hooks/}"; fi
curl -sS -X POST "$url" --data-urlencode "payload@$fixtures/bitbucket-legacy-post/zulip-bitbucket_push.json"
echo
