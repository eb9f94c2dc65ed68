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

timed "stack up" "$SCRIPT_DIR/stack.sh" up
eval "$("$SCRIPT_DIR/stack.sh" env)"
timed "build (bins and tests)" cargo build --workspace --bins --tests
timed "migrate" env MEMBERLAKE_LOG=warn "$CARGO_TARGET_DIR/debug/memberlake" migrate
timed "cargo test" cargo test --workspace -- --test-threads="${MEMBERLAKE_TEST_THREADS:-2}" "$@"
