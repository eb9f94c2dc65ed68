#!/usr/bin/env bash
# The API documents are the contract: schemathesis (PyPI) generates requests from each document
# and checks the servers' answers against it, for matcher-api (/v1/openapi.json) and
# meta-service's admin API (/admin/v1/openapi.json), with tokens on.
#
#   deploy/local/schemathesis.sh        needs the local stack up and the debug binaries built
#                                       (deploy/local/test.sh does both; or stack.sh up and
#                                       cargo build --bins)
#
# What it does: a venv with schemathesis pinned ($VENV, made once) → a fresh database and
# keyspace on the stack (named like the tests' own, so `stack.sh clean-tests` drops any a crash
# left), migrated → a little data (advertiser `acme`, whose active version, file 42, holds the
# documents' example hash: the examples are real) → matcher-api and meta-service from the debug
# binaries on free ports, tokens set → schemathesis against each document → services stopped,
# database and keyspace dropped. Exits non-zero if schemathesis failed on either.
#
# schemathesis 4.32.5, per API:
#   schemathesis run URL -H 'Authorization: Bearer T' --checks all --max-examples N
#     --phases examples,coverage,fuzzing,stateful --seed S --generation-database none
#     --continue-on-failure --max-failures 50 --request-timeout 10 --workers 1
# One worker: with two, a run on this machine's Python 3.11 crashed inside hypothesis (which
# parses source with `ast` while describing a strategy) with "SystemError: AST constructor
# recursion depth mismatch", a CPython bug under threads (gh-106905). One also spares the cores.
# All checks run (--checks all), none excluded. Three pass without finding anything to test, and
# why: use_after_free and ensure_resource_availability need an operation that creates what a
# later one deletes (neither API deletes anything); object_level_authorization needs identities
# that own different resources (every operator token sees every file, by design). The matcher's
# stateful phase is not applicable (no links); the admin API's runs on links schemathesis infers.
# Plain stack only (the main pass of test.sh): psql and cqlsh connect without credentials or TLS.
#
# MEMBERLAKE_SCHEMATHESIS_EXAMPLES  examples per operation and phase (default 300)
# MEMBERLAKE_SCHEMATHESIS_SEED      the seed (default: 650619271 under CI=true, else a fresh one, printed;
#                                   replay with it)
# MEMBERLAKE_SCHEMATHESIS_KEEP=1    leave the services, the database and the logs (to debug)
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=deploy/local/lib.sh
source "$SCRIPT_DIR/lib.sh"
log()  { printf '[schemathesis] %s\n' "$*" >&2; }
warn() { printf '[schemathesis] WARNING: %s\n' "$*" >&2; }
die()  { printf '[schemathesis] ERROR: %s\n' "$*" >&2; exit 1; }

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/memberlake/target}
BIN=$CARGO_TARGET_DIR/debug
CACHE_DIR=${MEMBERLAKE_CACHE_DIR:-$HOME/.cache/memberlake}
VENV=$CACHE_DIR/venv-schemathesis
SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${MEMBERLAKE_SCHEMATHESIS_EXAMPLES:-300}
# CI (CI=true) uses a fixed seed, so that a run fails only when the code or the documents changed
# (a flaky gate would stop good submissions); by hand, a fresh one each time explores further.
if [[ -n ${CI:-} ]]; then
  SEED=${MEMBERLAKE_SCHEMATHESIS_SEED:-650619271}
else
  SEED=${MEMBERLAKE_SCHEMATHESIS_SEED:-$((RANDOM * 32768 + RANDOM))}
fi
MATCHER_TOKEN=schemathesis-$(random_hex 8)
ADMIN_TOKEN=schemathesis-$(random_hex 8)
# The documents' own examples (memberlake_records::openapi): the seeded data makes them real.
EXAMPLE_ADVERTISER=acme
EXAMPLE_FILE=42
EXAMPLE_HASH=c160f8cc69a4f0bf2b0362752353d060

t0=$SECONDS
for b in matcher-api meta-service memberlake; do
  [[ -x $BIN/$b ]] || die "$BIN/$b not built: cargo build --bins (deploy/local/test.sh does)"
done

# ---- schemathesis, pinned, in its own venv ---------------------------------------------------
if ! [[ -x $VENV/bin/schemathesis && -f $VENV/.version && $(<"$VENV/.version") == "$SCHEMATHESIS_VERSION" ]]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  echo "$SCHEMATHESIS_VERSION" >"$VENV/.version"
fi

