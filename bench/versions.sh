#!/usr/bin/env bash
# Change-proportional versions (BENCHMARKS.md § Change-proportional versions (issue 16)). Not a
# test: prints figures (it exits 1 if a /v1/match answer is wrong).
#
#   bench/versions.sh                                     1,000,000 rows, 1 % removed + 1 % added
#   MEMBERLAKE_BENCH_VERSIONS_ROWS=200000 MEMBERLAKE_BENCH_VERSIONS_CHURN=0.05 bench/versions.sh
#
# Settings (environment, with defaults):
#   MEMBERLAKE_BENCH_VERSIONS_ROWS=1000000   v1's rows (generated emails, genlist.py --seed 16)
#   MEMBERLAKE_BENCH_VERSIONS_CHURN=0.01     share of v1 removed in v2, and (as many) new emails added
#   MEMBERLAKE_BENCH_VERSIONS_SAMPLE=1000    /v1/match lookups per kind (kept, added, removed) per check
#   MEMBERLAKE_BENCH_VERSIONS_GRACE=5s       MEMBERLAKE_RETIRE_GRACE (must exceed the lease TTL)
#   MEMBERLAKE_BENCH_VERSIONS_LEASE_TTL=4s   MEMBERLAKE_LEASE_TTL of the workers and the splitter
#   MEMBERLAKE_BENCH_VERSIONS_WORKERS=1      compute-workers
#   MEMBERLAKE_BENCH_VERSIONS_BUILD=1        0: skip the release build, run the binaries already built
#
# One advertiser, three uploads to the S3 server (Garage), each waited for until it is active
# and the version it replaced is retired:
#   v1  ROWS generated emails (a first version: every member is written);
#   v2  v1 with CHURN of its rows removed and as many new emails added;
#   v3  v2's bytes again, under a new object key (an identical re-upload).
# Before and after each step it reads, from the CQL node itself, how many mutations were applied
# to `membership_changes` and how many single-partition reads and range scans it served
# (`system_views.local_write_latency` / `local_read_latency` / `local_scan_latency`, column
# `count`: one per partition mutation, batched or not; the coordinator's count,
# `coordinator_write_latency`, is one per request and is shown beside it). The matcher is not
# queried while a step runs, so the reads and scans of a retirement window are the pipeline's.
# Upload → activation is from the start of the PUT to the catalog's `files.activated_at`.
#
# Needs a Cassandra node (the stack's default): the counters are its `system_views`.
# Its own catalog database and keyspace (`bench_versions`, dropped and recreated at the start),
# lake prefix and work location in the S3 server; release builds, like bench/ingest.sh. Its
# services are named `versions-*` in $RUN_DIR and it stops only those.
source "$(dirname "$0")/lib.sh"
ROWS=${MEMBERLAKE_BENCH_VERSIONS_ROWS:-1000000}
CHURN=${MEMBERLAKE_BENCH_VERSIONS_CHURN:-0.01}
SAMPLE=${MEMBERLAKE_BENCH_VERSIONS_SAMPLE:-1000}
GRACE=${MEMBERLAKE_BENCH_VERSIONS_GRACE:-5s}
LEASE_TTL=${MEMBERLAKE_BENCH_VERSIONS_LEASE_TTL:-4s}
WORKERS=${MEMBERLAKE_BENCH_VERSIONS_WORKERS:-1}
ADV=bench
ADMIN_PORT=18581 SPLITTER_PORT=18502 MATCHER_PORT=18580 WORKER_PORT0=18510
ADMIN_OPS_PORT=18591 MATCHER_OPS_PORT=18590   # operations ports (/readyz, /metrics)
MATCHER=http://127.0.0.1:$MATCHER_PORT

# Like bench_setup (lib.sh), but the binaries are copied (hard links) to a directory of this
# run's own first, so every service comes from the same build even if someone rebuilds meanwhile.
"$REPO_ROOT/deploy/local/stack.sh" up >&2
eval "$("$REPO_ROOT/deploy/local/stack.sh" env)"
if [[ ${MEMBERLAKE_BENCH_VERSIONS_BUILD:-1} != 0 ]]; then
  say "release build"
  (cd "$REPO_ROOT" && cargo build --release --workspace --bins --examples >&2)
