#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 20), starting
# from the real samples in fuzz/seeds/<target>/, and prints each target's
# executions per second. A crash fails the script; libFuzzer leaves the
# input in fuzz/artifacts/<target>/ (reproduce: cargo fuzz run --dev
# --fuzz-dir fuzz <target> <file>). The targets must be built already
# (scripts/test.sh builds them: `cargo fuzz build --dev --fuzz-dir fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list --fuzz-dir fuzz)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $targets; do
    corpus="$work/$target"
    mkdir -p "$corpus"
    if [ -d "fuzz/seeds/$target" ]; then
        cp "fuzz/seeds/$target"/* "$corpus"/ 2>/dev/null || true
    fi
    log="$work/$target.log"
    if ! cargo fuzz run --dev --fuzz-dir fuzz "$target" "$corpus" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        </dev/null >"$log" 2>&1; then
        tail -60 "$log"
        echo "fuzz: $target FAILED (the input is in fuzz/artifacts/$target/)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    took=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    printf 'fuzz: %-18s %8s runs in %ss, %6s exec/s, corpus %s inputs, no crash\n' \
        "$target" "${runs:-?}" "$seconds" "${took:-?}" "$(ls "$corpus" | wc -l)"
done
