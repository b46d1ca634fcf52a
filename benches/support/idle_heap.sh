#!/usr/bin/env bash
# Where an idle WebSocket session's heap goes, by valgrind's dhat, for our
# server and the floor: SESSIONS idle sessions (default 1000) held open,
# then the heap live at the peak, by allocation site, per session.
#
#   bash benches/support/idle_heap.sh [SESSIONS]
#
# Builds as profile_echo.sh does ($PROFILE_TARGET). Needs valgrind, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
sessions=${1:-1000}
target=${PROFILE_TARGET:-/tmp/sockjs-profile}
out=$target/dhat
mkdir -p "$out"
CARGO_TARGET_DIR=$target CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
  cargo build --quiet --release --example sockjs_bench --example ws_floor

for server in ours floor; do
  if [ $server = ours ]; then bin=$target/release/examples/sockjs_bench path=/echo/000/SID/websocket
  else bin=$target/release/examples/ws_floor path=/echo/websocket; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  valgrind --tool=dhat --dhat-out-file="$out/$server.json" "$bin" --port "$port" >"$out/$server.log" 2>&1 &
  vg=$!
  for _ in $(seq 200); do grep -q listening "$out/$server.log" && break; sleep 0.25; done
  python3 - "$port" "$sessions" "$path" <<'PY'
import base64, os, socket, sys
port, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path.replace('SID', f's{i}')} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    held.append(s)
PY
  kill -INT "$vg"; wait "$vg" || true
  echo "== $server: heap live at the peak, per session ($sessions sessions)"
  python3 - "$out/$server.json" "$sessions" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2])
skip = ("library/alloc/", "library/core/", "library/std/", "vgpreload", "alloc::", "__rust", "malloc",
        "realloc", "finish_grow", "reserve", "grow", "with_capacity", "RawVec", "Rc<T>::new", "Arc<T>::new")
rows = []
for pp in d["pps"]:
    if pp.get("gb", 0) < n * 4:
        continue
    frames = [d["ftbl"][i].split(": ", 1)[-1] for i in pp["fs"]]
    site = [f for f in frames if not any(x in f for x in skip)][:2]
    rows.append((pp["gb"] / n, pp["gbk"] / n, " <- ".join(f[:90] for f in site)))
for b, k, site in sorted(rows, reverse=True)[:25]:
    print(f"{b:8.1f} B {k:5.2f} blocks  {site}")
print(f"total: {sum(pp.get('gb', 0) for pp in d['pps']) / n:.0f} B per session")
PY
done
