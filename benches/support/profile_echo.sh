#!/usr/bin/env bash
# Instructions (and, with CGOPTS=--cache-sim=yes, cache misses) per
# WebSocket echo, by callgrind, for our server and the floor: each server
# runs twice under valgrind; each run opens SESSIONS sessions for a warm-up
# of 20 rounds, then SESSIONS more for 1 round (the first run) or 1 + ROUNDS
# rounds (the second); the difference over the echoes of those ROUNDS
# rounds is the echo's cost, start-up, set-up and close left out.
#
#   bash benches/support/profile_echo.sh [SESSIONS [ROUNDS]]
#
# Builds sockjs_bench and ws_floor in release with line tables under
# $PROFILE_TARGET (default /tmp/sockjs-profile). With CGOPTS=--dump-instr=yes
# the dumps feed hot_code.py (the code an echo runs, in 64-byte lines).
# Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
sessions=${1:-50} rounds=${2:-200}
target=${PROFILE_TARGET:-/tmp/sockjs-profile}
out=$target/callgrind
mkdir -p "$out"
CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --quiet --release --example sockjs_bench --example ws_floor
client=benches/support/echo_client.py

# run NAME BIN EXTRA_ROUNDS [floor]: prints the dump's total Ir line.
run() {
  local name=$1 bin=$2 more=$3 floor=${4:-} log=$out/$1.$3.log port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  # shellcheck disable=SC2086
  valgrind --tool=callgrind ${CGOPTS:-} --callgrind-out-file="$out/$name.$more" \
    "$bin" --port "$port" >"$log" 2>&1 &
  local vg=$!
  for _ in $(seq 200); do grep -q listening "$log" && break; sleep 0.25; done
  python3 "$client" "$port" "$sessions" 20 $floor
  # Both runs open a second set of sessions, so the difference holds
  # echoes only: their set-ups and closes cancel out.
  python3 "$client" "$port" "$sessions" "$((more + 1))" $floor
  kill -INT "$vg"; wait "$vg" || true
  callgrind_annotate "$out/$name.$more" 2>/dev/null | grep 'PROGRAM TOTALS'
}

for server in ours floor; do
  if [ $server = ours ]; then bin=$target/release/examples/sockjs_bench floor=; else bin=$target/release/examples/ws_floor floor=floor; fi
  base=$(run $server "$bin" 0 $floor | awk '{gsub(",","",$1); print $1}')
  full=$(run $server "$bin" "$rounds" $floor | awk '{gsub(",","",$1); print $1}')
  echo "$server: $(( (full - base) / (sessions * rounds) )) instructions per echo ($sessions sessions x $rounds rounds; dumps in $out/$server.*)"
done
