#!/usr/bin/env bash
# matcher-api load benchmark (BENCHMARKS.md § Matcher). Not a test: prints figures.
#
#   bench/matcher.sh            ingest 1M memberships (once), then run (a)-(d) with oha
#
# (a) fixed 10K RPS for 20 s over a hot key set (10k members), p50/p99/p999 with latency
#     correction (no coordinated omission); (b) saturation over the same keys; (c) the same
#     server's trivial /healthz handler — the HTTP ceiling on this machine; (e) (a) again while
#     the pipeline ingests another advertiser's list of MEMBERLAKE_BENCH_INGEST_DURING_ROWS rows
#     (default 5,000,000; 0 skips it) on the same cores; (d) uncached random keys (cache
#     disabled): the store-bound rate. The load generator shares the 2 cores with the
#     matcher and the CQL node: ratios within one run are what to compare.
source "$(dirname "$0")/lib.sh"
ROWS=${MEMBERLAKE_BENCH_ROWS:-1000000}
DURATION=${MEMBERLAKE_BENCH_DURATION:-20s}
CONNS=${MEMBERLAKE_BENCH_CONNECTIONS:-64}
ensure_oha
BENCH_STACK_ARGS=--no-s3 bench_setup matcher
trap stop_all EXIT
PORT=18080
MATCHER=http://127.0.0.1:$PORT
OPS=http://127.0.0.1:18090   # the matcher's operations port (/readyz, /metrics)

