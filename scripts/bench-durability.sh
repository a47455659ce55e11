#!/usr/bin/env bash
# Throughput cost of store.durability = "strict" against "relaxed": builds release and
# runs tests/durability_cost.rs (ignored by cargo test), printing one JSON line per mode.
#   scripts/bench-durability.sh            # 5 s per mode
#   BENCH_SECS=20 scripts/bench-durability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --locked -p roomgate --test durability_cost -- --ignored --nocapture 2>&1 | grep '^{'
