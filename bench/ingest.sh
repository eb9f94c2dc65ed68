#!/usr/bin/env bash
# Ingestion benchmark (BENCHMARKS.md § Ingestion). Not a test: prints figures.
#
#   bench/ingest.sh                      5M rows (~150 MB) in the S3 server, default 64 MiB ranges
#   MEMBERLAKE_BENCH_INGEST_ROWS=73000000 bench/ingest.sh     the ≥ 2 GB list of issue #6 (2.3 GB)
#   MEMBERLAKE_BENCH_INGEST_ROWS=68000000 bench/ingest.sh     its first 68M rows (2.02 GiB): the 2026-11-25 run
#   MEMBERLAKE_BENCH_INGEST_RUNS="2 raw"   only some of the runs (default: "raw batch 1 2 copy")
#   MEMBERLAKE_BENCH_COPY_ROWS=10000000    COPY FROM only the first N rows (it is the slowest run)
#
# In one run, against the same local CQL node: (a) the store's ceiling: the best raw driver loop
# of the precomputed rows — single-row inserts (`raw`) and replica-grouped UNLOGGED batches
# (`batch`, the workers' default batch size and requests in flight); the pipeline with 1 and with 2 workers (rows/s, worker peak RSS,
# where the time went from the workers' metrics); and (b) `cqlsh COPY FROM` of the same rows as
# a peer. The store is truncated before each run, and the run waits for the CQL node to go idle
# first (the flushes and compactions of the run before are not billed to it). Each run reports
# the CPU seconds its client, the CQL node and the S3 server spent, from /proc/<pid>/stat: on a
# machine where they share the cores, that says where the time went.
source "$(dirname "$0")/lib.sh"
ROWS=${MEMBERLAKE_BENCH_INGEST_ROWS:-5000000}
SINGLE_CONCURRENCY=${MEMBERLAKE_BENCH_SINGLE_CONCURRENCY:-96} # best single-row loop measured (BENCHMARKS.md)
BATCH_ROWS=${MEMBERLAKE_BENCH_BATCH_ROWS:-64}                 # the worker defaults
BATCH_CONCURRENCY=${MEMBERLAKE_BENCH_BATCH_CONCURRENCY:-16}
bench_setup ingest
trap stop_all EXIT
: "${MEMBERLAKE_TEST_S3_LAKE_URL:?the S3 server must be up (deploy/local/stack.sh up)}"
export MEMBERLAKE_LAKE_URL=$MEMBERLAKE_TEST_S3_LAKE_URL/bench-ingest
# Runs, manifests and diffs: beside the lake's prefix in the same S3 server (an S3 lake has no
# default work location).
export MEMBERLAKE_WORK_URL=$MEMBERLAKE_TEST_S3_LAKE_URL/bench-work
PY=$(dirname "$MEMBERLAKE_CQLSH")/python
CQLSH() { "$MEMBERLAKE_CQLSH" 127.0.0.1 "${MEMBERLAKE_SCYLLA_NODES#*:}" --request-timeout=600 "$@"; }
data=$RUN_DIR/ingest-data-$ROWS # one per size: the 2.3 GB list takes half an hour to generate
mkdir -p "$data"
if [[ $(wc -l 2>/dev/null <"$data/list.hashes" || echo 0) != "$ROWS" ]]; then
  say "generating $ROWS rows"
  python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$ROWS" --seed 11 --out "$data/list.csv" --hashes "$data/list.hashes"
fi
size=$(stat -c %s "$data/list.csv")
echo "machine: $(machine_line); list: $ROWS rows, $size bytes"

