#!/usr/bin/env bash
# Instructions per forwarded packet: runs `queqiao` under valgrind's callgrind while
# `queqiao-load` feeds it VIEWERS viewers, zeroes the counters once everyone has joined,
# and dumps them after WINDOW seconds. Instruction counts do not care how busy the machine
# is, so two builds can be compared on a shared box (timing benchmarks cannot).
#
#   tests/bench/callgrind.sh OUT [VIEWERS] [extra queqiao-load args…]
#   SERVER_BIN=path/to/queqiao LOAD_BIN=path/to/queqiao-load tests/bench/callgrind.sh /tmp/cg 20
#
# Prints `Ir/pkt` (all server instructions in the window ÷ packets forwarded) and the rtc
# engine's write path alone (`flush_writes`: interceptors, SRTP, pipeline); inspect with
#   callgrind_annotate --inclusive=yes OUT.1 | less
# Under callgrind the server runs ~20-50× slower: keep VIEWERS small (20 keeps up).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:?usage: callgrind.sh OUT [VIEWERS] [args…]}
VIEWERS=${2:-20}
shift $(( $# >= 2 ? 2 : 1 ))
TARGET=${CARGO_TARGET_DIR:-$(pwd)/target}
SERVER_BIN=${SERVER_BIN:-$TARGET/release/queqiao}
LOAD_BIN=${LOAD_BIN:-$TARGET/release/queqiao-load}
WINDOW=${WINDOW:-10}
HTTP_PORT=${HTTP_PORT:-18492}
UDP_PORT=${UDP_PORT:-13492}
TOKEN=callgrind-token
DATA=$(mktemp -d)
cleanup() {
  [ -n "${LOAD_PID:-}" ] && kill "$LOAD_PID" 2>/dev/null || true
  [ -n "${SERVER_PID:-}" ] && kill -INT "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

FLAGS=(--http "127.0.0.1:$HTTP_PORT" --udp "127.0.0.1:$UDP_PORT" --publish-token "$TOKEN" --data-dir "$DATA")
"$SERVER_BIN" --help 2>/dev/null | grep -q -- '--standalone' && FLAGS+=(--standalone)
# One shard unless MEDIA_THREADS says otherwise (older builds have one and no flag).
"$SERVER_BIN" --help 2>/dev/null | grep -q -- '--media-threads' && FLAGS+=(--media-threads "${MEDIA_THREADS:-1}")
# VALGRIND_EXTRA="--separate-threads=yes" writes one profile per thread (OUT.1-NN), so the
# media shards' own instructions can be told from the bridge's and the HTTP server's.
# shellcheck disable=SC2086
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT" --dump-instr=no ${VALGRIND_EXTRA:-} \
  "$SERVER_BIN" "${FLAGS[@]}" >"$DATA/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 150); do
  curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
taskset -c 1 "$LOAD_BIN" webrtc --whip "http://127.0.0.1:$HTTP_PORT/whip/{room}" --token "$TOKEN" \
  --viewers "$VIEWERS" --ramp-per-sec 20 --warmup 3 --duration $((WINDOW + 30)) --quiet \
  --server-pid "$SERVER_PID" "$@" >"$DATA/load.log" 2>&1 &
LOAD_PID=$!
# Joins at 20/s, plus the publisher's start and the warm-up.
sleep $((VIEWERS / 20 + 9))
forwarded() { curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk '/^queqiao_sfu_rtp_forwarded_total /{print $2}'; }
before=$(forwarded)
callgrind_control --zero "$SERVER_PID" >/dev/null 2>&1
sleep "$WINDOW"
after=$(forwarded)
callgrind_control --dump=window "$SERVER_PID" >/dev/null 2>&1
packets=$((after - before))
[ "$packets" -gt 0 ] || { echo "nothing forwarded; see $DATA/*.log" >&2; exit 1; }
if [ -f "$OUT.1" ]; then
  total=$(awk '/^summary:/{print $2}' "$OUT.1")
else
  # One profile per thread: the process total, and the media shards' threads alone.
  total=$(cat "$OUT".1-* | awk '/^summary:/{s += $2} END {print s}')
  shards=0
  for f in "$OUT".1-*; do
    if grep -q 'sfu::driver::Driver' "$f"; then
      shards=$((shards + $(awk '/^summary:/{print $2}' "$f")))
    fi
  done
  echo "$(basename "$OUT"): media shard threads Ir/pkt=$((shards / packets))"
fi
engine=0
if [ -f "$OUT.1" ]; then
  engine=$(callgrind_annotate --inclusive=yes --threshold=100 "$OUT.1" 2>/dev/null \
    | awk '/RTCPeerConnection>::flush_writes \[/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
fi
echo "$(basename "$OUT"): forwarded=$packets Ir/pkt=$((total / packets)) engine write path Ir/pkt=$(( ${engine:-0} / packets ))"
