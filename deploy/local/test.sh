#!/usr/bin/env bash
# Runs every test against real local stacks, in passes:
#   main     stack up (PostgreSQL, a CQL node, Garage S3) → migrate → fuzz → alert rules (promtool)
#            → schemathesis against both API documents → cargo test --workspace
#            (tests/tests/alerts.rs runs its own Prometheus)
#   secure   a second stack beside it with authentication and TLS (stack.sh up --secure, its own
#            stack dir and port offset 100) → check → migrate → the smoke, ingestion and secure
#            tests against it (tests/tests/secure.rs is #[ignore]d in the main pass) → stack down
#   cluster  a three-node Cassandra stack beside them (up --cql-nodes 3, offset 200) → migrate →
#            tests/tests/cluster.rs (a node killed under load, then two down) → stack down
# The workspace is built once, before the passes. Every pass runs even when an earlier one
# failed; the script fails if any did. The last line counts the tests of all passes:
# `workspace: N passed, M failed` (a pass that failed outside its tests counts as one failure).
#
# MEMBERLAKE_TEST_PASSES="main secure" picks passes (default: $DEFAULT_PASSES below).
# MEMBERLAKE_KEEP_STACKS=1 leaves the secure and cluster stacks running afterwards (to debug).
# Extra arguments go to the main pass's test binaries (e.g. a test name filter).
# Idempotent and cached (~/.cache/memberlake): the first run on a new machine builds Garage and
# fetches Cassandra; later runs reuse both, the stacks' data dirs and the shared CARGO_TARGET_DIR.
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/memberlake/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

DEFAULT_PASSES="main secure cluster"
PASSES=${MEMBERLAKE_TEST_PASSES:-$DEFAULT_PASSES}
TEST_THREADS=${MEMBERLAKE_TEST_THREADS:-2}
# The extra stacks run beside the main one (<repo>/.stack, offset 0): own dirs, own ports.
SECURE_STACK_DIR=${MEMBERLAKE_SECURE_STACK_DIR:-$REPO_ROOT/.stack-secure}
SECURE_PORT_OFFSET=100
CLUSTER_STACK_DIR=${MEMBERLAKE_CLUSTER_STACK_DIR:-$REPO_ROOT/.stack-cluster}
CLUSTER_PORT_OFFSET=200

timed() { # label command...
  local label=$1 t0=$SECONDS rc=0
  shift
  echo "== $label"
  "$@" || rc=$?
  echo "== $label: $((SECONDS - t0))s$( ((rc == 0)) || echo " (FAILED, exit $rc)")"
  return "$rc"
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

# Prometheus and promtool, Debian's package (2.42), for the alert rules: promtool checks and
# unit-tests deploy/prometheus/alerts.yml here, and tests/tests/alerts.rs runs its own prometheus
# process (own config, data dir and port). The package's daemon must not run: policy-rc.d (101 =
# "do not start") keeps the install from starting it, and one started anyway is stopped.
install_prometheus() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 && return 0
  local sudo=() own_policy=0
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  { "${sudo[@]}" apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || rc=$?
  ((own_policy == 0)) || "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || return "$rc"
  if [[ -d /run/systemd/system ]]; then # systemd runs this machine: the unit exists, enabled
    "${sudo[@]}" systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  elif pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    "${sudo[@]}" /etc/init.d/prometheus stop || true
  fi
  if pgrep -u prometheus -x prometheus >/dev/null 2>&1; then
    echo "warning: the prometheus package's daemon is running (port 9090); the tests do not use it" >&2
  fi
}

# The shipped alert rules: valid (promtool check rules) and firing at their thresholds on
# synthetic series (promtool test rules alerts.test.yml).
check_alert_rules() {
  promtool check rules "$REPO_ROOT/deploy/prometheus/alerts.yml" &&
    (cd "$REPO_ROOT/deploy/prometheus" && promtool test rules alerts.test.yml)
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

LOG_DIR=$(mktemp -d)
trap 'rm -rf "$LOG_DIR"' EXIT

# cargo_tests PASS CARGO_TEST_ARGS... : runs the tests, output to the console and to the pass's
# log (counted at the end); prints the pass's own count.
cargo_tests() {
  local pass=$1 log=$LOG_DIR/$1.log t0=$SECONDS rc
  shift
  echo "== cargo test ($pass pass)"
  set +e
  cargo test --no-fail-fast "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  set -e
  echo "== cargo test ($pass pass): $((SECONDS - t0))s, $(count_tests "$log")"
  return "$rc"
}

# count_tests LOG... : "N passed, M failed" over every `test result:` line (cargo prints one per
# test binary).
count_tests() {
  { cat "$@" 2>/dev/null || true; } | awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "%d passed, %d failed", p, f }'
}

# Each pass starts from the environment this script was started with: no stack's settings leak
# from one pass into the next (the pass runs in a subshell; see run_pass).
clear_stack_env() {
  local v
  for v in $(compgen -e); do
    case $v in
      MEMBERLAKE_STACK_DIR | MEMBERLAKE_STACK_PORT_OFFSET | MEMBERLAKE_DATABASE_* | MEMBERLAKE_SCYLLA_* | \
        MEMBERLAKE_LAKE_URL | MEMBERLAKE_CQLSH* | MEMBERLAKE_TEST_S3_LAKE_URL | AWS_*) unset "$v" ;;
    esac
  done
}

