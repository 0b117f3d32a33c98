#!/usr/bin/env bash
# Runs every fuzz target for a fixed time, two at a time, and prints one
# summary line per target (executions, corpus size, crashes found).
#
#   fuzz/run_all.sh [SECONDS_PER_TARGET] [PARALLEL]     (default 660 s, 2)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Inputs that grow coverage go to fuzz/corpus/<target>; crashes to
# fuzz/artifacts/<target> (copy each into fuzz/regressions/<target> once
# fixed, so the replay test keeps it fixed).
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-660}"
par="${2:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/deme-fuzz-target}"
mkdir -p logs
cargo +nightly fuzz build -O
targets=$(cargo +nightly fuzz list)
run() {
  t="$1"
  mkdir -p "corpus/$t"
  nice -n 10 cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -print_final_stats=1 > "logs/$t.log" 2>&1 || true
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
  echo "$t: ${secs} s, ${execs} executions, corpus $(ls "corpus/$t" | wc -l) inputs, ${crashes} crash files"
}
export -f run
export secs
printf '%s\n' $targets | xargs -P "$par" -I{} bash -c 'run {}'