# ---- a database and keyspace of its own on the stack ------------------------------------------
eval "$("$SCRIPT_DIR/stack.sh" env)"
PSQL=$(command -v psql || ls -d /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1 || true)
[[ -x $PSQL ]] || die "psql not found (Debian's postgresql-client)"
if [[ -n ${MEMBERLAKE_DATABASE_PASSWORD_FILE:-} ]]; then
  PGPASSWORD=$(<"$MEMBERLAKE_DATABASE_PASSWORD_FILE")
  export PGPASSWORD
fi
psql_on() { # URL SQL
  "$PSQL" -X -q -v ON_ERROR_STOP=1 -d "$1" -c "$2" </dev/null
}
STACK_DATABASE_URL=$MEMBERLAKE_DATABASE_URL
psql_on "$STACK_DATABASE_URL" "SELECT 1" >/dev/null ||
  die "the stack's Postgres ($STACK_DATABASE_URL) does not answer: deploy/local/stack.sh up"
suffix=$(random_hex 6)
DB=test_$suffix
export MEMBERLAKE_DATABASE_URL=${STACK_DATABASE_URL%/*}/$DB
export MEMBERLAKE_SCYLLA_KEYSPACE=t_$suffix
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/memberlake-schemathesis.XXXXXX")
MATCHER_PID=$RUN_DIR/matcher-api.pid
META_PID=$RUN_DIR/meta-service.pid

cleanup() {
  local rc=$?
  if [[ ${MEMBERLAKE_SCHEMATHESIS_KEEP:-0} == 1 ]]; then
    log "kept: services (pids in $RUN_DIR), database $DB, keyspace $MEMBERLAKE_SCYLLA_KEYSPACE, logs in $RUN_DIR"
    return
  fi
  stop_pidfile matcher-api "$MATCHER_PID" "$BIN/matcher-api" 10 2>/dev/null
  stop_pidfile meta-service "$META_PID" "$BIN/meta-service" 10 2>/dev/null
  if ((rc != 0)); then
    show_log_tail services "$RUN_DIR/matcher-api.log" "$RUN_DIR/meta-service.log"
  fi
  psql_on "$STACK_DATABASE_URL" "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || warn "could not drop $DB"
  if [[ -n ${MEMBERLAKE_CQLSH:-} ]]; then
    cql_on "DROP KEYSPACE IF EXISTS $MEMBERLAKE_SCYLLA_KEYSPACE" >/dev/null 2>&1 ||
      warn "could not drop keyspace $MEMBERLAKE_SCYLLA_KEYSPACE (stack.sh clean-tests will)"
  fi
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT

# cql_on STATEMENTS : cqlsh on the stack's first node (plain stack: no credentials, no TLS).
cql_on() {
  local node=${MEMBERLAKE_SCYLLA_NODES%%,*}
  "$MEMBERLAKE_CQLSH" "${node%:*}" "${node##*:}" -e "$1"
}

psql_on "$STACK_DATABASE_URL" "CREATE DATABASE $DB"
MEMBERLAKE_LOG=warn "$BIN/memberlake" migrate >/dev/null

# ---- a little data: the documents' examples name real things -------------------------------
# Advertiser acme's active version is file 42 (a version in the legacy row format, as the tests'
# seed_list writes one), and it holds the example hash: /v1/match and /v1/suppress read the
# store and answer `member: true`; the admin API's file routes find file 42 (ingested: its
# lifecycle actions answer 409), and list it.
psql_on "$MEMBERLAKE_DATABASE_URL" "
  INSERT INTO advertisers (advertiser_id) VALUES ('$EXAMPLE_ADVERTISER');
  INSERT INTO files (file_id, advertiser_id, bucket, object_key, etag, size_bytes, last_modified, state,
                     finished_at, store_format)
    VALUES ($EXAMPLE_FILE, '$EXAMPLE_ADVERTISER', 'seed', 'advertisers/$EXAMPLE_ADVERTISER/members.csv', 'seed', 0,
            now(), 'ingested', now(), 'rows');
  UPDATE advertisers SET active_file_id = $EXAMPLE_FILE, activated_at = now()
    WHERE advertiser_id = '$EXAMPLE_ADVERTISER';"
if [[ -n ${MEMBERLAKE_CQLSH:-} ]]; then
  cql_on "INSERT INTO $MEMBERLAKE_SCYLLA_KEYSPACE.memberships (email_hash, advertiser_id, list_version)
          VALUES (0x$EXAMPLE_HASH, '$EXAMPLE_ADVERTISER', $EXAMPLE_FILE)"
else
  warn "MEMBERLAKE_CQLSH unset: the example hash is not seeded (answers member: false)"
fi

# ---- the services, on free ports, tokens on ---------------------------------------------------
free_port() {
  local port
  for port in $(shuf -i 20000-31999 -n 50); do
    port_open "$port" || { echo "$port"; return 0; }
  done
  die "no free port"
}
MATCHER_ADDR=127.0.0.1:$(free_port)
ADMIN_ADDR=127.0.0.1:$(free_port)
MATCHER_OPS=127.0.0.1:$(free_port)
META_OPS=127.0.0.1:$(free_port)
mkdir -p "$RUN_DIR/lake" "$RUN_DIR/work"
export MEMBERLAKE_LOG=${MEMBERLAKE_LOG:-warn}
MEMBERLAKE_MATCHER_ADDR=$MATCHER_ADDR MEMBERLAKE_METRICS_ADDR=$MATCHER_OPS MEMBERLAKE_MATCHER_TOKENS=$MATCHER_TOKEN \
  "$BIN/matcher-api" >"$RUN_DIR/matcher-api.log" 2>&1 &
echo $! >"$MATCHER_PID"
MEMBERLAKE_ADMIN_ADDR=$ADMIN_ADDR MEMBERLAKE_METRICS_ADDR=$META_OPS MEMBERLAKE_ADMIN_TOKENS=ops:$ADMIN_TOKEN \
  MEMBERLAKE_LAKE_URL=file://$RUN_DIR/lake MEMBERLAKE_WORK_URL=file://$RUN_DIR/work \
  "$BIN/meta-service" >"$RUN_DIR/meta-service.log" 2>&1 &
echo $! >"$META_PID"
ready() { curl -fsS "http://$1/readyz"; }
wait_until matcher-api 60 "$MATCHER_PID" "$BIN/matcher-api" ready "$MATCHER_OPS" || die "matcher-api not ready"
wait_until meta-service 60 "$META_PID" "$BIN/meta-service" ready "$META_OPS" || die "meta-service not ready"
# The seeded version is loaded before the first question (the matcher re-reads every second).
wait_until "acme's version" 30 "$MATCHER_PID" "$BIN/matcher-api" bash -c \
  "curl -fsS -H 'Authorization: Bearer $MATCHER_TOKEN' \
     'http://$MATCHER_ADDR/v1/match?advertiser_id=$EXAMPLE_ADVERTISER&email_hash=$EXAMPLE_HASH' | grep -q '\"member\":true'" ||
  [[ -z ${MEMBERLAKE_CQLSH:-} ]] || die "the seeded member is not answered"
log "services up after $((SECONDS - t0))s (matcher $MATCHER_ADDR, admin $ADMIN_ADDR); seed $SEED, $EXAMPLES examples"

# ---- schemathesis -----------------------------------------------------------------------------
st_run() { # NAME DOCUMENT_URL TOKEN
  local name=$1 url=$2 token=$3 t=$SECONDS rc=0
  log "$name: schemathesis run $url"
  # From the run's own directory: schemathesis keeps a cache (.schemathesis/) where it runs.
  (cd "$RUN_DIR" && NO_COLOR=1 "$VENV/bin/schemathesis" run "$url" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --generation-database none \
    --continue-on-failure \
    --max-failures 50 \
    --request-timeout 10 \
    --workers 1 \
    --no-color) >"$RUN_DIR/$name.txt" 2>&1 || rc=$?
  # The summary always; the failures in full when there are any.
  if ((rc == 0)); then
    sed -n '/^=* SUMMARY =*$/,$p' "$RUN_DIR/$name.txt"
  else
    cat "$RUN_DIR/$name.txt"
  fi
  log "$name: $((SECONDS - t))s, $( ((rc == 0)) && echo ok || echo "FAILED (exit $rc)")"
  return "$rc"
}
failed=0
st_run matcher "http://$MATCHER_ADDR/v1/openapi.json" "$MATCHER_TOKEN" || failed=$((failed + 1))
st_run admin "http://$ADMIN_ADDR/admin/v1/openapi.json" "$ADMIN_TOKEN" || failed=$((failed + 1))
log "done in $((SECONDS - t0))s: $((2 - failed)) of 2 documents clean (seed $SEED)"
((failed == 0))
