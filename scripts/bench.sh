#!/usr/bin/env bash
# Benchmarks of issue 5: roomgate side by side with the transport ceiling
# (roomgate-ceiling, the least server that speaks the protocol), written into
# BENCHMARKS.md ("## Side by side with the transport ceiling (issue 5)").
#
# Both are built in release mode. Every scenario runs against each server in turn, each
# run on a fresh server in a fresh temporary data root on 127.0.0.1:0 (the port is read
# from the server's "listening on http://ADDR" line), alternating which goes first from
# round to round. With taskset and two or more cores the server runs on core 0 and the
# load tool on core 1. roomgate runs as in production (history on, default queues and
# logging) except that the rate limits are lifted and the per-user, per-IP and per-room
# caps are raised so that the load itself is never refused.
#
# Standard scenarios (BENCH_SMOKE=1 runs each at a small size in a minute or two, prints
# the tables and leaves BENCHMARKS.md alone):
#   connect      -n 10000 -c 200
#   hold         -n 19900 --rooms 100 -t 30 --cycles 3
#   fanout       -r 10 -s 100 -p 1 -m 1000 -t 3
#   fanout       -r 20 -s 500 -p 1 -m 5 -t 20
#   echo-latency -n 10000
#
# A benchmark, not a test: it fails only when a run cannot be carried out, never because
# a number is slow. Nothing but 127.0.0.0/8 is contacted.
#
# Environment: BENCH_SMOKE (0), BENCH_ROUNDS (1; with more, each table row is the median
# run), BENCH_SCENARIOS (all: "connect hold fanout-throughput fanout-latency echo"),
# BENCH_PIN (1; 0 to not pin cores), BENCH_OUT (BENCHMARKS.md; with BENCH_SMOKE=1 none),
# BENCH_RUNS (a file to keep the JSON lines of every run in).
set -euo pipefail
cd "$(dirname "$0")/.."

SMOKE=${BENCH_SMOKE:-0}
ROUNDS=${BENCH_ROUNDS:-1}
SCENARIOS=${BENCH_SCENARIOS:-connect hold fanout-throughput fanout-latency echo}
if [ "$SMOKE" = 1 ]; then
  OUT=${BENCH_OUT:-}
else
  OUT=${BENCH_OUT:-BENCHMARKS.md}
fi
HEADING="## Side by side with the transport ceiling (issue 5)"

# Throwaway secrets of a throwaway server on loopback; fixed so the commands recorded in
# BENCHMARKS.md are exactly the ones that ran.
JWT_SECRET_VALUE=roomgate-bench-jwt-secret-0123456789abcdef
WS_SECRET_VALUE=roomgate-bench-ws-secret-0123456789abcdef0
ADMIN_PASSWORD=roomgate-bench-admin-password

# Scenario arguments, standard and smoke.
if [ "$SMOKE" = 1 ]; then
  ARGS_connect="-n 500 -c 50"
  ARGS_hold="-n 500 --rooms 10 -t 2 --cycles 2 --settle-secs 1"
  ARGS_fanout_throughput="-r 2 -s 50 -p 1 -m 500 -t 2"
  ARGS_fanout_latency="-r 4 -s 100 -p 1 -m 5 -t 2"
  ARGS_echo="-n 1000"
else
  ARGS_connect="-n 10000 -c 200"
  ARGS_hold="-n 19900 --rooms 100 -t 30 --cycles 3"
  ARGS_fanout_throughput="-r 10 -s 100 -p 1 -m 1000 -t 3"
  ARGS_fanout_latency="-r 20 -s 500 -p 1 -m 5 -t 20"
  ARGS_echo="-n 10000"
fi

# Both servers and the tool hold up to ~20,000 sockets: use the whole open-file limit.
ulimit -n "$(ulimit -Hn)"

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
  PINNING="server on core 0 (\`taskset -c 0\`), load tool on core 1 (\`taskset -c 1\`)"
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

RUNS="$work/runs.jsonl"
: >"$RUNS"
COMMANDS=()
# Prints a command as it can be pasted into a shell.
quote() { printf '%q ' "$@" | sed 's/ $//'; }
# Remembers a command once (the same command line recurs across rounds).
remember() {
  local c
  for c in "${COMMANDS[@]+"${COMMANDS[@]}"}"; do
    [ "$c" = "$1" ] && return 0
  done
  COMMANDS+=("$1")
}

