#!/usr/bin/env bash
# Queqiao benchmark suite: builds release, starts a fresh `queqiao` per run pinned to one
# core and `queqiao-load` on another, runs the WebRTC scenarios REPEATS times each and
# rewrites the tables in BENCHMARKS.md (between the bench:* marker comments) with medians,
# the exact commands and the machine.
#
#   tests/bench/run.sh                    all WebRTC scenarios, 3 runs each, + capacity search
#   SCENARIOS="200" REPEATS=1 tests/bench/run.sh     one scenario, one run
#   CAPACITY=0 tests/bench/run.sh         skip the capacity search
#   NO_BUILD=1 BIN_DIR=/path tests/bench/run.sh      use prebuilt binaries
#   UPDATE=0 tests/bench/run.sh           do not touch BENCHMARKS.md (results stay in OUT)
#   WEBRTC=0 CAPACITY=0 tests/bench/run.sh   only the HTTP players (HTTP=0 skips them)
#   WAIT_FOR_IDLE=1 tests/bench/run.sh    before each run, wait until no other benchmark
#                                         (queqiao-load chat|webrtc, tests/run.sh) runs
#   WEBRTC_EXTRA="--ignore-pli --viewer-feedback engine" tests/bench/run.sh
#                                         extra queqiao-load webrtc options for every WebRTC
#                                         run (default: none — browser-like viewer feedback
#                                         and a publisher that answers PLIs)
#
# HTTP players (HTTP=1, the default): FLV_PLAYERS (100) HTTP-FLV viewers and LLHLS_PLAYERS
# (20) LL-HLS players, REPEATS runs each, and TS_HLS_RUNS (0) runs of TS_HLS_PLAYERS (20)
# MPEG-TS HLS players; their Markdown rows go to $OUT/http.md and, with UPDATE=1, between the
# bench:http markers of BENCHMARKS.md.
#
# Scenarios: a number N = N viewers joining at once; joinN = N viewers joining within one
# second. The capacity search raises the viewer count until loss reaches 0.5 % (or viewers
# fail, or the load generator itself runs out of CPU), then bisects.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
REPEATS=${REPEATS:-3}
SCENARIOS=${SCENARIOS:-"50 100 200 400 join50"}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-3}
CAPACITY=${CAPACITY:-1}
CAPACITY_START=${CAPACITY_START:-400}
CAPACITY_STEP=${CAPACITY_STEP:-200}
CAPACITY_MAX=${CAPACITY_MAX:-3000}
CAPACITY_LOSS=${CAPACITY_LOSS:-0.5}
UPDATE=${UPDATE:-1}
WEBRTC=${WEBRTC:-1}
HTTP=${HTTP:-1}
WAIT_FOR_IDLE=${WAIT_FOR_IDLE:-0}
WEBRTC_EXTRA=${WEBRTC_EXTRA:-}
FLV_PLAYERS=${FLV_PLAYERS:-100}
LLHLS_PLAYERS=${LLHLS_PLAYERS:-20}
TS_HLS_PLAYERS=${TS_HLS_PLAYERS:-20}
TS_HLS_RUNS=${TS_HLS_RUNS:-0}
# The machine is shared: other work competes for the cores our processes are pinned to.
# Real-time priority keeps it from preempting the server and the load generator (the
# kernel still leaves 5 % of each core to others). Empty strings run at normal priority.
SERVER_SCHED=${SERVER_SCHED-chrt -f 10}
LOAD_SCHED=${LOAD_SCHED-chrt -f 5}
HTTP_PORT=${HTTP_PORT:-18480}
UDP_PORT=${UDP_PORT:-13480}
TOKEN=bench-token
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=${BIN_DIR:-$TARGET/release}
OUT=${OUT:-$TARGET/bench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

step() { printf '\n\033[1;35m==> %s\033[0m\n' "$*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  step "Building release binaries"
  cargo build --release -p queqiao -p queqiao-tests --bin queqiao --bin queqiao-load
fi
SERVER_BIN=$BIN_DIR/queqiao
LOAD_BIN=$BIN_DIR/queqiao-load
[ -x "$SERVER_BIN" ] && [ -x "$LOAD_BIN" ] || { echo "missing $SERVER_BIN or $LOAD_BIN" >&2; exit 1; }

# Publishing with the bearer token needs standalone mode where the server has accounts.
SERVER_FLAGS=(--http "127.0.0.1:$HTTP_PORT" --udp "127.0.0.1:$UDP_PORT" --publish-token "$TOKEN")
SERVER_FLAGS+=(--media-threads "${MEDIA_THREADS:-1}")  # one shard on one core unless asked
SERVER_FLAGS+=(--limits-exempt 127.0.0.0/8)  # the load generator is thousands of clients on one address
if "$SERVER_BIN" --help 2>/dev/null | grep -q -- '--standalone'; then
  SERVER_FLAGS+=(--standalone)
fi

# shellcheck source=tests/bench/server.sh
. "$ROOT/tests/bench/server.sh"

# The machine is shared: optionally wait for other benchmarks to end before each run.
wait_for_idle() {
  [ "$WAIT_FOR_IDLE" = 1 ] || return 0
  local said=0
  while pgrep -f 'queqiao-load (chat|webrtc)' >/dev/null || pgrep -f 'tests/run.sh' >/dev/null; do
    [ "$said" = 1 ] || echo "waiting for other benchmarks to finish ($(date -u +%T))" >&2
    said=1
    sleep 5
  done
  [ "$said" = 0 ] || echo "idle again ($(date -u +%T))" >&2
}

# run_load JSON ARGS... : one run on a fresh server; the JSON report lands in $OUT.
# (SUBCOMMAND=flv|hls picks another scenario; its Markdown row is appended to $OUT/http.md.)
run_load() {
  local json=$1; shift
  wait_for_idle
  start_server
  local extra=()
  # shellcheck disable=SC2206
  if [ "${SUBCOMMAND:-webrtc}" != webrtc ]; then extra=(--markdown "$OUT/http.md"); else extra=($WEBRTC_EXTRA); fi
  # shellcheck disable=SC2206
  local cmd=($LOAD_SCHED taskset -c "$LOAD_CORE" "$LOAD_BIN" "${SUBCOMMAND:-webrtc}" "${extra[@]}"
    --whip "http://127.0.0.1:$HTTP_PORT/whip/{room}" --token "$TOKEN"
    --server-pid "$SERVER_PID" --duration "$DURATION" --warmup "$WARMUP"
    --json "$json" "$@")
  echo "${cmd[*]}" >"${json%.json}.cmd"
  "${cmd[@]}" 2>"${json%.json}.log" | tail -n 1 >&2 || echo "run failed: see ${json%.json}.log" >&2
  stop_server
}

scenario_args() {
  case "$1" in
    join*) echo "--viewers ${1#join} --ramp-per-sec ${1#join} --label ${1#join}-joining-in-1s" ;;
    *) echo "--viewers $1 --label $1-viewers" ;;
  esac
}

