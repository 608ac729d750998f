# Shared by the benchmark scripts (sourced, not run): the machine line, and a fresh
# `queqiao` per run pinned to $SERVER_CORE with $SERVER_SCHED, started with
# "${SERVER_FLAGS[@]}" and a throwaway data directory under $OUT.
# Needs: SERVER_BIN, SERVER_FLAGS, SERVER_CORE, SERVER_SCHED, HTTP_PORT, OUT.

CPU_MODEL=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
MACHINE="$(nproc) cores ($CPU_MODEL), Linux $(uname -r), $(awk '/MemTotal/{printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if ! git diff --quiet 2>/dev/null; then COMMIT="$COMMIT+changes"; fi

SERVER_PID=
SERVER_DATA=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
  # Keep the server's log, drop its database and recordings.
  if [ -n "$SERVER_DATA" ] && [ -d "$SERVER_DATA" ]; then
    mv "$SERVER_DATA/server.log" "$SERVER_DATA.server.log" 2>/dev/null || true
    rm -rf "$SERVER_DATA"
  fi
  SERVER_DATA=
}
trap stop_server EXIT

start_server() {
  local data
  data=$(mktemp -d "$OUT/data.XXXX")
  SERVER_DATA=$data
  # shellcheck disable=SC2086
  $SERVER_SCHED taskset -c "$SERVER_CORE" "$SERVER_BIN" "${SERVER_FLAGS[@]}" --data-dir "$data" >"$data/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "server did not start; see $data/server.log" >&2
  exit 1
}