# start_server KIND NAME: starts roomgate or the ceiling on 127.0.0.1:0 (roomgate in
# $work/NAME); sets ADDR once it listens and server_pid (taskset and env exec, so it is
# the server's own PID).
start_server() {
  local kind=$1 name=$2
  local dir="$work/$name"
  mkdir -p "$dir"
  local cmd
  if [ "$kind" = roomgate ]; then
    cmd=(env ROOMGATE_RATE_LIMITS__ENABLED=false
      ROOMGATE_CONNECTION__MAX_UNAUTHENTICATED_PER_IP=1000000
      ROOMGATE_CONNECTION__MAX_CONNECTIONS_PER_USER=1000000
      ROOMGATE_CONNECTION__MAX_CONNECTIONS=1000000
      ROOMGATE_CONNECTION__MAX_CONNECTIONS_PER_IP=1000000
      ROOMGATE_ROOMS__MAX_PARTICIPANTS=1000000
      JWT_SECRET="$JWT_SECRET_VALUE" WS_SECRET="$WS_SECRET_VALUE"
      ROOMGATE_ADMIN_PASSWORD="$ADMIN_PASSWORD"
      ${SERVER_PIN[@]+"${SERVER_PIN[@]}"} "$BIN/roomgate" serve --listen 127.0.0.1:0 --data "$dir/data")
  else
    cmd=(${SERVER_PIN[@]+"${SERVER_PIN[@]}"} "$BIN/roomgate-ceiling" --listen 127.0.0.1:0)
  fi
  remember "$(quote "${cmd[@]}" | sed "s|$work/[^/]*|\$TMP|g")"
  # Created here, not only by the background redirection, so the first read below
  # cannot come before the file exists.
  : >"$dir/stdout"
  "${cmd[@]}" >"$dir/stdout" 2>"$dir/stderr" &
  server_pid=$!
  ADDR=""
  for _ in $(seq 300); do
    ADDR=$(sed -n 's|^roomgate[-a-z]* listening on http://||p' "$dir/stdout" | head -n 1)
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

# CPU accounting, to tell whether other work shared the machine during a run: CPU time
# (user + system) of the whole machine from /proc/stat, minus that of this script's
# children (the server and the load tool, counted once they are waited for), is what
# everything else used. Steal is time the hypervisor gave to other guests.
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
OTHER_MAX=0
CPU_NOTES=()
# measure_end NAME: notes what share of the machine other processes and steal took.
measure_end() {
  local busy steal ours wall line other st us
  read -r busy steal <<<"$(cpu_now)"
  times >"$work/times"
  ours=$(children_secs)
  wall=$(date +%s.%N)
  line=$(awk -v busy="$busy" -v b0="$m_busy" -v steal="$steal" -v s0="$m_steal" \
    -v ours="$ours" -v o0="$m_ours" -v wall="$wall" -v w0="$m_wall" -v n="$(nproc)" 'BEGIN {
      cap = (wall - w0) * n
      other = (busy - b0) - (ours - o0); if (other < 0) other = 0
      printf "%.0f %.0f %.0f", 100 * other / cap, 100 * (steal - s0) / cap, 100 * (ours - o0) / cap
    }')
  read -r other st us <<<"$line"
  CPU_NOTES+=("$1: servers and load tool $us%, other processes $other%, steal $st% of the machine's CPU")
  [ "$other" -gt "$OTHER_MAX" ] && OTHER_MAX=$other
  [ "$st" -gt "$OTHER_MAX" ] && OTHER_MAX=$st
  return 0
}

# run_one KIND SCENARIO ROUND: one run of a scenario against a fresh server; its JSON
# line is appended to $RUNS.
run_one() {
  local kind=$1 scenario=$2 round=$3 sub args
  case $scenario in
    connect) sub=connect; args=$ARGS_connect ;;
    hold) sub=hold; args=$ARGS_hold ;;
    fanout-throughput) sub=fanout; args=$ARGS_fanout_throughput ;;
    fanout-latency) sub=fanout; args=$ARGS_fanout_latency ;;
    echo) sub=echo-latency; args=$ARGS_echo ;;
    *) echo "bench: unknown scenario $scenario" >&2; exit 1 ;;
  esac
  start_server "$kind" "$kind-$scenario-$round"
  # shellcheck disable=SC2206 # the scenario arguments are words on purpose
  local cmd=(${TOOL_PIN[@]+"${TOOL_PIN[@]}"} "$BIN/roomgate-bench" "$sub" --url "http://$ADDR"
    --secret "$JWT_SECRET_VALUE" --server-pid "$server_pid" --label "$kind" $args)
  remember "$(quote "${cmd[@]}" | sed -e "s|http://$ADDR|http://\$ADDR|g" -e "s|--server-pid $server_pid|--server-pid \$PID|g")"
  echo "bench: round $round, $scenario against $kind" >&2
  "${cmd[@]}" >>"$RUNS"
  stop_server
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started=$(date +%s)
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="roomgate ceiling"; else order="ceiling roomgate"; fi
  for scenario in $SCENARIOS; do
    measure_begin
    for kind in $order; do
      run_one "$kind" "$scenario" "$round"
    done
    measure_end "$scenario runs of round $round"
  done
