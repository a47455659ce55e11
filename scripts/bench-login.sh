#!/usr/bin/env bash
# Benchmarks of issue 3, written into BENCHMARKS.md ("## Logins and login floods (issue 3)"):
#   1. /auth/login throughput with argon2id at the OWASP defaults, rate limits off;
#   2. WebSocket message round trip on an idle server, then during a wrong-password
#      /auth/login flood with the login limiter on (so the flood is refused before hashing).
# Each scenario gets its own release server on 127.0.0.1:0 in a temporary data root; the
# port is read from the server's "roomgate listening on http://ADDR" line. With taskset
# and two or more cores, the server runs on core 0 and the load generator on core 1.
#
# A benchmark, not a test: it fails only when a run cannot be carried out, never because a
# number is slow. Nothing but 127.0.0.1 is contacted.
#
# Environment: BENCH_SECONDS (10) per measured phase, BENCH_CONCURRENCY (50) login clients,
# BENCH_FLOOD_CONCURRENCY (50) flood clients, BENCH_PIN (1; 0 to not pin cores),
# BENCH_OUT (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_SECS=${BENCH_SECONDS:-10}
CONCURRENCY=${BENCH_CONCURRENCY:-50}
FLOOD_CONCURRENCY=${BENCH_FLOOD_CONCURRENCY:-50}
OUT=${BENCH_OUT:-BENCHMARKS.md}
HEADING="## Logins and login floods (issue 3)"

# Throwaway secrets of a throwaway server on loopback; fixed so the commands recorded in
# BENCHMARKS.md are exactly the ones that ran.
JWT_SECRET_VALUE=roomgate-bench-jwt-secret-0123456789abcdef
WS_SECRET_VALUE=roomgate-bench-ws-secret-0123456789abcdef0
ADMIN_PASSWORD=roomgate-bench-admin-password

# The gateway and the load tool (with the ceiling) are two packages of one workspace
# (bench/ is the second); both build into the shared target/release.
cargo build --release -p roomgate -p roomgate-bench
BIN=${CARGO_TARGET_DIR:-target}/release

SERVER_PIN=()
TOOL_PIN=()
PINNING="not pinned"
if [ "${BENCH_PIN:-1}" != 0 ] && command -v taskset >/dev/null 2>&1 && [ "$(nproc)" -ge 2 ]; then
  SERVER_PIN=(taskset -c 0)
  TOOL_PIN=(taskset -c 1)
  PINNING="server on core 0 (\`taskset -c 0\`), load generator on core 1 (\`taskset -c 1\`)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/roomgate-bench.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

COMMANDS=()
# Prints a command as it can be pasted into a shell.
quote() { printf '%q ' "$@" | sed 's/ $//'; }

# start_server NAME VAR=VALUE...: starts the release server with these variables on
# 127.0.0.1:0 in $work/NAME; sets ADDR once it listens.
start_server() {
  local name=$1
  shift
  local dir="$work/$name"
  mkdir -p "$dir"
  local cmd=(env "$@" JWT_SECRET="$JWT_SECRET_VALUE" WS_SECRET="$WS_SECRET_VALUE"
    ROOMGATE_ADMIN_PASSWORD="$ADMIN_PASSWORD"
    ${SERVER_PIN[@]+"${SERVER_PIN[@]}"} "$BIN/roomgate" serve --listen 127.0.0.1:0 --data "$dir/data")
  COMMANDS+=("$(quote "${cmd[@]}" | sed "s|$work|\$TMP|g")")
  # Created here, not only by the background redirection, so the first read below
  # cannot come before the file exists.
  : >"$dir/stdout"
  "${cmd[@]}" >"$dir/stdout" 2>"$dir/stderr" &
  server_pid=$!
  ADDR=""
  for _ in $(seq 300); do
    ADDR=$(sed -n 's|^roomgate listening on http://||p' "$dir/stdout" | head -n 1)
    [ -n "$ADDR" ] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "bench: the $name server exited before listening:" >&2
      cat "$dir/stderr" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "bench: the $name server did not listen within 30 s" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "bench: the server exited uncleanly" >&2; exit 1; }
  server_pid=""
}