step "Machine: $MACHINE; commit $COMMIT; results in $OUT"
REPORTS=()
[ "$WEBRTC" = 1 ] || SCENARIOS=""
for scenario in $SCENARIOS; do
  for rep in $(seq "$REPEATS"); do
    step "Scenario $scenario, run $rep/$REPEATS"
    json="$OUT/webrtc-$scenario-$rep.json"
    # shellcheck disable=SC2046
    run_load "$json" $(scenario_args "$scenario")
    [ -s "$json" ] && REPORTS+=("$json")
  done
done

example_cmd="$SERVER_SCHED taskset -c $SERVER_CORE queqiao ${SERVER_FLAGS[*]} --data-dir DIR &
$LOAD_SCHED taskset -c $LOAD_CORE queqiao-load webrtc --whip 'http://127.0.0.1:$HTTP_PORT/whip/{room}' --token $TOKEN --server-pid \$SERVER_PID --duration $DURATION --warmup $WARMUP --viewers N [--ramp-per-sec N] $WEBRTC_EXTRA"
NOTES=(
  "Measured $(date -u +%Y-%m-%d) on $MACHINE, commit $COMMIT. Medians of $REPEATS runs per scenario; each run starts a fresh server."
  ""
  "Command (per run; \`tests/bench/run.sh\` does all of this):"
  ""
  '```'
  "$example_cmd"
  '```'
)
if [ ${#REPORTS[@]} -gt 0 ]; then
  step "Summary"
  summary_args=("${REPORTS[@]}")
  for note in "${NOTES[@]}"; do summary_args+=(--note "$note"); done
  if [ "$UPDATE" = 1 ] && [ -f BENCHMARKS.md ]; then
    summary_args+=(--update BENCHMARKS.md --section webrtc)
  fi
  "$LOAD_BIN" summarize "${summary_args[@]}"
fi

if [ "$HTTP" = 1 ]; then
  # HTTP players: the same publisher (WHIP, paced 720p clip), N players, delay to the live
  # edge. Rows land in $OUT/http.md under one header.
  "$LOAD_BIN" flv --help >/dev/null 2>&1 || { echo "$LOAD_BIN has no flv scenario" >&2; exit 1; }
  {
    echo "Measured $(date -u +%Y-%m-%d) on $MACHINE, commit $COMMIT; server on core $SERVER_CORE ($SERVER_SCHED), load generator on core $LOAD_CORE ($LOAD_SCHED); $DURATION s window after $WARMUP s warm-up; a fresh server per run."
    echo
    echo "| scenario | players | connected | delay p50 / p95 / p99 / max (ms) | TTFF p50 / p95 (ms) | kB/s per player | stalls | errors | server CPU % | server RSS MiB | generator CPU % |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  } >>"$OUT/http.md"
  http_runs() { # NAME RUNS SUBCOMMAND ARGS...
    local name=$1 runs=$2 sub=$3; shift 3
    for rep in $(seq "$runs"); do
      step "HTTP scenario $name, run $rep/$runs"
      SUBCOMMAND=$sub run_load "$OUT/$name-$rep.json" "$@" --label "$name"
    done
  }
  http_runs "flv-$FLV_PLAYERS" "$REPEATS" flv --players "$FLV_PLAYERS"
  http_runs "llhls-$LLHLS_PLAYERS" "$REPEATS" hls --variant llhls --players "$LLHLS_PLAYERS"
  [ "$TS_HLS_RUNS" -gt 0 ] && http_runs "hls-$TS_HLS_PLAYERS" "$TS_HLS_RUNS" hls --variant hls --players "$TS_HLS_PLAYERS"
  step "HTTP results: $OUT/http.md"
  cat "$OUT/http.md" >&2
  if [ "$UPDATE" = 1 ] && [ -f BENCHMARKS.md ]; then
    python3 - "$OUT/http.md" <<'PY'
import re, sys
rows = open(sys.argv[1]).read().strip()
doc = open("BENCHMARKS.md").read()
start, end = "<!-- bench:http:start -->", "<!-- bench:http:end -->"
if start in doc and end in doc:
    doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{rows}\n{end}", doc, flags=re.S)
    open("BENCHMARKS.md", "w").write(doc)
    print("BENCHMARKS.md updated (http)", file=sys.stderr)
PY
  fi
fi

if [ "$CAPACITY" = 1 ]; then
  # passes JSON: loss below the limit, every viewer connected, generator not saturated.
  passes() {
    awk -v limit="$CAPACITY_LOSS" '
      /^  "loss": /              { v = $2; sub(",", "", v); loss = v * 100 }
      /^  "viewers": /           { v = $2; sub(",", "", v); viewers = v }
      /^  "viewers_connected": / { v = $2; sub(",", "", v); connected = v }
      /^  "generator": /         { in_gen = 1 }
      in_gen && /"cpu_percent": / { v = $2; sub(",", "", v); gen = v; in_gen = 0 }
      END { exit !(loss < limit && connected == viewers && gen < 95) }' "$1"
  }
  CAP_REPORTS=()
  good=0; bad=0; n=$CAPACITY_START
  while [ "$n" -le "$CAPACITY_MAX" ]; do
    step "Capacity probe: $n viewers"
    json="$OUT/capacity-$n.json"
    run_load "$json" --viewers "$n" --ramp-per-sec 100 --label "$n-viewers"
    [ -s "$json" ] && CAP_REPORTS+=("$json")
    if [ -s "$json" ] && passes "$json"; then good=$n; n=$((n + CAPACITY_STEP)); else bad=$n; break; fi
  done
  # Bisect between the last good and the first bad count, to 50 viewers.
  while [ "$bad" -gt 0 ] && [ $((bad - good)) -gt 50 ]; do
    n=$(( (good + bad) / 2 / 10 * 10 ))
    step "Capacity probe: $n viewers"
    json="$OUT/capacity-$n.json"
    run_load "$json" --viewers "$n" --ramp-per-sec 100 --label "$n-viewers"
    [ -s "$json" ] && CAP_REPORTS+=("$json")
    if [ -s "$json" ] && passes "$json"; then good=$n; else bad=$n; fi
  done
  verdict="Largest viewer count holding < ${CAPACITY_LOSS}% loss with every viewer connected on one server core: **$good**"
  [ "$bad" -gt 0 ] && verdict="$verdict (first failing count: $bad)."
  [ "$bad" -eq 0 ] && verdict="$verdict (no failure up to CAPACITY_MAX=$CAPACITY_MAX)."
  step "$verdict"
  if [ ${#CAP_REPORTS[@]} -gt 0 ]; then
    cap_args=("${CAP_REPORTS[@]}" --note "$verdict" --note "" --note "One run per probe, viewers joining at 100/s, $DURATION s window, on $MACHINE, commit $COMMIT.")
    if [ "$UPDATE" = 1 ] && [ -f BENCHMARKS.md ]; then
      cap_args+=(--update BENCHMARKS.md --section capacity)
    fi
    "$LOAD_BIN" summarize "${cap_args[@]}"
  fi
fi
step "Done: $OUT"
