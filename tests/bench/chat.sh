#!/usr/bin/env bash
# Queqiao chat benchmark (issue 4): a fresh `queqiao --seed-demo` per run pinned to one core,
# `queqiao-load chat` on the other, REPEATS runs of each scenario; rewrites the table between
# the `<!-- bench:chat:start/end -->` markers of BENCHMARKS.md with every run and the medians.
#
#   tests/bench/chat.sh                     both scenarios, 3 runs each
#   REPEATS=1 UPDATE=0 tests/bench/chat.sh  one quick run, BENCHMARKS.md untouched
#   NO_BUILD=1 BIN_DIR=/path tests/bench/chat.sh
#
# Scenarios (targets from the issue):
#   chat:  MEMBERS WebSocket members, 200 chat messages/s from SENDERS logged-in senders;
#          p99 send → receive delay at every member ≤ 50 ms.
#   likes: the same room with a storm of 20,000 like taps/s (2,000 `like` messages of 10);
#          server CPU ≤ 50 % of one core.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
REPEATS=${REPEATS:-3}
MEMBERS=${MEMBERS:-2000}
SENDERS=${SENDERS:-200}
MEASURED=${MEASURED:-200}
CHAT_RATE=${CHAT_RATE:-200}
LIKE_RATE=${LIKE_RATE:-20000}
DURATION=${DURATION:-20}
UPDATE=${UPDATE:-1}
SERVER_SCHED=${SERVER_SCHED-chrt -f 10}
LOAD_SCHED=${LOAD_SCHED-chrt -f 5}
HTTP_PORT=${HTTP_PORT:-18490}
UDP_PORT=${UDP_PORT:-13490}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=${BIN_DIR:-$TARGET/release}
OUT=${OUT:-$TARGET/bench/chat-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"

step() { printf '\n\033[1;35m==> %s\033[0m\n' "$*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  step "Building release binaries"
  cargo build --release -p queqiao -p queqiao-tests --bin queqiao --bin queqiao-load
fi
SERVER_BIN=$BIN_DIR/queqiao
LOAD_BIN=$BIN_DIR/queqiao-load
[ -x "$SERVER_BIN" ] && [ -x "$LOAD_BIN" ] || { echo "missing $SERVER_BIN or $LOAD_BIN" >&2; exit 1; }
# 2,000 members plus senders need more descriptors than the usual 1,024 on both sides.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

SERVER_FLAGS=(--http "127.0.0.1:$HTTP_PORT" --udp "127.0.0.1:$UDP_PORT" --seed-demo)
SERVER_FLAGS+=(--limits-exempt 127.0.0.0/8)  # the load generator is thousands of clients on one address
# shellcheck source=tests/bench/server.sh
. "$ROOT/tests/bench/server.sh"

run_load() {
  local json=$1; shift
  start_server
  # shellcheck disable=SC2206
  local cmd=($LOAD_SCHED taskset -c "$LOAD_CORE" "$LOAD_BIN" chat
    --base "http://127.0.0.1:$HTTP_PORT" --room demo --members "$MEMBERS" --measured-members "$MEASURED" --senders "$SENDERS"
    --duration "$DURATION" --server-pid "$SERVER_PID" --quiet --json "$json" "$@")
  echo "${cmd[*]}" >"${json%.json}.cmd"
  "${cmd[@]}" 2>"${json%.json}.log" | tail -n 1 >&2 || echo "run failed: see ${json%.json}.log" >&2
  stop_server
}

step "Machine: $MACHINE; commit $COMMIT; results in $OUT"
for rep in $(seq "$REPEATS"); do
  step "chat: $MEMBERS members, $CHAT_RATE msg/s, run $rep/$REPEATS"
  run_load "$OUT/chat-$rep.json" --messages-per-sec "$CHAT_RATE" --label "chat-$rep"
  step "likes: $MEMBERS members, $LIKE_RATE taps/s, run $rep/$REPEATS"
  run_load "$OUT/likes-$rep.json" --messages-per-sec 0 --likes-per-sec "$LIKE_RATE" --label "likes-$rep"
done

step "Summary"
python3 - "$OUT" "$UPDATE" "$MACHINE" "$COMMIT" "$MEMBERS" "$MEASURED" "$SENDERS" "$CHAT_RATE" "$LIKE_RATE" "$DURATION" "$HTTP_PORT" <<'PY'
import glob, json, os, re, statistics, sys
out, update, machine, commit, members, measured, senders, chat_rate, like_rate, duration, port = sys.argv[1:]

def load(kind):
    runs = []
    for path in sorted(glob.glob(os.path.join(out, f"{kind}-*.json"))):
        with open(path) as f:
            runs.append(json.load(f))
    return runs

def pct(v):
    return "–" if v is None else f"{v:.1f} %"

def row(label, r):
    w = max(r["window_secs"], 1e-9)
    delivered = r["deliveries"] / max(r["deliveries_expected"], 1) if r["deliveries_expected"] else None
    return (f"| {label} | {r['members']} ({r['measured_members']} timed, others {r['drained_bytes_per_member_per_sec']/1000:.0f} kB/s) | {r['messages_sent']/w:.0f} | {r['likes_sent']/w:.0f} | "
            + ("–" if delivered is None else f"{delivered:.4f}")
            + f" | {r['delay_p50_ms']:.1f} / {r['delay_p99_ms']:.1f} / {r['delay_max_ms']:.1f}"
            + f" | {r['like_events_per_member_per_sec']:.1f} | {pct(r['server_cpu_percent'])}"
            + f" | {r['server_rss_per_member_kib'] or 0:.0f} | {pct(r['generator_cpu_percent'])} | {r['sender_errors']} | {r['disconnected']} |")

def median(runs, key):
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None

lines = [
    f"Measured {__import__('datetime').date.today()} on {machine}, commit {commit}; {duration} s windows, a fresh server per run.",
    "",
    "```",
    f"chrt -f 10 taskset -c 0 queqiao --http 127.0.0.1:{port} --data-dir DIR --seed-demo &",
    f"chrt -f 5 taskset -c 1 queqiao-load chat --base http://127.0.0.1:{port} --room demo --members {members} --measured-members {measured} --senders {senders} --server-pid $SERVER_PID --duration {duration} --messages-per-sec {chat_rate}            # chat",
    f"chrt -f 5 taskset -c 1 queqiao-load chat --base http://127.0.0.1:{port} --room demo --members {members} --measured-members {measured} --senders {senders} --server-pid $SERVER_PID --duration {duration} --messages-per-sec 0 --likes-per-sec {like_rate}   # likes",
    "```",
    "",
    "| run | members | chat msg/s | like taps/s | delivered | delay p50 / p99 / max ms | like events/member/s | server CPU | server RSS KiB/member | generator CPU | sender errors | members dropped |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
summary = []
for kind in ("chat", "likes"):
    runs = load(kind)
    for i, r in enumerate(runs, 1):
        lines.append(row(f"{kind} {i}", r))
    if runs:
        summary.append((kind, len(runs), median(runs, "delay_p99_ms"), median(runs, "server_cpu_percent")))
lines.append("")
for kind, n, p99, cpu in summary:
    if kind == "chat":
        lines.append(f"**chat** (median of {n}): delay p99 **{p99:.1f} ms** (target ≤ 50 ms), server CPU {pct(cpu)} of one core.")
    else:
        lines.append(f"**likes** (median of {n}): server CPU **{pct(cpu)}** of one core (target ≤ 50 %).")
text = "\n".join(lines)
print(text)
if update == "1" and os.path.exists("BENCHMARKS.md"):
    with open("BENCHMARKS.md") as f:
        doc = f.read()
    start, end = "<!-- bench:chat:start -->", "<!-- bench:chat:end -->"
    if start in doc and end in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{text}\n{end}", doc, flags=re.S)
        with open("BENCHMARKS.md", "w") as f:
            f.write(doc)
        print("BENCHMARKS.md updated", file=sys.stderr)
PY
step "Done: $OUT"
