#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, on this machine, in one run:
#   bash bench/run.sh              # all three parts
#   bash bench/run.sh plugin       # 1. plugin cost per delivery (criterion)
#   bash bench/run.sh http         # 2. HTTP: redeploy serve against adnanh/webhook
#   bash bench/run.sh post-receive # 3. post-receive hook wall time
#   bash bench/run.sh journal      # 4. serve on SQLite against PostgreSQL
# Installs what it needs and is missing (Debian's `webhook` and `wrk`, with
# apt-get, as root or through sudo), builds the release binary (and, for
# the http part, the floor server, bench/floor, a workspace of its own
# built into target/floor), and prints the machine it ran on and
# each part's table. HTTP_ARGS passes options to
# bench/serve_vs_webhook.py (e.g. HTTP_ARGS="--duration 5 --rounds 1").
# Not run by CI: the test suite only builds and runs the harness once.
set -euo pipefail
cd "$(dirname "$0")/.."

parts=("${@:-plugin http post-receive journal}")
parts=(${parts[*]})

need_apt=()
need_floor=false
for p in "${parts[@]}"; do
    if [ "$p" = http ]; then
        need_floor=true
    fi
    if [ "$p" = http ]; then
        command -v webhook >/dev/null || need_apt+=(webhook)
        command -v wrk >/dev/null || need_apt+=(wrk)
    fi
    if [ "$p" = journal ]; then
        command -v wrk >/dev/null || need_apt+=(wrk)
        compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_apt+=(postgresql)
    fi
done
if [ ${#need_apt[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -q
    $sudo apt-get install -y -q "${need_apt[@]}"
fi

echo "== machine"
echo "cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(grep MemTotal /proc/meminfo | awk '{printf "%.1f GiB", $2/1048576}')"
echo "kernel: $(uname -sr)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "rustc: $(rustc --version)"
command -v webhook >/dev/null && echo "webhook: $(webhook -version)"
command -v wrk >/dev/null && echo "wrk: $(wrk -v 2>&1 | head -1)"

# Everything, for the plugin part; each server part then builds (links
# back in place) the binary that ships, since `cargo bench` leaves
# target/release/redeploy built with the dev-dependencies' features
# (bench/benchlib.py, build_release_binary).
cargo build --release
if $need_floor; then
    # Offline: its Cargo.lock pins only crates (and versions) of the root
    # Cargo.lock, which the build above has just fetched.
    cargo build --release --offline --manifest-path bench/floor/Cargo.toml --target-dir target/floor
fi

for p in "${parts[@]}"; do
    case "$p" in
        plugin)
            echo "== 1. plugin cost per delivery"
            cargo bench -p redeploy-host --bench plugin_cost
            ;;
        http)
            echo "== 2. HTTP: redeploy serve against adnanh/webhook and the floor server"
            # shellcheck disable=SC2086
            python3 bench/serve_vs_webhook.py ${HTTP_ARGS:-}
            python3 bench/big_delivery.py
            ;;
        post-receive)
            echo "== 3. post-receive hook wall time"
            python3 bench/post-receive.py 100
            ;;
        journal)
            echo "== 4. serve on SQLite against PostgreSQL"
            # shellcheck disable=SC2086
            python3 bench/journal_backends.py ${JOURNAL_ARGS:-}
            ;;
        *)
            echo "unknown part \"$p\" (plugin, http, post-receive, journal)" >&2
            exit 2
            ;;
    esac
done
