# Shared by the benchmark scripts: release binaries, the local stack, an isolated database and
# keyspace, and service start/stop. Source it; do not run it.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/memberlake/target}
CACHE_DIR=${MEMBERLAKE_CACHE_DIR:-$HOME/.cache/memberlake}
BIN=$CARGO_TARGET_DIR/release
STACK_DIR=${MEMBERLAKE_STACK_DIR:-$REPO_ROOT/.stack}
RUN_DIR=$STACK_DIR/bench
mkdir -p "$RUN_DIR"

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

ensure_oha() { # sets OHA: the load generator, installed from crates.io into the cache once
  OHA=$CACHE_DIR/oha/bin/oha
  if [[ ! -x $OHA ]]; then
    say "installing oha (load generator) from crates.io"
    cargo install oha --locked --root "$CACHE_DIR/oha" --target-dir "$CACHE_DIR/oha-build" >&2
  fi
}

bench_setup() { # name: isolated database and keyspace named after the benchmark
  local name=$1
  "$REPO_ROOT/deploy/local/stack.sh" up ${BENCH_STACK_ARGS:-} >&2
  # Keyspaces left by test runs cost the CQL node heap and CPU per row (stack.sh clean-tests).
  "$REPO_ROOT/deploy/local/stack.sh" clean-tests >&2
  eval "$("$REPO_ROOT/deploy/local/stack.sh" env)"
  say "release build"
  # --workspace and the examples: one feature set for every benchmark, so no build undoes another
  (cd "$REPO_ROOT" && cargo build --release --workspace --bins --examples >&2)
  local admin_url=$MEMBERLAKE_DATABASE_URL
  export BENCH_ADMIN_DATABASE_URL=$admin_url
  psql "$admin_url" -v ON_ERROR_STOP=1 -qtc "SELECT 1 FROM pg_database WHERE datname = 'bench_$name'" | grep -q 1 \
    || psql "$admin_url" -qc "CREATE DATABASE bench_$name" >&2
  export MEMBERLAKE_DATABASE_URL=${admin_url%/*}/bench_$name
  export MEMBERLAKE_SCYLLA_KEYSPACE=bench_$name
  export MEMBERLAKE_LAKE_URL=file://$RUN_DIR/lake-$name
  export MEMBERLAKE_LOG=${MEMBERLAKE_LOG:-info}
  MEMBERLAKE_LOG=warn "$BIN/memberlake" migrate >&2
}

bench_reset() { # drop the benchmark's database and keyspace
  local name=$1
  eval "$("$REPO_ROOT/deploy/local/stack.sh" env)"
  psql "$MEMBERLAKE_DATABASE_URL" -qc "DROP DATABASE IF EXISTS bench_$name WITH (FORCE)" >&2 || true
  "$MEMBERLAKE_CQLSH" 127.0.0.1 "${MEMBERLAKE_SCYLLA_NODES#*:}" -e "DROP KEYSPACE IF EXISTS bench_$name" >/dev/null 2>&1 || true
  rm -rf "$RUN_DIR/lake-$name"
}

start_service() { # name binary [VAR=value...]
  local name=$1 bin=$2; shift 2
  stop_service "$name"
  env "$@" "$BIN/$bin" >"$RUN_DIR/$name.log" 2>&1 &
  echo $! >"$RUN_DIR/$name.pid"
}

stop_service() {
  local pidfile=$RUN_DIR/$1.pid
  [[ -f $pidfile ]] || return 0
  local pid; pid=$(<"$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

stop_all() {
  for f in "$RUN_DIR"/*.pid; do [[ -e $f ]] && stop_service "$(basename "$f" .pid)"; done
  return 0
}

wait_http() { # url [seconds]
  for _ in $(seq 1 $((${2:-30} * 10))); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; return 1
}

cpu_secs() { # pid: its user+system CPU seconds so far (0 once it is gone)
  awk -v tck="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / tck}' "/proc/$1/stat" 2>/dev/null || echo 0
}

server_cpu() { # CPU seconds so far of the local CQL node and S3 server: "<cql> <s3>"
  local f cql=0 s3=0
  for f in "$STACK_DIR/cassandra/cassandra.pid" "$STACK_DIR/scylla/scylla.pid"; do
    [[ -s $f ]] && cql=$(cpu_secs "$(<"$f")") && break
  done
  [[ -s $STACK_DIR/garage/garage.pid ]] && s3=$(cpu_secs "$(<"$STACK_DIR/garage/garage.pid")")
  echo "$cql $s3"
}

settle_store() { # waits (up to 5 minutes) until the CQL node is idle, so that the flushes and
  # compactions an earlier run left behind are not billed to the next one
  local before now
  read -r before _ < <(server_cpu)
  for _ in $(seq 1 300); do
    sleep 1
    read -r now _ < <(server_cpu)
    # under a tenth of a core for a second
    python3 -c "import sys; sys.exit(0 if $now - $before < 0.1 else 1)" && return 0
    before=$now
  done
  echo "the CQL node was still busy after 5 minutes; measuring anyway" >&2
}

machine_line() {
  echo "$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
}
