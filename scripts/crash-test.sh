#!/usr/bin/env bash
# The long form of tests/crash.rs: kill the server with SIGKILL under load CYCLES times
# (default 50) in strict durability, and after each kill check that the database opens,
# every acknowledged message is in history once and in order, and every acknowledged
# revocation holds. CI runs the same test with 3 cycles.
#   scripts/crash-test.sh            # 50 cycles
#   CYCLES=200 scripts/crash-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CRASH_CYCLES="${CYCLES:-50}" cargo test --release --locked -p roomgate --test crash -- --nocapture
