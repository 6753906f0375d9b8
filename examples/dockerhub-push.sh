#!/usr/bin/env bash
# Posts Docker Hub's documented webhook payload (svendowideit/testhook:latest)
# to the `registry` stack, as Docker Hub does after an image push.
# Run with:  examples/dockerhub-push.sh [BASE_URL]   (server started with examples/redeploy.toml)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
redeploy=${REDEPLOY:-$here/../target/release/redeploy}
fixtures=${FIXTURES:-$here/../tests/fixtures}
url=$("$redeploy" hook-url registry --config "$here/redeploy.toml")
if [ $# -ge 1 ]; then url="$1/hooks/${url##*/hooks/}"; fi
# Docker Hub stamps each delivery with the push time (push_data.pushed_at);
# redeploy refuses an event older than server.max_event_age (10 minutes), so
# the documented 2014 payload is sent with the time of now.
sed "s/\"pushed_at\": [0-9]*/\"pushed_at\": $(date +%s)/" \
  "$fixtures/dockerhub/dockerdocs-webhook-example.json" |
  curl -sS -X POST "$url" -H "Content-Type: application/json" --data-binary @-
echo
