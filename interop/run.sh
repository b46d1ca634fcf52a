#!/usr/bin/env bash
# Real-client interoperability stage: builds examples/test_server, installs
# the pinned Node packages, and drives the server with sockjs-client 1.6.1 in
# Node and in headless Chromium (/usr/bin/chromium, or $CHROMIUM).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
cargo build --example test_server --example chat
cd "$here"
if [ ! -d node_modules/sockjs-client ] || [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
node run.js "$@"
node chat.js
