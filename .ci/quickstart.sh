#!/usr/bin/env bash
# Builds the README's quick start as a crate of its own, with exactly the
# dependencies the README's installation section lists (the actix-sockjs
# line pointed at this checkout), so that both stay true.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
# The first ```toml block after "## Installation", the first ```rust block
# after "## Quick start".
block() { awk -v head="$1" -v fence="$2" '
  $0 == head { inside = 1; next }
  inside && !found && $0 ~ "^```" fence { found = 1; next }
  found && $0 == "```" { exit }
  found { print }' "$repo/README.md"; }
deps="$(block '## Installation' toml)"
code="$(block '## Quick start' rust)"
[ -n "$deps" ] && [ -n "$code" ] || { echo "quick start or installation block not found in README.md" >&2; exit 1; }
mkdir -p "$dir/src"
{
  printf '[package]\nname = "quickstart"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
  printf '%s\n' "$deps" | sed "s|^actix-sockjs = .*|actix-sockjs = { path = \"$repo\" }|"
} > "$dir/Cargo.toml"
printf '%s\n' "$code" > "$dir/src/main.rs"
grep -q '^\[dependencies\]' "$dir/Cargo.toml" || { echo "no [dependencies] in the installation block" >&2; exit 1; }
# The checkout's lock file keeps the versions CI already built.
cp "$repo/Cargo.lock" "$dir/Cargo.lock"
CARGO_TARGET_DIR="$repo/target" cargo build --quiet --manifest-path "$dir/Cargo.toml"
echo "the README's quick start builds as a crate of its own"
