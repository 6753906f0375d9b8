#!/usr/bin/env bash
# fuzz/run-all.sh SECONDS: seeds the corpora, builds the fuzz targets and
# runs each for SECONDS, one after another, one process at a time. Exits
# non-zero at the first crash (the input is in fuzz/artifacts/<target>/).
# Logs go to fuzz/logs/<target>.log; the last lines of each are printed.
# Needs the nightly toolchain and cargo-fuzz (see CONTRIBUTING.md).
set -euo pipefail

seconds="${1:?usage: fuzz/run-all.sh SECONDS}"
cd "$(dirname "$0")/.."

# Release build with debug assertions and overflow checks, no sanitizer:
# the code under test is safe Rust, and AddressSanitizer would make the
# wasmtime build (a dependency of the host crate) much slower.
build_flags=(-s none)
targets=(delivery post_receive config)

fuzz/seed.sh
cargo +nightly fuzz build "${build_flags[@]}"
mkdir -p fuzz/logs
for target in "${targets[@]}"; do
    echo "run-all.sh: fuzzing $target for $seconds s"
    status=0
    cargo +nightly fuzz run "${build_flags[@]}" "$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        >"fuzz/logs/$target.log" 2>&1 || status=$?
    grep -E '^Done [0-9]+ runs|stat::number_of_executed_units' "fuzz/logs/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 40 "fuzz/logs/$target.log"
        echo "run-all.sh: $target FAILED (exit $status); see fuzz/logs/$target.log and fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "run-all.sh: every target ran $seconds s without a crash"
