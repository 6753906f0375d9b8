#!/usr/bin/env bash
# The seed's manual trigger: an empty POST to a stack's hook URL.
# Run with:  examples/manual-trigger.sh [STACK] [BASE_URL]   (server started with examples/redeploy.toml)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
redeploy=${REDEPLOY:-$here/../target/release/redeploy}
url=$("$redeploy" hook-url "${1:-registry}" --config "$here/redeploy.toml")
if [ $# -ge 2 ]; then url="$2/hooks/${url##*/hooks/}"; fi
curl -sS -X POST -d "" "$url"
echo
