#!/usr/bin/env bash
# Freshness (BENCHMARKS.md § Freshness): a 10 KB list uploaded → the first true /v1/match, ten
# times, with the local stack's intervals (lake poll 1 s, splitter tick 1 s, worker idle poll
# 500 ms, matcher version refresh 1 s plus LISTEN/NOTIFY). Prints each run and the median.
source "$(dirname "$0")/lib.sh"
RUNS=${MEMBERLAKE_BENCH_RUNS:-10}
BENCH_STACK_ARGS=--no-s3 bench_setup freshness
trap stop_all EXIT
export MEMBERLAKE_POLL_INTERVAL=1s MEMBERLAKE_SPLITTER_INTERVAL=1s MEMBERLAKE_WORKER_POLL_INTERVAL=500ms MEMBERLAKE_VERSIONS_REFRESH=1s
start_service meta meta-service MEMBERLAKE_ADMIN_ADDR=127.0.0.1:18381 MEMBERLAKE_METRICS_ADDR=127.0.0.1:18391
start_service splitter splitter MEMBERLAKE_METRICS_ADDR=127.0.0.1:18302
start_service worker compute-worker MEMBERLAKE_METRICS_ADDR=127.0.0.1:18303
start_service matcher matcher-api MEMBERLAKE_MATCHER_ADDR=127.0.0.1:18380 MEMBERLAKE_METRICS_ADDR=127.0.0.1:18390
wait_http http://127.0.0.1:18390/readyz
root=${MEMBERLAKE_LAKE_URL#file://}
mkdir -p "$root/advertisers"
work=$(mktemp -d)
results=()
for run in $(seq 1 "$RUNS"); do
  adv="fresh$run-$RANDOM"
  python3 "$REPO_ROOT/deploy/local/genlist.py" --count 350 --seed "$run$RANDOM" --start $((run * 1000)) --out "$work/l.csv" --hashes "$work/l.hashes"
  last=$(tail -1 "$work/l.hashes")
  mkdir -p "$root/advertisers/$adv"
  t0=$(date +%s.%N)
  cp "$work/l.csv" "$RUN_DIR/staging.tmp" && mv "$RUN_DIR/staging.tmp" "$root/advertisers/$adv/list.csv"
  until curl -fsS "http://127.0.0.1:18380/v1/match?advertiser_id=$adv&email_hash=$last" | grep -q '"member":true'; do sleep 0.02; done
  t1=$(date +%s.%N)
  secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  results+=("$secs")
  echo "run $run: $(stat -c %s "$work/l.csv") bytes → first true /v1/match after ${secs}s"
  sleep 0.$((RANDOM % 9))
done
python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f'median {statistics.median(v):.2f}s, min {min(v):.2f}s, max {max(v):.2f}s over {len(v)} runs')" "${results[@]}"
rm -rf "$work"
