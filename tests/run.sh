#!/usr/bin/env bash
# Runs Queqiao's whole test suite on a Debian machine, installing what it needs first.
#
#   ./tests/run.sh            everything: lints, unit, end-to-end, browser tests
#   FUZZ_SECONDS=30 ./tests/run.sh   … plus a short cargo-fuzz run of every fuzz target
#
# Needs: the Rust toolchain (cargo), Node.js + npm, and apt-get (root or sudo) for the
# system packages. Safe to run repeatedly; installs are skipped when already present.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n\033[1;35m==> %s\033[0m\n' "$*"; }

# ---------------------------------------------------------------------------------------
step "System packages"
PACKAGES=(build-essential pkg-config libopus-dev chromium ffmpeg fonts-wqy-zenhei nginx libnginx-mod-rtmp postgresql python3 python3-venv fonts-noto-color-emoji)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  # Root needs no sudo (a fresh Debian image has none); a normal user needs it.
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=$(command -v sudo) || { echo "installing ${missing[*]} needs root or sudo" >&2; exit 1; }
  fi
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all present"
fi

# ---------------------------------------------------------------------------------------
step "Python packages (PyAV: FFmpeg 8 and its WHIP muxer, for tests/tests/whip_encoders.rs)"
# PyAV's wheels bundle FFmpeg 8 (Debian's ffmpeg 5.1 has no WHIP muxer). A venv under
# target/ keeps it off the system Python; the pin keeps the FFmpeg the test ran against.
PYAV_VERSION=18.1.0
PYENV="$ROOT/target/pyenv"
if ! "$PYENV/bin/python" -c "import av, sys; sys.exit(av.__version__ != '$PYAV_VERSION')" 2>/dev/null; then
  python3 -m venv "$PYENV"
  "$PYENV/bin/pip" install --quiet --disable-pip-version-check "av==$PYAV_VERSION"
fi
export QUEQIAO_PYTHON="$PYENV/bin/python"
echo "PyAV $("$QUEQIAO_PYTHON" -c 'import av; print(av.__version__, "with FFmpeg", av.ffmpeg_version_info)')"

# ---------------------------------------------------------------------------------------
step "Node packages (browser tests)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# ---------------------------------------------------------------------------------------
step "Format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# ---------------------------------------------------------------------------------------
step "Throwaway PostgreSQL (storage and end-to-end tests run on SQLite and PostgreSQL)"
PG_DIR=$(mktemp -u /tmp/queqiao-pg-XXXXXX)
# On every exit (a failure too): stop PostgreSQL, and index the browser tests' screenshots
# (tests/browser/artifacts/index.html, one page with each screenshot the run kept).
index_screenshots() {
  local dir=tests/browser/artifacts
  [ -d "$dir" ] || return 0
  local shots=("$dir"/*.png)
  [ -e "${shots[0]}" ] || return 0
  {
    echo '<!doctype html><meta charset="utf-8"><title>Queqiao test screenshots</title>'
    echo '<style>body{font:14px sans-serif}figure{display:inline-block;margin:8px;vertical-align:top}img{max-width:320px;border:1px solid #ccc}</style>'
    for shot in "${shots[@]}"; do
      local name; name=$(basename "$shot")
      echo "<figure><a href=\"$name\"><img src=\"$name\" loading=\"lazy\"></a><figcaption>$name</figcaption></figure>"
    done
  } > "$dir/index.html"
  echo "screenshots: ${#shots[@]} in $ROOT/$dir (index.html)"
}
trap 'tests/postgres.sh stop "$PG_DIR" >/dev/null 2>&1 || true; index_screenshots' EXIT
eval "$(tests/postgres.sh start "$PG_DIR")"
export QUEQIAO_REQUIRE_POSTGRES=1
echo "PostgreSQL at $QUEQIAO_TEST_POSTGRES_URL"

# ---------------------------------------------------------------------------------------
step "Build (every test and binary once)"
# One feature resolution for everything: `cargo test --workspace` unifies the features of
# every package and dev-dependency, so a later `cargo build -p queqiao` (fewer packages,
# fewer features) would rebuild axum, reqwest and their dependents for minutes. The
# browser and mini-program tests below use the `queqiao` binary this build makes for the
# CLI tests (target/debug/queqiao) instead of building their own.
cargo test --workspace --locked --no-run

# ---------------------------------------------------------------------------------------
step "Unit and integration tests"
# End-to-end tests run real WebRTC peers; one test at a time keeps a 2-core machine honest.
cargo test --workspace --locked --no-fail-fast -- --test-threads=1

# ---------------------------------------------------------------------------------------
step "Browser tests (headless Chromium against the queqiao binary)"
test -x target/debug/queqiao || { echo "target/debug/queqiao was not built by cargo test" >&2; exit 1; }
(cd tests/browser && QUEQIAO_BIN="$ROOT/target/debug/queqiao" npm test)

# ---------------------------------------------------------------------------------------
step "Mini-program tests (WeChat/Alipay pages in miniprogram-simulate against the queqiao binary)"
# Uses tests/browser/harness.mjs (installed above) to start queqiao and publish a live room.
(cd tests/miniprogram && npm ci --no-audit --no-fund --loglevel=error && QUEQIAO_BIN="$ROOT/target/debug/queqiao" npm test)

# ---------------------------------------------------------------------------------------
if [ "${FUZZ_SECONDS:-0}" -gt 0 ]; then
  step "Fuzzing (${FUZZ_SECONDS}s per target)"
  command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
  for dir in sfu/fuzz bridge/fuzz signaling/fuzz; do
    [ -d "$dir" ] || continue
    (cd "$dir" && for target in $(RUSTC_BOOTSTRAP=1 cargo fuzz list); do
      mkdir -p "corpus/$target"
      seeds=(); [ -d "seeds/$target" ] && seeds=("seeds/$target")
      RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=4096
    done)
  done
fi

step "All tests passed"
