//! The stand-in deploy program, and writing executable scripts.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// The stand-in deploy program: records env and stdin, detects overlapping
/// runs of one stack with an atomic `mkdir` lock, sleeps `$SLEEP`, exits `$EXIT_CODE`.
pub const STAND_IN: &str = r#"#!/bin/sh
set -u
dir="$RECORD_DIR"
id="$REDEPLOY_DEPLOY_ID"
if ! mkdir "$dir/running.lock" 2>/dev/null; then echo "$id" >> "$dir/overlaps"; fi
env | grep -E '^(REDEPLOY_|APP_|FAST|HOME|PATH)' | sort > "$dir/$id.env"
cat > "$dir/$id.stdin"
echo "start $id ${REDEPLOY_SHA:-}" >> "$dir/timeline"
sleep "${SLEEP:-0}"
echo "end $id" >> "$dir/timeline"
rmdir "$dir/running.lock" 2>/dev/null
exit "${EXIT_CODE:-0}"
"#;

/// Sets `path`'s mode to 0755.
pub fn make_executable(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes `script` to `path` and makes it executable.
pub fn write_executable(path: &Path, script: &str) {
    std::fs::write(path, script).unwrap();
    make_executable(path);
}
