#!/usr/bin/env bash
# The whole test suite, as README.md gives it and .ci/run runs it: installs what the tests
# need beyond Rust when it is missing, then runs every test of the workspace.
#
# Besides the Rust toolchain the tests use: a C compiler and make (ring, jemalloc),
# Node.js 18+ with npm (the seed client, the client library and the browser driver),
# Debian's Chromium (the pages, driven by playwright-core; never a downloaded browser),
# curl (README's quick start runs as written), openssl (identity-provider keys) and
# systemd-analyze (the service unit). As root on Debian or Ubuntu they are installed
# with apt; otherwise the script prints the one command that installs them and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

missing=()
have() { command -v "$1" >/dev/null 2>&1; }
{ have cc && have make; } || missing+=(build-essential)
{ have node && have npm; } || missing+=(nodejs npm)
{ have chromium || [ -x /usr/bin/chromium ]; } || missing+=(chromium)
have curl || missing+=(curl)
have openssl || missing+=(openssl)
have systemd-analyze || missing+=(systemd)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && have apt-get; then
    echo "scripts/test.sh: installing ${missing[*]} with apt" >&2
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: the tests need ${missing[*]}; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "scripts/test.sh: Node.js 18 or newer is needed, found $(node --version)" >&2
  exit 1
fi

# The JavaScript harnesses' pinned packages, from the npm registry.
for dir in tests/seed_client tests/browser tests/client; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done

exec cargo test --locked --workspace "$@"
