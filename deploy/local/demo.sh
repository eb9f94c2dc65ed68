#!/usr/bin/env bash
# The main job, end to end on this machine:
#   stack up → build → migrate → start the four services → upload two advertisers' lists to the
#   lake → wait until they are ingested → ask the matcher.
#
#   deploy/local/demo.sh          run it (services keep running afterwards)
#   deploy/local/demo.sh stop     stop the services (deploy/local/stack.sh down stops the servers)
#
# MEMBERLAKE_DEMO_S3=1 uses the S3 server (Garage) as the lake instead of a local directory.
# MEMBERLAKE_DEMO_ROWS sets the list size (default 200000 per advertiser).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
cd "$REPO_ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/memberlake/target}
PROFILE=${MEMBERLAKE_PROFILE:-debug}
BIN=$CARGO_TARGET_DIR/$PROFILE
ROWS=${MEMBERLAKE_DEMO_ROWS:-200000}

stack_args=(--no-s3)
[[ ${MEMBERLAKE_DEMO_S3:-0} == 1 ]] && stack_args=()

run_dir() { echo "${MEMBERLAKE_STACK_DIR:-$REPO_ROOT/.stack}/services"; }

stop_services() {
  local dir; dir=$(run_dir)
  for pidfile in "$dir"/*.pid; do
    [[ -e $pidfile ]] || continue
    local pid; pid=$(<"$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

if [[ ${1:-} == stop ]]; then
  stop_services
  echo "services stopped"
  exit 0
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 local stack (PostgreSQL, CQL node${stack_args[*]:+, no S3})"
"$SCRIPT_DIR/stack.sh" up "${stack_args[@]}"
eval "$("$SCRIPT_DIR/stack.sh" env)"
if [[ ${MEMBERLAKE_DEMO_S3:-0} == 1 ]]; then
  export MEMBERLAKE_LAKE_URL=$MEMBERLAKE_TEST_S3_LAKE_URL/demo
fi

step "2/6 build ($PROFILE)"
if [[ $PROFILE == release ]]; then cargo build --release --bins; else cargo build --bins; fi

step "3/6 migrate"
MEMBERLAKE_LOG=warn "$BIN/memberlake" migrate

step "4/6 start services"
stop_services
dir=$(run_dir); mkdir -p "$dir"
export MEMBERLAKE_POLL_INTERVAL=1s MEMBERLAKE_RANGE_SIZE=${MEMBERLAKE_RANGE_SIZE:-1MiB} MEMBERLAKE_LEASE_TTL=10s
export MEMBERLAKE_RETIRE_INTERVAL=30s MEMBERLAKE_RETIRE_GRACE=20s
start() { # name binary [env...]
  local name=$1 bin=$2; shift 2
  env "$@" "$BIN/$bin" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
  echo "  $name (pid $!) → $dir/$name.log"
}
start meta-service meta-service
start splitter splitter
start worker-1 compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:9103 MEMBERLAKE_INSTANCE_ID=worker-1
start worker-2 compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:9104 MEMBERLAKE_INSTANCE_ID=worker-2
start matcher-api matcher-api
MATCHER=http://${MEMBERLAKE_MATCHER_ADDR:-127.0.0.1:8080}
MATCHER_OPS=http://127.0.0.1:9100   # the matcher's operations port (/readyz, /metrics): its default
for _ in $(seq 1 100); do curl -fsS "$MATCHER_OPS/readyz" >/dev/null 2>&1 && break; sleep 0.3; done
curl -fsS "$MATCHER_OPS/readyz" >/dev/null || { echo "matcher-api did not become ready; see $dir/matcher-api.log"; exit 1; }

step "5/6 upload two advertisers' lists ($ROWS emails each) to $MEMBERLAKE_LAKE_URL"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# A fresh seed per run: a re-run uploads new lists (replacing the previous ones), and the wait
# below cannot be satisfied by a list from an earlier run.
seed=$(date +%s)
python3 "$SCRIPT_DIR/genlist.py" --count "$ROWS" --seed "$seed" --out "$work/acme.csv" --hashes "$work/acme.hashes" --upper
python3 "$SCRIPT_DIR/genlist.py" --count "$ROWS" --seed "$((seed + 1))" --start 5000000 --out "$work/globex.csv" --hashes "$work/globex.hashes"
upload() { # advertiser file
  local key="advertisers/$1/members-$(date +%Y%m%dT%H%M%S).csv"
  if [[ $MEMBERLAKE_LAKE_URL == file://* ]]; then
    local root=${MEMBERLAKE_LAKE_URL#file://}
    # Stage beside the lake, then rename into it: atomic, like an S3 PUT (a half-copied file
    # inside the lake would be picked up as a list).
    local staging; staging=$(dirname "$root")/lake-staging
    mkdir -p "$root/advertisers/$1" "$staging"
    cp "$2" "$staging/upload.tmp" && mv "$staging/upload.tmp" "$root/$key"
  else
    "$(dirname "$MEMBERLAKE_CQLSH")/python" - "$2" "${MEMBERLAKE_LAKE_URL#s3://}" "$key" <<'PY'
import sys, boto3, os
path, root, key = sys.argv[1:]
bucket, _, prefix = root.partition("/")
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).upload_file(path, bucket, f"{prefix}/{key}" if prefix else key)
PY
  fi
  echo "  uploaded $key ($(wc -c <"$2") bytes)"
}
started=$(date +%s.%N)
upload acme "$work/acme.csv"
upload globex "$work/globex.csv"

step "6/6 wait until both lists are active, then ask the matcher"
acme_member=$(sed -n 1p "$work/acme.hashes")
globex_last=$(tail -n 1 "$work/globex.hashes")
wait_member() { # advertiser hash
  for _ in $(seq 1 600); do
    if curl -fsS "$MATCHER/v1/match?advertiser_id=$1&email_hash=$2" 2>/dev/null | grep -q '"member":true'; then return 0; fi
    sleep 0.5
  done
  echo "timed out waiting for $1 to be ingested; see the logs in $dir"; exit 1
}
wait_member acme "$acme_member"
wait_member globex "$globex_last"
elapsed=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
rows=$((2 * ROWS))
echo "  both lists active ${elapsed}s after upload: $rows rows, $(python3 -c "print(int($rows / $elapsed))") rows/s end to end"
echo
show() { echo "  \$ curl '$1'"; echo "    $(curl -fsS "$1")"; }
show "$MATCHER/v1/match?advertiser_id=acme&email_hash=$acme_member"
show "$MATCHER/v1/match?advertiser_id=globex&email_hash=$acme_member"
nonmember=$(printf %s 'nobody@nowhere.example' | md5sum | cut -d' ' -f1)
show "$MATCHER/v1/match?advertiser_id=acme&email_hash=$nonmember"
echo "  \$ curl -X POST $MATCHER/v1/suppress -d '{\"email_hash\":\"$globex_last\",\"advertiser_ids\":[\"acme\",\"globex\",\"initech\"]}'"
echo "    $(curl -fsS -X POST "$MATCHER/v1/suppress" -H 'content-type: application/json' \
  -d "{\"email_hash\":\"$globex_last\",\"advertiser_ids\":[\"acme\",\"globex\",\"initech\"]}")"
cat <<MSG

The services keep running (logs in $dir). Try:
  curl '$MATCHER/v1/match?advertiser_id=acme&email_hash=\$(printf %s 'someone@example.com' | md5sum | cut -d" " -f1)'
  curl $MATCHER_OPS/metrics | grep memberlake_
Drop another list into $MEMBERLAKE_LAKE_URL/advertisers/<advertiser_id>/ and it replaces that
advertiser's list once ingested. Stop with: deploy/local/demo.sh stop && deploy/local/stack.sh down
MSG