psql_q() { psql "$MEMBERLAKE_DATABASE_URL" -qtAc "$1"; }
empty_store() { # before each run: no rows, and the node idle (nothing of the last run billed to the next)
  CQLSH -e "TRUNCATE $MEMBERLAKE_SCYLLA_KEYSPACE.memberships; TRUNCATE $MEMBERLAKE_SCYLLA_KEYSPACE.membership_changes" >/dev/null
  settle_store
}
per_cpu_s() { python3 -c "print(round($1 / max($2, 0.1)))"; } # rows cpu_seconds
# CPU the local CQL node and S3 server spent since `servers_before` was set, for a run's notes.
server_cpu_note() { # rows
  local cql0 s30 cql1 s31
  read -r cql0 s30 <<<"$servers_before"
  read -r cql1 s31 < <(server_cpu)
  local cql s3; cql=$(python3 -c "print(round($cql1 - $cql0))"); s3=$(python3 -c "print(round($s31 - $s30))")
  echo "CQL node CPU ${cql}s ($(per_cpu_s "$1" "$cql") rows/CPU-s); S3 server CPU ${s3}s"
}

# An empty catalog and lake prefix for each pipeline run: a file left by an earlier (interrupted)
# run would otherwise be registered again and compete for the workers.
fresh_catalog() {
  local root
  for root in "${MEMBERLAKE_LAKE_URL#s3://}" "${MEMBERLAKE_WORK_URL#s3://}"; do
    "$PY" - "$root" <<'PY'
import sys, os, boto3
bucket, _, prefix = sys.argv[1].partition("/")
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
    for obj in page.get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=obj["Key"])
PY
  done
  local db=${MEMBERLAKE_DATABASE_URL##*/}
  psql "$BENCH_ADMIN_DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >&2
  MEMBERLAKE_LOG=warn "$BIN/memberlake" migrate >&2
  empty_store
}

pipeline_run() { # workers
  local workers=$1 key="advertisers/bench/run-$1-$(date +%s).csv"
  fresh_catalog
  servers_before=$(server_cpu)
  start_service meta meta-service MEMBERLAKE_ADMIN_ADDR=127.0.0.1:18181 MEMBERLAKE_METRICS_ADDR=127.0.0.1:18191 MEMBERLAKE_POLL_INTERVAL=500ms
  start_service splitter splitter MEMBERLAKE_METRICS_ADDR=127.0.0.1:18202 MEMBERLAKE_SPLITTER_INTERVAL=200ms
  for i in $(seq 1 "$workers"); do
    start_service "worker-$i" compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:1821$i \
      MEMBERLAKE_WRITE_CONCURRENCY="$BATCH_CONCURRENCY" MEMBERLAKE_WRITE_BATCH_ROWS="$BATCH_ROWS"
  done
  "$PY" - "$data/list.csv" "${MEMBERLAKE_LAKE_URL#s3://}" "$key" <<'PY'
import sys, os, boto3
path, root, key = sys.argv[1:]
bucket, _, prefix = root.partition("/")
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).upload_file(path, bucket, f"{prefix}/{key}")
PY
  local id=""
  until [[ -n $id ]]; do id=$(psql_q "SELECT file_id FROM files WHERE object_key LIKE '%$key'"); sleep 0.2; done
  # One cheap poll every 2 s: the run's time comes from the catalog's timestamps, not from this
  # loop, and the loop's own processes share the cores with the run.
  until [[ $(psql_q "SELECT state FROM files WHERE file_id = $id") =~ ^(ingested|failed)$ ]]; do sleep 2; done
  for i in $(seq 1 "$workers"); do # the workers still run: peak RSS (VmHWM) and CPU so far
    pid=$(<"$RUN_DIR/worker-$i.pid")
    awk '/VmHWM/ {print $2}' "/proc/$pid/status" >"$RUN_DIR/worker-$i.hwm"
    cpu_secs "$pid" >"$RUN_DIR/worker-$i.cpu"
  done
  local secs rows state
  IFS='|' read -r state rows secs < <(psql_q "SELECT state, rows_ingested, extract(epoch FROM finished_at - split_at) FROM files WHERE file_id = $id")
  local servers; servers=$(server_cpu_note "$rows")
  local rss="" stages="" cpu_s=0
  for i in $(seq 1 "$workers"); do
    rss="$rss $(( $(cat "$RUN_DIR/worker-$i.hwm") / 1024 ))MiB"
    cpu_s=$(python3 -c "print($cpu_s + $(cat "$RUN_DIR/worker-$i.cpu"))")
    stages="$stages $(curl -fsS "127.0.0.1:1821$i/metrics" | awk '/^memberlake_worker_(read|hash|write)_seconds_sum/ {split($1, n, "_"); printf "%s=%.0fs ", n[3], $2}')"
  done
  printf '| pipeline, %d worker(s) | %s | %s | %.1f | %.0f | peak RSS:%s; worker CPU %ss = %s rows per worker CPU-second; %s; stage seconds (summed over ranges, overlapping):%s |\n' \
    "$workers" "$state" "$rows" "$secs" "$(python3 -c "print($rows / $secs)")" "$rss" "$cpu_s" "$(per_cpu_s "$rows" "$cpu_s")" "$servers" "$stages"
  stop_all
}