# run_tool OUTFILE ARGS...: runs the load generator; its JSON line goes to OUTFILE and
# its summary to the terminal.
run_tool() {
  local out=$1
  shift
  local cmd=(${TOOL_PIN[@]+"${TOOL_PIN[@]}"} "$BIN/roomgate-bench" "$@")
  COMMANDS+=("$(quote "${cmd[@]}" | sed "s|http://$ADDR|http://\$ADDR|g")")
  "${cmd[@]}" >"$out"
}

# CPU accounting, to tell whether other work shared the machine during a run: CPU time
# (user + system) of the whole machine from /proc/stat, minus that of this script's
# children (the server and the load generator, counted once they are waited for), is
# what everything else used. Steal is time the hypervisor gave to other guests.
HZ=$(getconf CLK_TCK)
cpu_now() { awk -v hz="$HZ" '/^cpu / { printf "%.2f %.2f\n", ($2 + $3 + $4) / hz, $9 / hz; exit }' /proc/stat; }
# Reads what `times` wrote; `times` itself must run in this shell, not in a $(...)
# subshell, whose children's times start at zero.
children_secs() {
  tail -n 1 "$work/times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] } printf "%.2f\n", s }'
}
measure_begin() {
  read -r m_busy m_steal <<<"$(cpu_now)"
  times >"$work/times"
  m_ours=$(children_secs)
  m_wall=$(date +%s.%N)
}
# measure_end NAME: appends "NAME: other processes used X% of the machine, steal Y%".
OTHER_MAX=0
CPU_NOTES=()
measure_end() {
  local busy steal ours wall
  read -r busy steal <<<"$(cpu_now)"
  times >"$work/times"
  ours=$(children_secs)
  wall=$(date +%s.%N)
  local line
  line=$(awk -v busy="$busy" -v b0="$m_busy" -v steal="$steal" -v s0="$m_steal" \
    -v ours="$ours" -v o0="$m_ours" -v wall="$wall" -v w0="$m_wall" -v n="$(nproc)" 'BEGIN {
      cap = (wall - w0) * n
      other = (busy - b0) - (ours - o0); if (other < 0) other = 0
      printf "%.0f %.0f %.0f", 100 * other / cap, 100 * (steal - s0) / cap, 100 * (ours - o0) / cap
    }')
  local other st us
  read -r other st us <<<"$line"
  CPU_NOTES+=("$1: server and load generator $us%, other processes $other%, steal $st% of the machine's CPU")
  [ "$other" -gt "$OTHER_MAX" ] && OTHER_MAX=$other
  [ "$st" -gt "$OTHER_MAX" ] && OTHER_MAX=$st
  return 0
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. Login throughput: every limiter off, so each request is one argon2id verification.
measure_begin
start_server login ROOMGATE_RATE_LIMITS__ENABLED=false
run_tool "$work/login.json" login --url "http://$ADDR" --user admin --password "$ADMIN_PASSWORD" \
  --concurrency "$CONCURRENCY" --seconds "$RUN_SECS"
stop_server
measure_end "login run"

# 2. Round trip idle and under a login flood: limits on (login 10/min per IP), message
#    quota raised so the probe's own messages are never limited.
measure_begin
start_server flood ROOMGATE_RATE_LIMITS__MESSAGE__POINTS=1000000
run_tool "$work/flood.json" flood-latency --url "http://$ADDR" --jwt-secret "$JWT_SECRET_VALUE" \
  --flood-concurrency "$FLOOD_CONCURRENCY" --seconds "$RUN_SECS"
stop_server
measure_end "flood-latency run"

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
tables=$("$BIN/roomgate-bench" report --login "$work/login.json" --flood "$work/flood.json")

model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then
  commit="$commit with uncommitted changes"
fi
noise=""
if [ "$OTHER_MAX" -ge 5 ]; then
  noise="other processes (or other guests, as steal) took a noticeable share of the CPU during the runs, so these numbers are noisier than on an idle machine; rerun the script on a quiet one before comparing small differences."
fi

section="$work/section.md"
{
  echo "$HEADING"
  echo
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench-login.sh\` at commit $commit,"
  echo "release build ($(rustc --version 2>/dev/null || echo 'rustc unknown'))."
  echo
  echo "- Machine: $(nproc) cores, ${model:-unknown CPU}, Linux $(uname -r)"
  echo "- Placement: $PINNING"
  echo "- Load average (1, 5, 15 min): $load_before before, $load_after after (includes the build)"
  for n in "${CPU_NOTES[@]}"; do
    echo "- CPU during the $n"
  done
  if [ -n "$noise" ]; then
    echo "- Note: $noise"
  fi
  echo
  echo "$tables"
  echo
  echo "What the numbers mean:"
  echo
  echo "- **successful logins/s**: \`200\` answers to \`POST /auth/login\` that arrived inside the"
  echo "  measured window, divided by its length. $CONCURRENCY clients each keep one request in flight on a"
  echo "  keep-alive connection and send the next as soon as they have an answer (closed loop)."
  echo "  The window starts after a warm-up of at least 1 s that lasts until every client has had"
  echo "  an answer, so the hashing queue is full from its first moment. Each login is one argon2id"
  echo "  verification (m=19456 KiB, t=2, p=1; at most \`accounts.hash_concurrency\` = 2 at once)"
  echo "  plus signing, storing and flushing the tokens."
  echo "- **p50 / p99 / max** (login and flood): time from writing a request to reading its whole"
  echo "  answer, as the client sees it, over every request that started inside the window (each"
  echo "  waited for to its end, so slow ones are not cut off). hdrhistogram, microsecond"
  echo "  resolution, 3 significant digits. With $CONCURRENCY clients and 2 hashing slots a login mostly"
  echo "  waits for a slot: p50 is close to clients / (logins/s). Pinned, the server has one core,"
  echo "  so logins/s is about 1 / (CPU time of one login); the second slot only interleaves on it."
  echo "- **statuses / errors**: answers of those requests by HTTP status; requests that got none"
  echo "  (connection errors, 30 s timeouts) by cause."
  echo "- **round trip**: one WebSocket client, authenticated with a JWT minted for the server's key,"
  echo "  in room \`bench-latency\` sends \`message\` and waits for the server's broadcast of it back to"
  echo "  itself, then sends the next (after 1 s of unrecorded warm-up); the same connection is"
  echo "  measured on an otherwise idle server, then while the login flood runs. round trips/s is"
  echo "  what one such client achieves, not the server's message capacity."
  echo "- **login flood**: $FLOOD_CONCURRENCY clients sending \`POST /auth/login\` for an unknown user with a"
  echo "  wrong password as fast as they get answers, with the default login limit (10 per minute"
  echo "  per IP, all clients share 127.0.0.1): the first 10 are hashed and get \`401\`, the rest get"
  echo "  \`429\`, refused before any hashing. requests/s counts answers that arrived in the window."
  echo "  The flood's window starts with its first request, so it holds those 10 hashes: its max."
  echo "- The server's core is shared by everything it does, and the load generator's core by the"
  echo "  probe and the flood clients (the probe has a thread of its own, not a core), so part of"
  echo "  the flood phase's round-trip tail can be the generator's own scheduling."
  echo "- All load comes from the same machine over loopback. The numbers compare builds and"
  echo "  settings on one machine; they are not capacity figures for production hardware."
  echo
  echo "Commands (\$TMP is a fresh temporary directory, \$ADDR the address the server printed):"
  echo
  echo '```'
  echo "cargo build --release -p roomgate -p roomgate-bench"
  for c in "${COMMANDS[@]}"; do
    echo "$c"
  done
  echo '```'
} >"$section"

if [ ! -f "$OUT" ]; then
  cat >"$OUT" <<'EOF'
# roomgate benchmarks

Numbers measured by the scripts in `scripts/`, with the load generator
`roomgate-bench` (`bench/src/roomgate-bench/`), against a release build of the real
binary over real sockets on 127.0.0.1.

These are benchmarks, not tests: nothing here passes or fails, `cargo test` does not run
them, and a slower number is a finding to look into, not a red build. Each section says
the machine, the date, the commit and the exact commands; numbers from different
machines, or from a machine that was busy with other work, are not comparable. To refresh
a section, rerun its script; it rewrites only its own section.

| section | script | time |
|---|---|---|
| Logins and login floods (issue 3) | `scripts/bench-login.sh` | about 40 s plus the release build |
EOF
fi

# Replace the section (from its heading to the next level-2 heading) or append it.
awk -v heading="$HEADING" -v section="$section" '
  $0 == heading {
    while ((getline line < section) > 0) print line
    print ""
    skipping = 1; done = 1; next
  }
  skipping && /^## / { skipping = 0 }
  !skipping { print }
  END {
    if (!done) {
      print ""
      while ((getline line < section) > 0) print line
    }
  }
' "$OUT" >"$work/out.md"
# Drop trailing blank lines, keep one final newline.
sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' "$work/out.md" >"$OUT"

echo "bench: wrote \"$HEADING\" in $OUT" >&2
