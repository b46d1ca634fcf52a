#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each).
# Usage: fuzz/run.sh [SECONDS] [TARGET...]
# cargo-fuzz wants a nightly compiler for its flags; RUSTC_BOOTSTRAP lets the
# stable one accept them, and no sanitizer is asked for (stable ships none).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(payload callback router)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -s none -O
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${seconds}s"
  mkdir -p "corpus/$t"
  cargo fuzz run -s none -O "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 2>&1 \
    | grep -E "^Done|stat::number_of_executed_units|panicked|ERROR|SUMMARY" || true
  if [ -d "artifacts/$t" ] && [ -n "$(ls -A "artifacts/$t")" ]; then
    echo "fuzz $t found a crash: see fuzz/artifacts/$t"
    exit 1
  fi
done
