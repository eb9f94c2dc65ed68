#!/usr/bin/env bash
# The repository's own standards, checked by CI before the tests (.ci/run) and by hand before a
# commit: formatting (rustfmt.toml), lints with warnings as errors (the workspace's [lints] in
# Cargo.toml, and clippy's defaults), and the dependency policy (deny.toml: licenses, bans,
# sources).
#
#   deploy/local/lint.sh            all three
#   deploy/local/lint.sh fmt        only some: fmt, clippy, deny
#
# cargo-deny's advisories check needs the RustSec database, fetched from GitHub, which the
# project's machines cannot reach: run `cargo deny check advisories` where it can be fetched (a
# developer's laptop, a release pipeline with internet access). Licenses, bans and sources need
# only `cargo metadata` and run here.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE_DIR=${MEMBERLAKE_CACHE_DIR:-$HOME/.cache/memberlake}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE_DIR/target}
CARGO_DENY_VERSION=0.20.2
CHECKS=${*:-fmt clippy deny}

step() { printf '[lint] %s\n' "$*" >&2; }

for check in $CHECKS; do
  start=$(date +%s)
  case $check in
    fmt)
      cargo fmt --all --check
      ;;
    clippy)
      cargo clippy --workspace --all-targets --locked -- -D warnings
      ;;
    deny)
      deny=$CACHE_DIR/cargo-deny/bin/cargo-deny
      if ! "$deny" --version 2>/dev/null | grep -q " $CARGO_DENY_VERSION\$"; then
        step "building cargo-deny $CARGO_DENY_VERSION from crates.io (once per machine)"
        CARGO_TARGET_DIR=$CACHE_DIR/cargo-deny-build \
          cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" --root "$CACHE_DIR/cargo-deny"
      fi
      "$deny" --log-level error check licenses bans sources
      ;;
    *)
      echo "unknown check $check (fmt, clippy, deny)" >&2
      exit 2
      ;;
  esac
  step "$check: ok in $(($(date +%s) - start)) s"
done