# ---- the main pass: every test of the workspace against the plain stack ------------------------
main_pass() {
  timed "chromium" install_chromium
  timed "prometheus (Debian's package)" install_prometheus
  timed "python for deploy checks" deploy_python
  timed "stack up" "$SCRIPT_DIR/stack.sh" up
  eval "$("$SCRIPT_DIR/stack.sh" env)"
  timed "drop earlier runs' test keyspaces" "$SCRIPT_DIR/stack.sh" clean-tests
  timed "migrate" env MEMBERLAKE_LOG=warn "$CARGO_TARGET_DIR/debug/memberlake" migrate
  # Bounded fuzzing of the line parser, the range scanner and the matcher's request grammar.
  timed "fuzz (bounded)" env MEMBERLAKE_FUZZ_SECONDS="${MEMBERLAKE_FUZZ_SECONDS:-20}" bash "$SCRIPT_DIR/fuzz.sh"
  # A broken rule fails the pass, but the tests still run.
  local rules_rc=0
  timed "alert rules (promtool check + unit tests)" check_alert_rules || rules_rc=$?
  # The API documents against the servers (deploy/local/schemathesis.sh, ~35 s): a finding fails
  # the pass, but the tests still run.
  local documents_rc=0
  timed "schemathesis (API documents)" bash "$SCRIPT_DIR/schemathesis.sh" || documents_rc=$?
  cargo_tests main --workspace -- --test-threads="$TEST_THREADS" "$@" || return
  ((rules_rc == 0)) || return "$rules_rc"
  return "$documents_rc"
}

# ---- the secure pass: authentication and TLS on both databases ---------------------------------
secure_stack() {
  MEMBERLAKE_STACK_DIR=$SECURE_STACK_DIR MEMBERLAKE_STACK_PORT_OFFSET=$SECURE_PORT_OFFSET "$SCRIPT_DIR/stack.sh" "$@"
}

secure_pass() {
  clear_stack_env
  # Stopped at the end, whatever happened (data kept: the next run restarts it in seconds): frees
  # its memory and its idle CPU for the passes after it.
  [[ ${MEMBERLAKE_KEEP_STACKS:-0} == 1 ]] || trap 'timed "secure stack down" secure_stack down' EXIT
  timed "secure stack up (TLS, passwords; offset $SECURE_PORT_OFFSET)" secure_stack up --secure
  eval "$(secure_stack env)"
  timed "secure stack check (TLS logins work, plaintext is refused)" secure_stack check
  timed "secure: drop earlier runs' test keyspaces" secure_stack clean-tests
  timed "secure: migrate" env MEMBERLAKE_LOG=warn "$CARGO_TARGET_DIR/debug/memberlake" migrate
  # --include-ignored runs secure.rs (ignored in the main pass); smoke and ingestion have no
  # ignored tests of their own.
  cargo_tests secure --workspace --test smoke --test ingestion --test secure -- \
    --include-ignored --test-threads="$TEST_THREADS"
}