start_service matcher matcher-api MEMBERLAKE_MATCHER_ADDR=127.0.0.1:$PORT MEMBERLAKE_METRICS_ADDR=${OPS#http://} MEMBERLAKE_MATCHER_RATE_LIMIT=0
wait_http "$OPS/readyz"
keys=$RUN_DIR/matcher-keys
mkdir -p "$keys"
if ! [[ -s $keys/all.hashes ]] || ! curl -fsS "$MATCHER/v1/match?advertiser_id=bench&email_hash=$(head -1 "$keys/all.hashes")" | grep -q '"member":true'; then
  say "ingesting $ROWS memberships through the pipeline"
  python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$ROWS" --seed 7 --out "$keys/list.csv" --hashes "$keys/all.hashes"
  start_service meta meta-service MEMBERLAKE_ADMIN_ADDR=127.0.0.1:18081 MEMBERLAKE_METRICS_ADDR=127.0.0.1:18091 MEMBERLAKE_POLL_INTERVAL=1s
  start_service splitter splitter MEMBERLAKE_METRICS_ADDR=127.0.0.1:18102 MEMBERLAKE_SPLITTER_INTERVAL=200ms
  start_service worker compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:18103
  root=${MEMBERLAKE_LAKE_URL#file://}
  mkdir -p "$root/advertisers/bench"
  t0=$(date +%s.%N)
  mkdir -p "$RUN_DIR/staging"   # stage outside the lake, then rename in: atomic like a PUT
  cp "$keys/list.csv" "$RUN_DIR/staging/list.tmp" && mv "$RUN_DIR/staging/list.tmp" "$root/advertisers/bench/members.csv"
  until curl -fsS "$MATCHER/v1/match?advertiser_id=bench&email_hash=$(tail -1 "$keys/all.hashes")" | grep -q '"member":true'; do sleep 1; done
  echo "ingested $ROWS rows in $(python3 -c "import time; print(round(time.time() - $t0, 1))") s (release build, 1 worker)" >&2
  stop_service worker; stop_service splitter; stop_service meta
fi
python3 - "$keys" "$MATCHER" <<'PY'
import random, sys
keys, url = sys.argv[1:]
hashes = [l.strip() for l in open(f"{keys}/all.hashes")]
with open(f"{keys}/hot.urls", "w") as f:
    for h in hashes[:10000]:
        f.write(f"{url}/v1/match?advertiser_id=bench&email_hash={h}\n")
rng = random.Random(1)
sample = rng.sample(hashes, 200000)
# Half members, half random non-members.
with open(f"{keys}/random.urls", "w") as f:
    for i, h in enumerate(sample):
        if i % 2:
            h = "%032x" % rng.getrandbits(128)
        f.write(f"{url}/v1/match?advertiser_id=bench&email_hash={h}\n")
PY

run() { # label oha-args...
  local label=$1; shift
  say "$label"
  "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CONNS" "$@" >"$RUN_DIR/oha-$label.json"
  python3 - "$label" "$RUN_DIR/oha-$label.json" <<'PY'
import json, sys
label, path = sys.argv[1:]
d = json.load(open(path))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
ms = lambda v: f"{v * 1000:.2f}" if v is not None else "-"
print(f"| {label} | {s['requestsPerSec']:.0f} | {ms(p.get('p50'))} | {ms(p.get('p99'))} | {ms(p.get('p99.9'))} | {codes} |")
PY
}

echo "machine: $(machine_line)"
echo "| run | achieved RPS | p50 ms | p99 ms | p99.9 ms | status codes |"
echo "|---|---|---|---|---|---|"
# Warm the hot set into the cache.
"$OHA" --no-tui -n 20000 -c 32 --urls-from-file "$keys/hot.urls" >/dev/null
run "a-fixed-10k-hot" -q 10000 --latency-correction --urls-from-file "$keys/hot.urls"
run "b-saturation-hot" --urls-from-file "$keys/hot.urls"
run "c-trivial-healthz" "$MATCHER/healthz"
DURING_ROWS=${MEMBERLAKE_BENCH_INGEST_DURING_ROWS:-5000000}
if (( DURING_ROWS > 0 )); then
  # (e) The hot-set load of (a) while a list ingests: the worker hashes, writes its runs, then
  # merges and writes rows in batches to the same CQL node, all on the same two cores.
  during=$keys/during-$DURING_ROWS.csv
  [[ -s $during ]] || python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$DURING_ROWS" --seed 11 --out "$during"
  start_service meta meta-service MEMBERLAKE_ADMIN_ADDR=127.0.0.1:18081 MEMBERLAKE_METRICS_ADDR=127.0.0.1:18091 MEMBERLAKE_POLL_INTERVAL=1s
  start_service splitter splitter MEMBERLAKE_METRICS_ADDR=127.0.0.1:18102 MEMBERLAKE_SPLITTER_INTERVAL=200ms
  start_service worker compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:18103
  wait_http http://127.0.0.1:18081/healthz
  root=${MEMBERLAKE_LAKE_URL#file://}
  name=load-$(date +%s).csv
  mkdir -p "$root/advertisers/bench-load" "$RUN_DIR/staging"
  cp "$during" "$RUN_DIR/staging/load.tmp" && mv "$RUN_DIR/staging/load.tmp" "$root/advertisers/bench-load/$name"
  state() {
    curl -fsS "http://127.0.0.1:18081/admin/v1/files?advertiser_id=bench-load&limit=1" |
      python3 -c "import json,sys; f=json.load(sys.stdin)['files']; print(f[0]['state'] if f else 'unregistered')"
  }
  # e1 while its ranges are hashed (rayon on both cores, runs written), e2 while its buckets are
  # merged and its rows written to the CQL node.
  until [[ $(state) == ingesting ]]; do sleep 0.2; done
  run "e1-fixed-10k-hot-while-hashing" -q 10000 --latency-correction --urls-from-file "$keys/hot.urls"
  echo "(e1) the list was $(state) when the load stopped"
  until [[ $(state) =~ ^(merging|ingested|failed|held|cancelled)$ ]]; do sleep 0.2; done
  if [[ $(state) == merging ]]; then
    run "e2-fixed-10k-hot-while-writing" -q 10000 --latency-correction --urls-from-file "$keys/hot.urls"
    echo "(e2) the list was $(state) when the load stopped"
  fi
  until [[ $(state) =~ ^(ingested|failed|held|cancelled)$ ]]; do sleep 1; done
  echo "(e) then the list finished: $(state)"
  stop_service worker; stop_service splitter; stop_service meta
fi
start_service matcher matcher-api MEMBERLAKE_MATCHER_ADDR=127.0.0.1:$PORT MEMBERLAKE_METRICS_ADDR=${OPS#http://} MEMBERLAKE_MATCHER_RATE_LIMIT=0 MEMBERLAKE_CACHE_ENTRIES=0
wait_http "$OPS/readyz"
run "d-uncached-random" --urls-from-file "$keys/random.urls"