RUNS=" ${MEMBERLAKE_BENCH_INGEST_RUNS:-raw batch 1 2 copy} "
echo "| run | state | rows | seconds | rows/s | notes |"
echo "|---|---|---|---|---|---|"

raw_run() { # label concurrency rows-per-batch
  empty_store
  servers_before=$(server_cpu)
  "$CARGO_TARGET_DIR/release/examples/store_ceiling" "$data/list.hashes" bench 1 "$2" "$3" >"$RUN_DIR/raw.out" &
  local raw_pid=$! raw_cpu=0 c out rows_per_s secs
  while kill -0 "$raw_pid" 2>/dev/null; do # its CPU (gone with it once it exits): sampled every 2 s
    c=$(cpu_secs "$raw_pid"); [[ $c != 0 ]] && raw_cpu=$c
    sleep 2
  done
  wait "$raw_pid"
  out=$(<"$RUN_DIR/raw.out")
  echo "$out" >&2
  read -r rows_per_s secs < <(sed -E 's/.*seconds=([0-9.]+) rows_per_s=([0-9]+).*/\2 \1/' <<<"$out")
  printf '| (a) raw driver loop, %s, %s in flight | - | %s | %s | %s | client CPU %ss = %s rows per client CPU-second (loading the file included); %s |\n' \
    "$1" "$2" "$ROWS" "$secs" "$rows_per_s" "$raw_cpu" "$(per_cpu_s "$ROWS" "$raw_cpu")" "$(server_cpu_note "$ROWS")"
}

[[ $RUNS == *" raw "* ]] && raw_run "single rows" "$SINGLE_CONCURRENCY" 1
[[ $RUNS == *" batch "* ]] && raw_run "UNLOGGED batches of $BATCH_ROWS" "$BATCH_CONCURRENCY" "$BATCH_ROWS"

[[ $RUNS == *" 1 "* ]] && pipeline_run 1
[[ $RUNS == *" 2 "* ]] && pipeline_run 2

if [[ $RUNS == *" copy "* ]]; then
COPY_ROWS=${MEMBERLAKE_BENCH_COPY_ROWS:-$ROWS}
# The rows the pipeline writes for a first version: present from version 2 on.
head -n "$COPY_ROWS" "$data/list.hashes" | awk '{print "0x" $1 ",bench,2,true"}' >"$data/copy.csv"
empty_store
servers_before=$(server_cpu)
t0=$(date +%s.%N)
CQLSH -e "COPY $MEMBERLAKE_SCYLLA_KEYSPACE.membership_changes (email_hash, advertiser_id, since_version, present) FROM '$data/copy.csv' WITH NUMPROCESSES=2 AND MAXBATCHSIZE=20" >"$RUN_DIR/copy.log" 2>&1
t1=$(date +%s.%N)
printf '| (b) cqlsh COPY FROM | - | %s | %.1f | %.0f | peer tool; %s |\n' "$COPY_ROWS" "$(python3 -c "print($t1 - $t0)")" "$(python3 -c "print($COPY_ROWS / ($t1 - $t0))")" "$(server_cpu_note "$COPY_ROWS")"
fi
