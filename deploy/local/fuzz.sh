#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for a bounded time: MEMBERLAKE_FUZZ_SECONDS each
# (default 20). cargo-fuzz is installed from crates.io into the cache on first use. The stable
# toolchain is used with RUSTC_BOOTSTRAP=1, which lets it accept the -Z flags cargo-fuzz passes
# (no nightly toolchain can be downloaded here).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE_DIR=${MEMBERLAKE_CACHE_DIR:-$HOME/.cache/memberlake}
SECONDS_EACH=${MEMBERLAKE_FUZZ_SECONDS:-20}
FUZZ=$CACHE_DIR/cargo-fuzz/bin/cargo-fuzz
if [[ ! -x $FUZZ ]]; then
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$CACHE_DIR/cargo-fuzz" --target-dir "$CACHE_DIR/cargo-fuzz-build"
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=$CACHE_DIR/fuzz-target
cd "$REPO_ROOT"
corpus_root=$CACHE_DIR/fuzz-corpus
for target in $("$FUZZ" list --fuzz-dir fuzz); do
  mkdir -p "$corpus_root/$target"
  echo "== fuzz $target for ${SECONDS_EACH}s"
  log=$(mktemp)
  set +e
  "$FUZZ" run --fuzz-dir fuzz "$target" "$corpus_root/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^(Done [0-9]+ runs|stat::number_of_executed_units)" "$log" || true
  if ((rc != 0)); then
    tail -n 60 "$log"
    echo "fuzz target $target failed (exit $rc); the crashing input is under fuzz/artifacts/$target/"
    exit 1
  fi
  rm -f "$log"
done
echo "fuzz: all targets ran ${SECONDS_EACH}s without a failure"
