#!/usr/bin/env bash
# Runs every test against the real local stack:
#   stack up (PostgreSQL, a CQL node, Garage S3) → build → migrate → cargo test --workspace
# Idempotent and cached (~/.cache/memberlake): the first run on a new machine builds Garage and
# fetches Cassandra; later runs reuse both and the shared CARGO_TARGET_DIR.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/memberlake/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

timed() { # label command...
  local label=$1; shift
  local t0=$SECONDS
  echo "== $label"
  "$@"
  echo "== $label: $((SECONDS - t0))s"
}

# Headless Chromium for the status-page test (Debian's package; no browser download).
install_chromium() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
}

# Python with kubernetes-validate for the deploy/ manifests test.
deploy_python() {
  local venv=${MEMBERLAKE_CACHE_DIR:-$HOME/.cache/memberlake}/venv-deploy
  local want="kubernetes-validate==1.37.0 PyYAML==6.0.3"
  if ! [[ -x $venv/bin/python && -f $venv/.requirements && $(<"$venv/.requirements") == "$want" ]]; then
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q $want
    echo "$want" >"$venv/.requirements"
  fi
  export MEMBERLAKE_DEPLOY_PYTHON=$venv/bin/python
}

timed "chromium" install_chromium
timed "python for deploy checks" deploy_python
timed "stack up" "$SCRIPT_DIR/stack.sh" up
eval "$("$SCRIPT_DIR/stack.sh" env)"
timed "drop earlier runs' test keyspaces" "$SCRIPT_DIR/stack.sh" clean-tests
timed "build (bins and tests)" cargo build --workspace --bins --tests
timed "migrate" env MEMBERLAKE_LOG=warn "$CARGO_TARGET_DIR/debug/memberlake" migrate
# Bounded fuzzing of the line parser, the range scanner and the matcher's request grammar.
timed "fuzz (bounded)" env MEMBERLAKE_FUZZ_SECONDS="${MEMBERLAKE_FUZZ_SECONDS:-20}" bash "$SCRIPT_DIR/fuzz.sh"
run_tests() {
  local log t0=$SECONDS; log=$(mktemp)
  echo "== cargo test"
  set +e
  cargo test --workspace --no-fail-fast -- --test-threads="${MEMBERLAKE_TEST_THREADS:-2}" "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  set -e
  echo "== cargo test: $((SECONDS - t0))s"
  # One closing line for the whole workspace (cargo prints one per test binary, the last of
  # which is often an empty doc-test run).
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "\nworkspace: %d passed, %d failed\n", p, f }' "$log"
  rm -f "$log"
  return "$rc"
}
run_tests "$@"
