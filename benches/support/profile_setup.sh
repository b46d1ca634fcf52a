#!/usr/bin/env bash
# Instructions (and, with CGOPTS=--cache-sim=yes, cache misses) per
# WebSocket set-up and per close, by callgrind, for our server and the
# floor. Each server runs under valgrind; a client opens 100 sessions and
# keeps them (a warm-up, open to the end: closed, they would leave work
# for the manager's next turn, which the set-ups would be charged with),
# then another opens SESSIONS one at a time and holds them, then closes
# them all. `callgrind_control -d` dumps the counts after each
# step (callgrind starts counting afresh at a dump), so `NAME.PID.2` holds
# the set-ups alone and `NAME.PID.3` the closes alone, each with the
# server's other threads (the acceptor, the manager).
#
#   bash benches/support/profile_setup.sh [SESSIONS]
#
# Builds as profile_echo.sh does, under $PROFILE_TARGET (default
# /tmp/sockjs-profile). Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
sessions=${1:-1000}
target=${PROFILE_TARGET:-/tmp/sockjs-profile}
out=$target/callgrind-setup
rm -rf "$out" && mkdir -p "$out"
CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --quiet --release --example sockjs_bench --example ws_floor
client=benches/support/echo_client.py

# Waits until the process PID has used no CPU for half a second.
settle() {
  local last now
  last=$(awk '{print $14 + $15}' "/proc/$1/stat")
  while sleep 0.5; do
    now=$(awk '{print $14 + $15}' "/proc/$1/stat")
    [ "$now" = "$last" ] && return
    last=$now
  done
}

# Instructions in a dump, divided by the sessions.
per() { callgrind_annotate "$1" 2>/dev/null | awk -v n="$sessions" '/PROGRAM TOTALS/ {gsub(",","",$1); print int($1 / n)}'; }

for server in ours floor; do
  if [ $server = ours ]; then bin=$target/release/examples/sockjs_bench floor=; else bin=$target/release/examples/ws_floor floor=floor; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$out/$server.log
  # shellcheck disable=SC2086
  valgrind --tool=callgrind ${CGOPTS:-} --callgrind-out-file="$out/$server.%p" "$bin" --port "$port" >"$log" 2>&1 &
  vg=$!
  for _ in $(seq 200); do grep -q listening "$log" && break; sleep 0.25; done
  python3 "$client" "$port" 100 keep $floor >"$out/$server.warm" &
  warm=$!
  for _ in $(seq 200); do grep -q opened "$out/$server.warm" && break; sleep 0.25; done
  settle "$vg"; callgrind_control -d "$vg" >/dev/null 2>&1
  coproc CLIENT { python3 "$client" "$port" "$sessions" hold $floor; }
  # Copies of the client's pipes: bash drops its own once the client ends.
  exec {from}<&"${CLIENT[0]}" {to}>&"${CLIENT[1]}"
  client_pid=$CLIENT_PID
  read -r _ <&"$from"
  settle "$vg"; callgrind_control -d "$vg" >/dev/null 2>&1
  echo >&"$to"
  read -r _ <&"$from"
  wait "$client_pid" || true
  exec {from}<&- {to}>&-
  settle "$vg"; callgrind_control -d "$vg" >/dev/null 2>&1
  kill "$warm"; wait "$warm" || true
  kill -INT "$vg"; wait "$vg" || true
  echo "$server: $(per "$out/$server.$vg.2") instructions per set-up, $(per "$out/$server.$vg.3") per close ($sessions sessions; dumps in $out/$server.$vg.*)"
done