fi
rm -rf "$RUN_DIR/versions-bin" && mkdir -p "$RUN_DIR/versions-bin"
for b in memberlake meta-service splitter compute-worker matcher-api; do
  cp -l "$BIN/$b" "$RUN_DIR/versions-bin/" 2>/dev/null || cp "$BIN/$b" "$RUN_DIR/versions-bin/"
done
BIN=$RUN_DIR/versions-bin
export BENCH_ADMIN_DATABASE_URL=$MEMBERLAKE_DATABASE_URL
export MEMBERLAKE_DATABASE_URL=${BENCH_ADMIN_DATABASE_URL%/*}/bench_versions
export MEMBERLAKE_SCYLLA_KEYSPACE=bench_versions
export MEMBERLAKE_LOG=${MEMBERLAKE_LOG:-info}
SERVICES=(versions-meta versions-splitter versions-matcher)
for i in $(seq 1 "$WORKERS"); do SERVICES+=("versions-worker-$i"); done
stop_mine() { for s in "${SERVICES[@]}"; do stop_service "$s"; done; }
trap stop_mine EXIT
: "${MEMBERLAKE_TEST_S3_LAKE_URL:?the S3 server must be up (deploy/local/stack.sh up)}"
export MEMBERLAKE_LAKE_URL=$MEMBERLAKE_TEST_S3_LAKE_URL/bench-versions
export MEMBERLAKE_WORK_URL=$MEMBERLAKE_TEST_S3_LAKE_URL/bench-versions-work # an S3 lake must name it
export MEMBERLAKE_LEASE_TTL=$LEASE_TTL MEMBERLAKE_RETIRE_GRACE=$GRACE
KS=$MEMBERLAKE_SCYLLA_KEYSPACE
PY=$(dirname "$MEMBERLAKE_CQLSH")/python # has boto3 (deploy/local/stack.sh)
CQLSH() { "$MEMBERLAKE_CQLSH" 127.0.0.1 "${MEMBERLAKE_SCYLLA_NODES#*:}" --request-timeout=600 "$@"; }
psql_q() { psql "$MEMBERLAKE_DATABASE_URL" -qtAc "$1"; }
for port in $ADMIN_PORT $SPLITTER_PORT $MATCHER_PORT $(seq $((WORKER_PORT0 + 1)) $((WORKER_PORT0 + WORKERS))); do
  if curl -s -o /dev/null "127.0.0.1:$port"; then echo "port $port is taken (another run?)" >&2; exit 1; fi
done

# ---- data: v1, v2 (v1 - removed + added), samples to check -------------------------------------
data=$RUN_DIR/versions-data-$ROWS-$CHURN
mkdir -p "$data"
if [[ ! -s $data/done ]]; then
  say "generating v1 ($ROWS rows) and v2 (churn $CHURN)"
  k=$(python3 -c "print(round($ROWS * $CHURN))")
  python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$ROWS" --seed 16 --out "$data/v1.csv" --hashes "$data/v1.hashes"
  # New emails: indexes after v1's, so none of them is in v1.
  python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$k" --seed 17 --start "$ROWS" --out "$data/added.csv" --hashes "$data/added.hashes"
  python3 - "$data" "$k" <<'PY'
import random, sys
d, k = sys.argv[1], int(sys.argv[2])
lines = open(f"{d}/v1.csv").read().split("\n")[1:-1]          # without the header
hashes = open(f"{d}/v1.hashes").read().split()
assert len(lines) == len(hashes)
removed = set(random.Random(16).sample(range(len(lines)), k))
added = open(f"{d}/added.csv").read().split("\n")[1:-1]
with open(f"{d}/v2.csv", "w") as out:
    out.write("email\n")
    for i, line in enumerate(lines):
        if i not in removed:
            out.write(line + "\n")
    for line in added:
        out.write(line + "\n")
rng = random.Random(18)
with open(f"{d}/removed.hashes", "w") as f:
    f.writelines(hashes[i] + "\n" for i in sorted(removed))
kept = [h for i, h in enumerate(hashes) if i not in removed]
with open(f"{d}/kept.sample", "w") as f:
    f.writelines(h + "\n" for h in rng.sample(kept, min(len(kept), 100000)))
PY
  echo ok >"$data/done"
fi
K=$(wc -l <"$data/removed.hashes")
echo "machine: $(machine_line); code: $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "(not a git checkout)")$(git -C "$REPO_ROOT" diff --quiet HEAD 2>/dev/null || echo " + uncommitted changes"); v1: $ROWS rows, $(stat -c %s "$data/v1.csv") bytes; v2: $K removed, $(wc -l <"$data/added.hashes") added, $(stat -c %s "$data/v2.csv") bytes"

# ---- a fresh catalog, keyspace, lake prefix and work location ----------------------------------
say "fresh catalog database, keyspace, lake prefix and work location"
"$PY" - "${MEMBERLAKE_LAKE_URL#s3://}" "${MEMBERLAKE_WORK_URL#s3://}" <<'PY'
import sys, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for root in sys.argv[1:]:
    bucket, _, prefix = root.partition("/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
PY
psql "$BENCH_ADMIN_DATABASE_URL" -qc "DROP DATABASE IF EXISTS bench_versions WITH (FORCE)" -c "CREATE DATABASE bench_versions" >&2
CQLSH -e "DROP KEYSPACE IF EXISTS $KS" >/dev/null
MEMBERLAKE_LOG=warn "$BIN/memberlake" migrate >&2

# ---- the store's own counters -----------------------------------------------------------------
# "writes reads scans requests": mutations applied to membership_changes (one per partition,
# batched or not), single-partition reads, range scans, and write requests it coordinated.
CQL_PID_FILE=$STACK_DIR/cassandra/cassandra.pid
[[ -s $CQL_PID_FILE ]] || CQL_PID_FILE=$STACK_DIR/scylla/scylla.pid
CQL_PID=$(<"$CQL_PID_FILE")
store_counts() {
  # The counters are the node's since it started: a restart (a game-day test stopping the
  # shared node) would reset them, so a run across one is void.
  [[ $(<"$CQL_PID_FILE") == "$CQL_PID" ]] && kill -0 "$CQL_PID" 2>/dev/null \
    || { echo "the CQL node restarted during the run: its counters start over; run again" >&2; exit 1; }
  local t="WHERE keyspace_name = '$KS' AND table_name = 'membership_changes'" out
  out=$(CQLSH -e "SELECT count FROM system_views.local_write_latency $t;
    SELECT count FROM system_views.local_read_latency $t;
    SELECT count FROM system_views.local_scan_latency $t;
    SELECT count FROM system_views.coordinator_write_latency $t;" 2>/dev/null | awk '/^ *[0-9]+ *$/ {printf "%s ", $1}')
  [[ $(wc -w <<<"$out") == 4 ]] || { echo "could not read system_views counters: '$out'" >&2; exit 1; }
  echo "$out"
}
delta() { # before after field(1-4)
  python3 -c "import sys; a, b = sys.argv[1].split(), sys.argv[2].split(); print(int(b[$3 - 1]) - int(a[$3 - 1]))" "$1" "$2"
}

# ---- the pipeline -----------------------------------------------------------------------------
say "starting meta-service, splitter, $WORKERS compute-worker(s), matcher-api (release builds)"
start_service versions-meta meta-service MEMBERLAKE_ADMIN_ADDR=127.0.0.1:$ADMIN_PORT MEMBERLAKE_METRICS_ADDR=127.0.0.1:$ADMIN_OPS_PORT MEMBERLAKE_POLL_INTERVAL=500ms
start_service versions-splitter splitter MEMBERLAKE_METRICS_ADDR=127.0.0.1:$SPLITTER_PORT MEMBERLAKE_SPLITTER_INTERVAL=200ms
for i in $(seq 1 "$WORKERS"); do
  start_service "versions-worker-$i" compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:$((WORKER_PORT0 + i))
done
# The cache off: every check below is answered from the store as it is then.
start_service versions-matcher matcher-api MEMBERLAKE_MATCHER_ADDR=127.0.0.1:$MATCHER_PORT MEMBERLAKE_METRICS_ADDR=127.0.0.1:$MATCHER_OPS_PORT MEMBERLAKE_CACHE_ENTRIES=0 MEMBERLAKE_MATCHER_RATE_LIMIT=0
wait_http "127.0.0.1:$MATCHER_OPS_PORT/readyz" 60
wait_http "127.0.0.1:$SPLITTER_PORT/readyz" 60
for i in $(seq 1 "$WORKERS"); do wait_http "127.0.0.1:$((WORKER_PORT0 + i))/readyz" 60; done

upload() { # file key: PUTs the file at advertisers/$ADV/key; prints the PUT's start (epoch s)
  local t0; t0=$(date +%s.%N)
  "$PY" - "$1" "${MEMBERLAKE_LAKE_URL#s3://}" "advertisers/$ADV/$2" <<'PY'
import sys, os, boto3
path, root, key = sys.argv[1:]
bucket, _, prefix = root.partition("/")
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).upload_file(path, bucket, f"{prefix}/{key}")
PY
  echo "$t0"
}
file_id_of() { # key
  local id="" i
  for i in $(seq 1 600); do
    id=$(psql_q "SELECT file_id FROM files WHERE object_key LIKE '%/advertisers/$ADV/$1'")
    [[ -n $id ]] && { echo "$id"; return 0; }
    sleep 0.2
  done
  echo "no file registered for $1" >&2; return 1
}
wait_active() { # file_id: until it is the advertiser's active version (fails on failed/cancelled/held)
  local s
  for _ in $(seq 1 1800); do
    s=$(psql_q "SELECT state, activated_at IS NOT NULL FROM files WHERE file_id = $1")
    case $s in
      "ingested|t") return 0 ;;
      failed* | cancelled* | held*) echo "file $1 is $s: $(psql_q "SELECT failure_reason, held_reason FROM files WHERE file_id = $1")" >&2; return 1 ;;
    esac
    sleep 1
  done
  echo "file $1 not active after 30 minutes" >&2; return 1
}
wait_retired() { # file_id: until every retire unit is done (files.retired_at)
  for _ in $(seq 1 1200); do
    [[ $(psql_q "SELECT retired_at IS NOT NULL FROM files WHERE file_id = $1") == t ]] && return 0
    sleep 0.5
  done
  echo "file $1 not retired after 10 minutes" >&2; return 1
}
wait_matcher() { # file_id: until the matcher answers for it (the last added or v1 hash is a member)
  local h=$1
  for _ in $(seq 1 300); do
    curl -fsS "$MATCHER/v1/match?advertiser_id=$ADV&email_hash=$h" | grep -q '"member":true' && return 0
    sleep 0.2
  done
  echo "the matcher does not answer true for $h" >&2; return 1
}
FAILED=0
check() { # label kind=file... : SAMPLE lookups per kind; kind 'in' expects true, 'out' false
  local label=$1; shift
  "$PY" - "$MATCHER_PORT" "$ADV" "$SAMPLE" "$label" "$@" <<'PY' || FAILED=1
import http.client, json, random, sys
port, adv, n, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30)
bad, total, parts = 0, 0, []
for spec in sys.argv[5:]:
    kind, path = spec.split("=", 1)
    hashes = open(path).read().split()
    sample = random.Random(42).sample(hashes, min(n, len(hashes)))
    wrong = 0
    for h in sample:
        conn.request("GET", f"/v1/match?advertiser_id={adv}&email_hash={h}")
        r = conn.getresponse()
        body = r.read()
        ok = r.status == 200 and json.loads(body)["member"] == (kind.startswith("in"))
        wrong += not ok
    bad += wrong
    total += len(sample)
    parts.append(f"{kind.split(':')[-1]} {len(sample) - wrong}/{len(sample)}")
print(f"check {label}: " + ", ".join(parts) + (" — all right" if bad == 0 else f" — {bad} WRONG"))
sys.exit(1 if bad else 0)
PY
}
worker_cpu() { # summed CPU seconds of the workers so far
  local s=0 i
  for i in $(seq 1 "$WORKERS"); do s=$(python3 -c "print($s + $(cpu_secs "$(<"$RUN_DIR/versions-worker-$i.pid")"))"); done
  echo "$s"
}

# One step: upload, activation, retirement of the version it replaces; figures into ROW_<step>.
declare -A R
step() { # name file key previous-file-id(or -)
  local name=$1 file=$2 key=$3 prev=$4
  settle_store # the flushes and compactions of the step before are not billed to this one
  local c0 c1 c2 cpu0 wcpu0 t0 id
  c0=$(store_counts); read -r cpu0 _ < <(server_cpu); wcpu0=$(worker_cpu)
  say "$name: uploading $(basename "$file") as $key"
  t0=$(upload "$file" "$key")
  R[$name.put]=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
  id=$(file_id_of "$key")
  wait_active "$id"
  c1=$(store_counts)
  R[$name.id]=$id
  if [[ $prev != - ]]; then
    say "$name: active; waiting for the retirement of file $prev (grace $GRACE)"
    wait_retired "$prev"
  fi
  c2=$(store_counts)
  local cpu1; read -r cpu1 _ < <(server_cpu)
  R[$name.node_cpu]=$(python3 -c "print(round($cpu1 - $cpu0))")
  R[$name.worker_cpu]=$(python3 -c "print(round($(worker_cpu) - $wcpu0, 1))")
  R[$name.writes]=$(delta "$c0" "$c1" 1)
  R[$name.requests]=$(delta "$c0" "$c1" 4)
  R[$name.reads]=$(delta "$c0" "$c1" 2)
  R[$name.scans]=$(delta "$c0" "$c1" 3)
  R[$name.retire_writes]=$(delta "$c1" "$c2" 1)
  R[$name.retire_requests]=$(delta "$c1" "$c2" 4)
  R[$name.retire_reads]=$(delta "$c1" "$c2" 2)
  R[$name.retire_scans]=$(delta "$c1" "$c2" 3)
  IFS='|' read -r "R[$name.members]" "R[$name.added]" "R[$name.removed]" "R[$name.rows_written]" "R[$name.buckets]" \
    "R[$name.secs]" "R[$name.to_split]" "R[$name.ingest]" "R[$name.merge]" < <(psql_q "
    SELECT members, added, removed, rows_written, 1 << bucket_bits,
           round((extract(epoch FROM activated_at) - $t0)::numeric, 1),
           round(extract(epoch FROM split_at - registered_at)::numeric, 1),
           round(extract(epoch FROM merged_at - split_at)::numeric, 1),
           round(extract(epoch FROM activated_at - merged_at)::numeric, 1)
    FROM files WHERE file_id = $id")
  R[$name.lines]=$(($(wc -l <"$file") - 1))
  if [[ $prev != - ]]; then
    IFS='|' read -r "R[$name.prev_deleted]" "R[$name.retire_secs]" < <(psql_q "
      SELECT f.rows_deleted, round(extract(epoch FROM f.retired_at - s.activated_at)::numeric, 1)
      FROM files f JOIN files s ON s.file_id = f.superseded_by WHERE f.file_id = $prev")
  else
    R[$name.prev_deleted]=0 R[$name.retire_secs]=-
  fi
  echo "$name: file ${R[$name.id]}, active ${R[$name.secs]} s after the upload started; store: ${R[$name.writes]} + ${R[$name.retire_writes]} (retirement) mutations" >&2
}

step v1 "$data/v1.csv" v1.csv -
wait_matcher "$(tail -1 "$data/v1.hashes")"
check "v1 active" in:members="$data/kept.sample" in:members-to-remove="$data/removed.hashes" out:not-yet-added="$data/added.hashes"
step v2 "$data/v2.csv" v2.csv "${R[v1.id]}"
wait_matcher "$(tail -1 "$data/added.hashes")"
check "v2 active, v1 retired" in:kept="$data/kept.sample" in:added="$data/added.hashes" out:removed="$data/removed.hashes"
step v3 "$data/v2.csv" v3-identical.csv "${R[v2.id]}"
[[ $(psql_q "SELECT active_file_id FROM advertisers WHERE advertiser_id = '$ADV'") == "${R[v3.id]}" ]] || { echo "v3 is not the active version" >&2; FAILED=1; }
check "v3 (identical) active, v2 retired" in:kept="$data/kept.sample" in:added="$data/added.hashes" out:removed="$data/removed.hashes"

# Leases that expired and were redone would show as extra mutations: say so if any did.
reaped=$(grep -c "reaped expired range leases" "$RUN_DIR/versions-splitter.log" || true)

say "results"
pct() { python3 -c "print(f'{100 * $1 / max($2, 1):.2f} %')"; }
per() { python3 -c "print(f'{$1 / $2:.2f}' if $2 else '-')"; }
echo "settings: rows=$ROWS churn=$CHURN grace=$GRACE lease_ttl=$LEASE_TTL workers=$WORKERS; buckets per version ${R[v1.buckets]}; expired leases reaped: $reaped"
echo
echo "| step | lines in file | members | changed (added + removed) | store mutations: version + retirement of the one it replaced (node, local) | of which retirement | catalog's count (rows written + deleted) | write requests (coordinator) | mutations per changed member | vs v1's mutations | upload → active, s | vs v1 | reads / scans of membership_changes during retirement | during the rest of the step |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for s in v1 v2 v3; do
  changed=$((R[$s.added] + R[$s.removed]))
  muts=$((R[$s.writes] + R[$s.retire_writes]))
  catalog=$((R[$s.rows_written] + R[$s.prev_deleted]))
  if [[ $s == v1 ]]; then retire="- (first version)"; else retire="${R[$s.retire_reads]} / ${R[$s.retire_scans]}"; fi
  printf '| %s | %s | %s | %s (%s + %s) | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n' \
    "$s" "${R[$s.lines]}" "${R[$s.members]}" "$changed" "${R[$s.added]}" "${R[$s.removed]}" "$muts" "${R[$s.retire_writes]}" \
    "$catalog" "$((R[$s.requests] + R[$s.retire_requests]))" "$(per "$muts" "$changed")" "$(pct "$muts" "$((R[v1.writes] + R[v1.retire_writes]))")" \
    "${R[$s.secs]}" "$(python3 -c "print(f'{${R[$s.secs]} / ${R[v1.secs]}:.2f}x')")" "$retire" "${R[$s.reads]}" "${R[$s.scans]}"
done
echo
echo "| step | PUT, s | registered → split, s | split → merging (ingest: runs), s | merging → active (diff + rows), s | activation → predecessor retired, s | worker CPU, s | CQL node CPU, s |"
echo "|---|---|---|---|---|---|---|---|"
for s in v1 v2 v3; do
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" "${R[$s.put]}" "${R[$s.to_split]}" "${R[$s.ingest]}" "${R[$s.merge]}" \
    "${R[$s.retire_secs]}" "${R[$s.worker_cpu]}" "${R[$s.node_cpu]}"
done
echo
v2m=$((R[v2.writes] + R[v2.retire_writes])); v3m=$((R[v3.writes] + R[v3.retire_writes])); v1m=$((R[v1.writes] + R[v1.retire_writes]))
target() { if python3 -c "import sys; sys.exit(0 if $1 else 1)"; then echo "met"; else echo "MISSED"; fi; }
echo "targets: v2 ≤ 2 mutations per changed member: $(per "$v2m" "$((R[v2.added] + R[v2.removed]))") ($(target "$v2m <= 2 * $((R[v2.added] + R[v2.removed]))")), ≤ 4 × churn of v1's ($(pct "$(python3 -c "print(4 * $CHURN * $v1m)")" "$v1m")): $(pct "$v2m" "$v1m") ($(target "$v2m <= 4 * $CHURN * $v1m"));" \
  "identical re-upload ≤ 0.5 %: $(pct "$v3m" "$v1m") ($(target "$v3m <= 0.005 * $v1m"));" \
  "v2 upload → active ≤ 0.3x v1's: $(python3 -c "print(f'{${R[v2.secs]} / ${R[v1.secs]}:.2f}x')") ($(target "${R[v2.secs]} <= 0.3 * ${R[v1.secs]}"));" \
  "no full-table read in retirement: reads ${R[v2.retire_reads]}, scans ${R[v2.retire_scans]} ($(target "${R[v2.retire_scans]} == 0 and ${R[v2.retire_reads]} == 0"))"
[[ $FAILED == 0 ]] || { echo "a /v1/match check FAILED (above)" >&2; exit 1; }