# ---- the cluster pass: three CQL nodes, one of them killed (tests/tests/cluster.rs) ------------
cluster_stack() {
  MEMBERLAKE_STACK_DIR=$CLUSTER_STACK_DIR MEMBERLAKE_STACK_PORT_OFFSET=$CLUSTER_PORT_OFFSET "$SCRIPT_DIR/stack.sh" "$@"
}

cluster_pass() {
  clear_stack_env
  [[ ${MEMBERLAKE_KEEP_STACKS:-0} == 1 ]] || trap 'timed "cluster stack down" cluster_stack down' EXIT
  timed "cluster stack up (3 CQL nodes; offset $CLUSTER_PORT_OFFSET)" cluster_stack up --cql-nodes 3
  eval "$(cluster_stack env)"
  timed "cluster: drop earlier runs' test keyspaces" cluster_stack clean-tests
  timed "cluster: migrate" env MEMBERLAKE_LOG=warn "$CARGO_TARGET_DIR/debug/memberlake" migrate
  # cluster.rs stops and starts nodes: alone, one test at a time. --nocapture: its report (the
  # matcher's answers and p50/p99 per phase of the node loss) is part of the run's output.
  cargo_tests cluster --workspace --test cluster -- --include-ignored --test-threads=1 --nocapture
}

# ---- passes ----------------------------------------------------------------------------------------
RESULTS=()
FAILED_PASSES=0
EXTRA_FAILURES=0

# run_pass NAME ARGS... : NAME_pass in a subshell with errexit (a failing step ends that pass
# only), timed and counted.
run_pass() {
  local name=$1 t0=$SECONDS rc counts failed
  shift
  echo
  echo "======== $name pass"
  set +e
  (
    set -e
    "${name}_pass" "$@"
  )
  rc=$?
  set -e
  counts=$(count_tests "$LOG_DIR/$name.log")
  if ((rc != 0)); then
    FAILED_PASSES=$((FAILED_PASSES + 1))
    failed=$(awk '{ print $3 }' <<<"$counts")
    if ((failed == 0)); then
      # Failed before or outside its tests (stack, migrate, build): one failure in the count.
      EXTRA_FAILURES=$((EXTRA_FAILURES + 1))
      counts="$counts; failed outside its tests, counted as 1 failure"
    fi
  fi
  RESULTS+=("$(printf '%-8s %-6s %5ss  %s' "$name" "$( ((rc == 0)) && echo ok || echo FAILED)" $((SECONDS - t0)) "$counts")")
}

# The main pass needs every test binary; the other passes' own are built by their cargo test.
if [[ " $PASSES " == *" main "* ]]; then
  timed "build (bins and tests)" cargo build --workspace --bins --tests
else
  timed "build (bins)" cargo build --workspace --bins
fi
for pass in $PASSES; do
  case $pass in
    main) run_pass main "$@" ;;
    secure | cluster) run_pass "$pass" ;;
    *) echo "unknown pass '$pass' in MEMBERLAKE_TEST_PASSES (main, secure, cluster)" >&2; exit 2 ;;
  esac
done

echo
echo "======== passes"
printf '%s\n' "${RESULTS[@]}"
# One closing line for all passes.
total=$(count_tests "$LOG_DIR"/*.log)
passed=$(awk '{ print $1 }' <<<"$total")
failed=$(awk '{ print $3 }' <<<"$total")
printf '\nworkspace: %d passed, %d failed\n' "$passed" $((failed + EXTRA_FAILURES))
((FAILED_PASSES == 0))
