#!/usr/bin/env bash
# A self-hosted git server in a folder: makes a bare repository, installs
# redeploy as its post-receive hook, pushes to it, and shows the deploy.
# Run with:  examples/post-receive-demo.sh   (after `cargo build --release`)
# Set REDEPLOY to use another redeploy binary.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
redeploy=${REDEPLOY:-$here/../target/release/redeploy}
demo=$(mktemp -d "${TMPDIR:-/tmp}/redeploy-demo.XXXXXX")
trap 'rm -rf "$demo"' EXIT
git init --quiet --bare --initial-branch=main "$demo/app.git"
cat > "$demo/redeploy.toml" <<TOML
[server]
state_dir = "state"

[hook]
wait = true   # run the deploy inside the push and show its output

[[stacks]]
name = "app"
repository = "$demo/app.git"
branch = "main"
command = ["$here/deploy.sh"]
TOML
"$redeploy" install-hook "$demo/app.git" --config "$demo/redeploy.toml"
git clone --quiet "$demo/app.git" "$demo/work" 2>/dev/null
cd "$demo/work"
git checkout --quiet -B main
git -c user.name=Demo -c user.email=demo@example.com commit --quiet --allow-empty -m "first deploy"
echo "--- git push origin main"
git push origin main 2>&1
echo "--- git push origin main:feature (another branch: nothing deploys)"
git push origin main:feature 2>&1
echo "--- redeploy history"
"$redeploy" history --config "$demo/redeploy.toml"
