#!/bin/sh
# The example deploy command: logs what it would deploy. Works on any machine.
# Run by `redeploy serve --config examples/redeploy.toml` for each deploy, with
# the deploy event in REDEPLOY_* variables and as JSON on stdin.
# Replace it with your real deploy (docker compose pull && docker compose up -d, ...).
set -eu
echo "deploying stack ${REDEPLOY_STACK} (services: ${REDEPLOY_SERVICES:-all})"
echo "  provider=${REDEPLOY_PROVIDER:-} delivery=${REDEPLOY_DELIVERY:-}"
echo "  repository=${REDEPLOY_REPOSITORY:-} ref=${REDEPLOY_REF:-} sha=${REDEPLOY_SHA:-}"
echo "  profile=${REDEPLOY_PROFILE:-default}"
echo "  event:"
cat
echo
echo "done"