done
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "${BENCH_RUNS:-}" ] && cp "$RUNS" "$BENCH_RUNS"
tables=$("$BIN/roomgate-bench" report --runs "$RUNS")

if [ -z "$OUT" ]; then
  echo "$tables"
  exit 0
fi

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
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench.sh\` at commit $commit,"
  echo "release build ($(rustc --version 2>/dev/null || echo 'rustc unknown')), $ROUNDS round(s), $((elapsed / 60)) min."
  echo
  echo "- Machine: $(nproc) cores shared by the server and the load tool, ${model:-unknown CPU}, Linux $(uname -r)"
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
  echo "- **The two servers.** \`roomgate\` is the release binary with the rate limits lifted"
  echo "  (\`ROOMGATE_RATE_LIMITS__ENABLED=false\`) and the connection (total, per IP, unauthenticated"
  echo "  per IP), per-user and per-room caps raised,"
  echo "  everything else at its defaults: tokens verified, sessions, rooms and history written to"
  echo "  sled, join and leave announced, logging at \`info\`. \`ceiling\` is \`roomgate-ceiling\`"
  echo "  (\`bench/src/roomgate-ceiling.rs\`): tokio and tungstenite with roomgate's buffer sizes and"
  echo "  per-connection queue, any \`auth\` accepted unread, \`join\`, one serialisation per"
  echo "  broadcast, \`heartbeat_response\`; no persistence, no presence frames, no limits. It is the"
  echo "  floor of this work on this machine; a ratio is roomgate's figure over the ceiling's in"
  echo "  the same run (above 1× means more, not better: read the column)."
  echo "- **Every connection** is its own user with its own HS256 token, minted before the clock"
  echo "  starts, and connects from one of 16 source addresses 127.0.0.2-17 in turn."
  echo "- **connect**: time from the start of the TCP connect to \`auth_success\` (upgrade,"
  echo "  \`handshake\`, \`auth\` included); connections/s over the span from the first connect to"
  echo "  the last \`auth_success\`; all stay open until the end."
  echo "- **hold**: connections authenticated and joined to the rooms in turn, then held with"
  echo "  heartbeats at the server's advertised interval; KiB per connection is (RSS at the end"
  echo "  of the hold - RSS before the first connect) / connections still open, from"
  echo "  \`/proc/PID/status\` VmRSS. The after-close RSS is read a few seconds after every"
  echo "  connection closed, once per cycle; growth is the last cycle's minus the first's."
  echo "- **fanout**: publishers send on a fixed schedule (open loop) a message whose content"
  echo "  carries publisher, sequence number and send time; every subscriber accounts for every"
  echo "  message of its room: lost (never arrived within 10 s after the window), duplicated,"
  echo "  reordered (lower than one already seen from the same publisher). Latency is from the"
  echo "  publisher's send to the subscriber's read, on one clock (both in the load tool), so it"
  echo "  includes the load tool's own queueing: the tool CPU column shows when the tool's core"
  echo "  was the limit. delivered/s counts subscribers' deliveries inside the sending window."
  echo "  Deliveries per server CPU-s divide all deliveries by the server's user+system CPU"
  echo "  seconds from \`/proc/PID/stat\` between the first message and the last delivery."
  echo "- **echo-latency**: one client alone in a room sends a message and waits for its"
  echo "  broadcast back before sending the next."
  echo "- Latencies: hdrhistogram, microsecond resolution, 3 significant digits."
  echo "- All load comes from the same machine over loopback. The numbers compare builds on one"
  echo "  machine; they are not capacity figures for production hardware."
  echo
  echo "Commands (\$TMP is a fresh temporary directory, \$ADDR the address and \$PID the process"
  echo "id of the server just started; each server is started afresh for each run):"
  echo
  echo '```'
  echo "ulimit -n \"\$(ulimit -Hn)\""
  echo "cargo build --release -p roomgate -p roomgate-bench"
  for c in "${COMMANDS[@]}"; do
    echo "$c"
  done
  echo '```'
} >"$section"

[ -f "$OUT" ] || printf '# roomgate benchmarks\n' >"$OUT"
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
