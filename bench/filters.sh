#!/usr/bin/env bash
# Membership filters (issue 21; BENCHMARKS.md § Filters). Not a test: prints figures.
#
#   bench/filters.sh
#
# 1M memberships over 100 advertisers (10,000 each), ingested once through the pipeline (release
# build, filters at MEMBERLAKE_FILTER_BITS, default 8). Then, in one run, the same uncached load
# (cache off, 90 % non-members: random hashes; 10 % members; each request a random advertiser)
# against a matcher with filters and one without:
#   sat    saturation for MEMBERLAKE_BENCH_DURATION (20 s): RPS, and store reads per request from
#          the CQL node's own counter (nodetool tablestats: local reads of membership_changes);
#   10k    fixed 10K RPS with latency correction: p50/p99/p99.9 (or what the server could do);
#   and, with filters, saturation on non-members only: the ceiling of answers from memory.
# And: filter bytes per member against the theory, build time per million members (the
# workers' histogram), and the time from an activation to the version served by its filter.
source "$(dirname "$0")/lib.sh"
ADVERTISERS=${MEMBERLAKE_BENCH_ADVERTISERS:-100}
PER=${MEMBERLAKE_BENCH_PER_ADVERTISER:-10000}
BITS=${MEMBERLAKE_FILTER_BITS:-8}
DURATION=${MEMBERLAKE_BENCH_DURATION:-20s}
CONNS=${MEMBERLAKE_BENCH_CONNECTIONS:-64}
ensure_oha
BENCH_STACK_ARGS=--no-s3 bench_setup "filters_$BITS"
trap stop_all EXIT
PORT=18080
MATCHER=http://127.0.0.1:$PORT
OPS=http://127.0.0.1:18090
ADMIN=http://127.0.0.1:18081
keys=$RUN_DIR/filter-keys-$ADVERTISERS-$PER
mkdir -p "$keys"
root=${MEMBERLAKE_LAKE_URL#file://}

active_count() {
  psql "$MEMBERLAKE_DATABASE_URL" -qtAc "SELECT count(*) FROM advertisers WHERE active_file_id IS NOT NULL"
}

start_pipeline() {
  start_service meta meta-service MEMBERLAKE_ADMIN_ADDR=${ADMIN#http://} MEMBERLAKE_METRICS_ADDR=127.0.0.1:18091 MEMBERLAKE_POLL_INTERVAL=1s
  start_service splitter splitter MEMBERLAKE_METRICS_ADDR=127.0.0.1:18102 MEMBERLAKE_SPLITTER_INTERVAL=200ms
  start_service worker compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:18103 MEMBERLAKE_FILTER_BITS="$BITS"
  wait_http "$ADMIN/healthz"
}

upload() { # advertiser file
  mkdir -p "$root/advertisers/$1" "$RUN_DIR/staging"
  cp "$2" "$RUN_DIR/staging/up.tmp" && mv "$RUN_DIR/staging/up.tmp" "$root/advertisers/$1/$(basename "$2")"
}

if [[ $(active_count) != "$ADVERTISERS" ]]; then
  say "ingesting $ADVERTISERS lists of $PER members through the pipeline"
  for i in $(seq -w 0 $((ADVERTISERS - 1))); do
    [[ -s $keys/adv-$i.csv ]] || python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$PER" --seed "$((1000 + 10#$i))" \
      --out "$keys/adv-$i.csv" --hashes "$keys/adv-$i.hashes"
  done
  start_pipeline
  t0=$(date +%s.%N)
  for i in $(seq -w 0 $((ADVERTISERS - 1))); do upload "adv-$i" "$keys/adv-$i.csv"; done
  until [[ $(active_count) == "$ADVERTISERS" ]]; do sleep 1; done
  echo "ingested $((ADVERTISERS * PER)) memberships in $(python3 -c "import time; print(round(time.time() - $t0, 1))") s" >&2
  curl -fsS http://127.0.0.1:18103/metrics >"$RUN_DIR/filters-worker.metrics"
  stop_service worker; stop_service splitter; stop_service meta
fi

python3 - "$keys" "$MATCHER" "$ADVERTISERS" <<'PY'
import random, sys
keys, url, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(5)
members = [[l.strip() for l in open(f"{keys}/adv-{i:0{len(str(n - 1))}d}.hashes")] for i in range(n)]
with open(f"{keys}/load.urls", "w") as f:
    for _ in range(300_000):
        a = rng.randrange(n)
        if rng.random() < 0.1:
            h = rng.choice(members[a])
        else:
            h = "%032x" % rng.getrandbits(128)
        f.write(f"{url}/v1/match?advertiser_id=adv-{a:0{len(str(n - 1))}d}&email_hash={h}\n")
with open(f"{keys}/nonmembers.urls", "w") as f:
    for _ in range(300_000):
        a = rng.randrange(n)
        f.write(f"{url}/v1/match?advertiser_id=adv-{a:0{len(str(n - 1))}d}&email_hash={rng.getrandbits(128):032x}\n")
PY

reads() { # local reads of membership_changes, by the node's own counter
  "$REPO_ROOT/deploy/local/stack.sh" nodetool 1 tablestats "$MEMBERLAKE_SCYLLA_KEYSPACE.membership_changes" 2>/dev/null |
    awk -F: '/Local read count/ {gsub(/ /, "", $2); print $2; exit}'
}

metric() { # url name{labels}: the value of one series (empty if absent)
  local text
  text=$(curl -fsS "$1/metrics") || return 0
  awk -v s="$2" '$1 == s {print $2}' <<<"$text" | head -1
}

oha_row() { # label json reads-before reads-after store-cpu-seconds matcher-cpu-seconds oha-cpu-seconds
  python3 - "$@" <<'PY'
import json, sys
label, path, before, after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
store_cpu, matcher_cpu, oha_cpu = float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
d = json.load(open(path))
s, p = d["summary"], d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
n = max(sum(codes.values()), 1)
ms = lambda v: f"{v * 1000:.2f}" if v is not None else "-"
print(f"| {label} | {s['requestsPerSec']:.0f} | {ms(p.get('p50'))} | {ms(p.get('p99'))} | {ms(p.get('p99.9'))} | "
      f"{(after - before) / n:.3f} | {store_cpu / n * 1e6:.1f} | {matcher_cpu / n * 1e6:.1f} | {oha_cpu / n * 1e6:.1f} | {codes} |")
PY
}

run() { # label oha-args...
  local label=$1; shift
  say "$label"
  local before after store0 store1 matcher_pid matcher0 matcher1
  matcher_pid=$(<"$RUN_DIR/matcher.pid")
  before=$(reads); read -r store0 _ < <(server_cpu); matcher0=$(cpu_secs "$matcher_pid")
  # The load generator's own CPU (user + system), from bash's `time`.
  { TIMEFORMAT='%U %S'; time "$OHA" --no-tui --output-format json -c "$CONNS" "$@" >"$RUN_DIR/oha-$label.json"; } 2>"$RUN_DIR/oha-$label.cpu"
  after=$(reads); read -r store1 _ < <(server_cpu); matcher1=$(cpu_secs "$matcher_pid")
  oha_row "$label" "$RUN_DIR/oha-$label.json" "$before" "$after" \
    "$(python3 -c "print($store1 - $store0)")" "$(python3 -c "print($matcher1 - $matcher0)")" \
    "$(awk '{print $1 + $2}' "$RUN_DIR/oha-$label.cpu")" | tee -a "$RUN_DIR/filters-rows.md"
}

matcher() { # filter memory
  stop_service matcher
  start_service matcher matcher-api MEMBERLAKE_MATCHER_ADDR=127.0.0.1:$PORT MEMBERLAKE_METRICS_ADDR=${OPS#http://} \
    MEMBERLAKE_MATCHER_RATE_LIMIT=0 MEMBERLAKE_CACHE_ENTRIES=0 MEMBERLAKE_MATCHER_FILTER_MEMORY="$1" MEMBERLAKE_LOG=warn
  wait_http "$OPS/readyz"
}

echo "machine: $(machine_line)"
echo "$((ADVERTISERS * PER)) memberships over $ADVERTISERS advertisers, $BITS-bit filters; load: 90 % random non-members, cache off"
echo
echo "| run | achieved RPS | p50 ms | p99 ms | p99.9 ms | store reads / request | store CPU µs / request | matcher CPU µs / request | oha CPU µs / request | status codes |"
echo "|---|---|---|---|---|---|---|---|---|---|"
: >"$RUN_DIR/filters-rows.md"
settle_store
matcher 1GiB
t0=$(date +%s.%N)
until [[ $(metric "$OPS" 'memberlake_matcher_filter_versions{state="loaded"}') == "$ADVERTISERS" ]]; do sleep 0.1; done
load_secs=$(python3 -c "import time; print(round(time.time() - $t0, 2))")
filter_bytes=$(metric "$OPS" memberlake_matcher_filter_bytes)
"$OHA" --no-tui -n 20000 -c 32 --urls-from-file "$keys/load.urls" >/dev/null   # connections and JIT-free warm-up
run "filters-sat" -z "$DURATION" --urls-from-file "$keys/load.urls"
run "filters-10k" -z "$DURATION" -q 10000 --latency-correction --urls-from-file "$keys/load.urls"
# The memory path's own ceiling: non-members only, every answer from a filter.
run "filters-sat-nonmembers" -z "$DURATION" --urls-from-file "$keys/nonmembers.urls"
fp=$(metric "$OPS" memberlake_matcher_filter_false_positives_total)
absent=$(metric "$OPS" 'memberlake_matcher_filter_probes_total{result="absent"}')
settle_store
matcher 0
"$OHA" --no-tui -n 20000 -c 32 --urls-from-file "$keys/load.urls" >/dev/null
run "store-sat" -z "$DURATION" --urls-from-file "$keys/load.urls"
run "store-10k" -z "$DURATION" -q 10000 --latency-correction --urls-from-file "$keys/load.urls"
echo
# What sizes the system is the store (docs/capacity.md): the requests one store CPU-second answers,
# with filters against without, at the same offered load (the fixed 10K runs) and at saturation.
python3 - "$RUN_DIR/filters-rows.md" <<'PY'
import sys
rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]] for l in open(sys.argv[1]) if l.startswith("|")}
rps = lambda r: float(rows[r][0])
store = lambda r: float(rows[r][5])
matcher = lambda r: float(rows[r][6])
total = lambda r: store(r) + matcher(r) + float(rows[r][7])
for a, b in (("filters-10k", "store-10k"), ("filters-sat", "store-sat")):
    if a in rows and b in rows and store(a) > 0:
        print(f"- {a} against {b}: store CPU per request {store(a):.1f} against {store(b):.1f} µs: "
              f"{store(b) / store(a):.2f}x the requests per store CPU-second; matcher CPU per request "
              f"{matcher(a):.1f} against {matcher(b):.1f} µs")
print(f"- saturation on this machine (load generator, matcher and store on its cores): "
      f"{rps('filters-sat') / rps('store-sat'):.2f}x the RPS without filters")
cores = __import__("os").cpu_count()
for r in ("filters-sat", "filters-sat-nonmembers", "store-sat"):
    if r in rows:
        print(f"- {r}: {total(r):.1f} µs of CPU per request (store + matcher + oha): at most "
              f"{cores * 1e6 / total(r):.0f} RPS on {cores} cores")
PY
python3 - "$filter_bytes" "$((ADVERTISERS * PER))" "$BITS" "$load_secs" "${fp:-0}" "${absent:-0}" "$RUN_DIR/filters-worker.metrics" <<'PY'
import sys
fb, members, bits, load, fp, absent, worker = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), float(sys.argv[6]), sys.argv[7]
print(f"- filter memory: {fb / members:.3f} bytes per member ({fb * 8 / members:.2f} bits; binary fuse theory "
      f"~{1.125 * bits:.1f} bits at this size, plus rounding per bucket); {fb / 2**20:.1f} MiB")
print(f"- all {sys.argv[2]} memberships' filters loaded by a starting matcher in {load} s")
print(f"- measured false-positive rate: {fp / max(fp + absent, 1):.5f} (theory 2^-{bits} = {2 ** -bits:.5f})")
try:
    text = open(worker).read().splitlines()
    val = lambda name: sum(float(l.split()[-1]) for l in text if l.split(" ")[0].split("{")[0] == name)
    s, n = val("memberlake_worker_filter_build_seconds_sum"), val("memberlake_worker_filter_build_seconds_count")
    print(f"- build: {n:.0f} bucket filters in {s:.3f} s of CPU: {s / (members / 1e6):.3f} s per million members")
except FileNotFoundError:
    print("- build time: not measured in this run (the lists were ingested by an earlier run)")
PY

# Time from an activation to the version served by its filter: a new version of one list.
say "activation to filter"
matcher 1GiB
until [[ $(metric "$OPS" 'memberlake_matcher_filter_versions{state="loaded"}') == "$ADVERTISERS" ]]; do sleep 0.1; done
start_pipeline
# A fresh list each run (a new seed, a new name): its members are not members yet.
next=$keys/next-$(date +%s).csv
python3 "$REPO_ROOT/deploy/local/genlist.py" --count "$PER" --seed "$(date +%s)" --out "$next" --hashes "$keys/next.hashes"
lag_before=$(metric "$OPS" memberlake_matcher_filter_activation_lag_seconds_sum); lag_before=${lag_before:-0}
upload adv-00 "$next"
last=$(tail -1 "$keys/next.hashes")
t0=$(date +%s.%N)
until curl -fsS "$MATCHER/v1/match?advertiser_id=adv-00&email_hash=$last" | grep -q '"member":true'; do sleep 0.05; done
t1=$(date +%s.%N)
until python3 -c "import sys; sys.exit(0 if float('$(metric "$OPS" memberlake_matcher_filter_activation_lag_seconds_sum || echo 0)') > $lag_before else 1)"; do sleep 0.05; done
lag=$(metric "$OPS" memberlake_matcher_filter_activation_lag_seconds_sum)
python3 -c "print(f'- upload to answering: {$t1 - $t0:.2f} s; the new version served by its filter {(float($lag) - float($lag_before)) * 1000:.2f} ms after this matcher first served it')"
