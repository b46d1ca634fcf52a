#!/usr/bin/env bash
# A two-node chat cluster on this machine: Redis, two nodes of the chat
# example and haproxy in front of them. Ctrl-C stops everything it started.
#
#   bash examples/cluster/run.sh
#
# Needs redis-server and haproxy (Debian: apt-get install redis-server haproxy).
# Ports: the balancer on $SOCKJS_LB_PORT (8080), the cookie-routing balancer
# on $SOCKJS_COOKIE_LB_PORT (8090), the nodes on 8081 and 8082, Redis on
# $REDIS_PORT (16379, not Redis's default port, so as not to meet another
# Redis on this machine).
set -euo pipefail
cd "$(dirname "$0")/../.."

export SOCKJS_LB_PORT=${SOCKJS_LB_PORT:-8080}
export SOCKJS_COOKIE_LB_PORT=${SOCKJS_COOKIE_LB_PORT:-8090}
export SOCKJS_NODE1_PORT=${SOCKJS_NODE1_PORT:-8081}
export SOCKJS_NODE2_PORT=${SOCKJS_NODE2_PORT:-8082}
REDIS_PORT=${REDIS_PORT:-16379}

for program in redis-server haproxy; do
  command -v "$program" >/dev/null || { echo "$program is not installed (apt-get install $program)" >&2; exit 1; }
done

cargo build --quiet --example chat --features redis
chat="${CARGO_TARGET_DIR:-target}/debug/examples/chat"

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping: ${pids[*]}"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning &
pids+=($!)
"$chat" --port "$SOCKJS_NODE1_PORT" --node node1 --redis "redis://127.0.0.1:$REDIS_PORT/" --jsessionid &
pids+=($!)
"$chat" --port "$SOCKJS_NODE2_PORT" --node node2 --redis "redis://127.0.0.1:$REDIS_PORT/" --jsessionid &
pids+=($!)
haproxy -f examples/cluster/haproxy.cfg -db &
pids+=($!)

echo
echo "Open http://127.0.0.1:$SOCKJS_LB_PORT/ in several browser windows (routed by session id),"
echo "or http://127.0.0.1:$SOCKJS_COOKIE_LB_PORT/ (routed by the JSESSIONID cookie)."
echo "Metrics: http://127.0.0.1:$SOCKJS_NODE1_PORT/metrics and http://127.0.0.1:$SOCKJS_NODE2_PORT/metrics"
echo "Ctrl-C stops everything."
wait -n "${pids[@]}"
echo "a process of the cluster exited" >&2
