#!/usr/bin/env bash
# Local development / CI stack for memberlake: real servers on loopback, non-default ports.
#
#   deploy/local/stack.sh up [--no-s3]   start (or reuse) PostgreSQL, a CQL node and Garage (S3)
#   deploy/local/stack.sh down [--purge] stop what `up` started (--purge also deletes the data)
#   deploy/local/stack.sh status         one line per server; exit 1 if an enabled one is down
#   deploy/local/stack.sh env            `export` lines only: eval "$(deploy/local/stack.sh env)"
#   deploy/local/stack.sh check          real round trips: SQL query, CQL query, S3 put/list/get
#   deploy/local/stack.sh stop|start postgres|cql|s3   one server (game-day tests)
#   deploy/local/stack.sh clean-tests    drop the databases and keyspaces tests left behind
#
# Ports (127.0.0.1 only): PostgreSQL 55432, CQL 19042 (Cassandra storage 17000, JMX 17199),
# S3 39000 (Garage RPC 39001, admin 39003); MEMBERLAKE_STACK_PORT_OFFSET=N adds N to all of them.
# Data lives under $MEMBERLAKE_STACK_DIR (default <repo>/.stack); downloads and builds are cached
# under $MEMBERLAKE_CACHE_DIR (default ~/.cache/memberlake). MEMBERLAKE_STACK_S3=0 == --no-s3.
# Runs unattended (CI): never reads stdin, installs missing Debian packages with apt-get.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/local/lib.sh
source "$SCRIPT_DIR/lib.sh"

REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
STACK_DIR=$(realpath -m "${MEMBERLAKE_STACK_DIR:-$REPO_ROOT/.stack}")
CACHE_DIR=$(realpath -m "${MEMBERLAKE_CACHE_DIR:-${HOME:?HOME must be set}/.cache/memberlake}")
LOG_DIR=$CACHE_DIR/logs

# ---- ports (the env output follows them) ------------------------------------------------------
# Non-default ports so a developer's own servers on 5432/9042/3900 are untouched.
# MEMBERLAKE_STACK_PORT_OFFSET shifts all of them, for a second stack on the same machine.
PORT_OFFSET=${MEMBERLAKE_STACK_PORT_OFFSET:-0}
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || die "MEMBERLAKE_STACK_PORT_OFFSET must be a number"
PG_PORT=$((55432 + PORT_OFFSET))
CQL_PORT=$((19042 + PORT_OFFSET))
CASSANDRA_STORAGE_PORT=$((17000 + PORT_OFFSET))
CASSANDRA_JMX_PORT=$((17199 + PORT_OFFSET))
S3_PORT=$((39000 + PORT_OFFSET))
GARAGE_RPC_PORT=$((39001 + PORT_OFFSET))
GARAGE_ADMIN_PORT=$((39003 + PORT_OFFSET))

# ---- versions ---------------------------------------------------------------------------------
# Newest 5.0.x on Maven Central when this was written; override to try another 5.0 release.
CASSANDRA_VERSION=${MEMBERLAKE_CASSANDRA_VERSION:-5.0.9}
CASSANDRA_HEAP=${MEMBERLAKE_CASSANDRA_HEAP:-1g}
GARAGE_VERSION=2.5.0
# Only the LMDB engine is needed; skipping sqlite/k2v/metrics/etc. shortens a long first build.
# shellcheck disable=SC2054  # the comma is cargo's feature separator
GARAGE_CARGO_FEATURES=(--no-default-features --features bundled-libs,lmdb)
CQLSH_VERSION=6.2.2
BOTO3_VERSION=1.44.5

# ---- fixed, well-known dev credentials and names ---------------------------------------------
PG_ROLE=memberlake
PG_DB=memberlake
CQL_KEYSPACE=memberlake
S3_BUCKET=memberlake-lake
S3_REGION=garage
S3_KEY_NAME=memberlake
# Loopback-only test credentials; Garage wants "GK" + 24 hex for the id and 64 hex for the secret.
S3_KEY_ID=GK6d656d6265726c616b652d64
S3_SECRET=5776fea5bb0dd859639fe93f6cfd348ca06567f08eafad8a01369d24525fd90a

# ---- derived paths -----------------------------------------------------------------------------
VENV=$CACHE_DIR/venv
CQLSH=$VENV/bin/cqlsh
CASSANDRA_HOME=$CACHE_DIR/cassandra-$CASSANDRA_VERSION
CASSANDRA_DIR=$STACK_DIR/cassandra
GARAGE_BIN=$CACHE_DIR/garage/bin/garage
GARAGE_DIR=$STACK_DIR/garage
GARAGE_TOML=$GARAGE_DIR/garage.toml
S3_DISABLED_MARKER=$STACK_DIR/s3-disabled

s3_enabled() {
  [[ ${MEMBERLAKE_STACK_S3:-1} != 0 ]] && [[ ! -e $S3_DISABLED_MARKER ]]
}

ensure_dirs() {
  # 0755 on purpose: the non-root postgres user must be able to traverse into the stack dir.
  mkdir -p "$STACK_DIR/lake"
  chmod 0755 "$STACK_DIR"
  mkdir -p "$CACHE_DIR" "$LOG_DIR"
}

# ================================================================================================
# Python venv (cqlsh for the CQL readiness check and for developers; boto3 for the S3 check)
# ================================================================================================
ensure_venv() {
  local want="cqlsh==$CQLSH_VERSION boto3==$BOTO3_VERSION"
  if [[ -x $CQLSH && -f $VENV/.requirements && $(<"$VENV/.requirements") == "$want" ]]; then
    return 0
  fi
  command -v python3 >/dev/null || apt_install python3 python3-venv
  if [[ ! -x $VENV/bin/python ]]; then
    log "creating Python venv in $VENV"
    # Debian's python3 has no ensurepip without the python3-venv package.
    if ! python3 -m venv "$VENV" >&2; then
      rm -rf "$VENV"
      apt_install python3-venv
      python3 -m venv "$VENV" >&2
    fi
  fi
  log "installing $want into $VENV"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check $want </dev/null >&2 \
    || die "pip install of $want failed"
  printf '%s' "$want" >"$VENV/.requirements"
}

# ================================================================================================
# PostgreSQL: a private cluster owned by this script, run as the non-root `postgres` user
# ================================================================================================
PG_USER=postgres
PG_BIN=

pg_find_bin() {
  local d
  # Newest installed major version wins.
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r); do
    if [[ -x $d/pg_ctl && -x $d/initdb && -x $d/postgres && -x $d/psql ]]; then
      PG_BIN=$d
      return 0
    fi
  done
  return 1
}

# The data dir normally is $STACK_DIR/postgres. PostgreSQL refuses to run as root, and the
# postgres user must be able to reach its data dir; if some parent of the stack dir is not
# traversable by it (e.g. a checkout under /root), use a fixed per-stack-dir path under /var/tmp.
pg_home() {
  if id "$PG_USER" >/dev/null 2>&1 && [[ -d $STACK_DIR ]] &&
    ! runuser -u "$PG_USER" -- test -x "$STACK_DIR" 2>/dev/null; then
    printf '/var/tmp/memberlake-pg-%s\n' "$(printf '%s' "$STACK_DIR" | md5sum | cut -c1-12)"
  else
    printf '%s/postgres\n' "$STACK_DIR"
  fi
}

as_pg() { runuser -u "$PG_USER" -- "$@"; }

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 2; }

pg_psql() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@" </dev/null
}

pg_running_ours() {
  local home
  home=$(pg_home)
  [[ -f $home/data/postmaster.pid ]] && as_pg "$PG_BIN/pg_ctl" -D "$home/data" status >/dev/null 2>&1
}

pg_up() {
  local home data logf t0
  t0=$(now)
  if ! pg_find_bin; then
    apt_install postgresql
    pg_find_bin || die "postgresql installed but no /usr/lib/postgresql/*/bin/pg_ctl found"
  fi
  if ! id "$PG_USER" >/dev/null 2>&1; then
    log "creating system user $PG_USER"
    useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  fi
  home=$(pg_home)
  data=$home/data
  logf=$home/postgres.log
  [[ $home == "$STACK_DIR/postgres" ]] || ln -sfn "$home" "$STACK_DIR/postgres-data-link"

  if pg_running_ours && pg_ready; then
    log "postgres: already running on 127.0.0.1:$PG_PORT"
  elif port_open "$PG_PORT"; then
    # Another stack dir (e.g. a developer's checkout while CI runs in a fresh clone) owns the
    # port. Same ports and trust auth, so it is just as usable if it answers.
    pg_ready || die "postgres: port $PG_PORT is taken by something that is not a ready PostgreSQL"
    warn "postgres: reusing a server on port $PG_PORT that this stack dir did not start"
  else
    mkdir -p "$home"
    chown "$PG_USER:" "$home"
    chmod 0700 "$home"
    if [[ ! -f $data/PG_VERSION ]]; then
      log "postgres: initdb in $data"
      rm -rf "$data"
      # C locale: no dependency on generated system locales. Trust auth: loopback-only dev server.
      as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        >"$home/initdb.log" 2>&1 || { show_log_tail postgres "$home/initdb.log"; die "initdb failed"; }
      cat >>"$data/postgresql.conf" <<EOF

# ---- memberlake local stack (deploy/local/stack.sh) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
# TCP only: no socket in /var/run/postgresql (may not exist, and would clash with a system server).
unix_socket_directories = ''
max_connections = 200
# Throwaway test data: trade crash safety for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi
    log "postgres: starting ($PG_BIN) on 127.0.0.1:$PG_PORT"
    # shellcheck disable=SC2016  # $1 is expanded by the inner shell
    as_pg bash -c 'if [[ -e $1 ]]; then mv -f "$1" "$1.prev"; fi' _ "$logf"
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t 60 start 9>&- </dev/null >/dev/null 2>&1; then
      show_log_tail postgres "$logf"
      die "postgres: pg_ctl start failed (log: $logf)"
    fi
    if ! wait_until postgres 30 "" "" pg_ready; then
      show_log_tail postgres "$logf"
      die "postgres: not answering on 127.0.0.1:$PG_PORT (log: $logf)"
    fi
    TIMINGS+=("postgres-start $(($(now) - t0))s")
  fi

  # Idempotent: role (superuser, so tests may CREATE DATABASE) and database.
  pg_psql -d postgres -c "DO \$\$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
        CREATE ROLE $PG_ROLE LOGIN SUPERUSER CREATEDB;
      END IF;
    END \$\$;" || die "postgres: could not create role $PG_ROLE"
  if [[ $(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
    pg_psql -d postgres -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" || die "postgres: createdb failed"
  fi
}

pg_down() {
  pg_find_bin || { log "postgres: not installed"; return 0; }
  local home
  home=$(pg_home)
  if pg_running_ours; then
    log "postgres: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$home/data" -m fast -w -t 60 stop >/dev/null
  else
    log "postgres: not running"
  fi
}

pg_status() {
  local state=stopped
  if pg_find_bin && pg_running_ours && pg_ready; then
    state=running
  elif pg_find_bin && pg_ready; then
    state="running (not started from this stack dir)"
  fi
  printf '%-10s %-8s 127.0.0.1:%-6s data=%s\n' postgres "$state" "$PG_PORT" "$(pg_home)/data"
  [[ $state != stopped ]]
}

# ================================================================================================
# CQL node: ScyllaDB if installed, else Apache Cassandra 5.0 assembled from Maven Central
# ================================================================================================
CASSANDRA_PIDFILE=$CASSANDRA_DIR/cassandra.pid
SCYLLA_PIDFILE=$STACK_DIR/scylla/scylla.pid
CQL_KIND=
CQL_PID_PATTERN=
CQL_PIDFILE=

# Sets CQL_KIND (scylla|cassandra) and the pid file/pattern that identify its process.
cql_kind() {
  if command -v scylla >/dev/null 2>&1; then
    CQL_KIND=scylla
    CQL_PIDFILE=$SCYLLA_PIDFILE
    CQL_PID_PATTERN=scylla
  else
    CQL_KIND=cassandra
    CQL_PIDFILE=$CASSANDRA_PIDFILE
    CQL_PID_PATTERN=org.apache.cassandra.service.CassandraDaemon
  fi
}

cql_query() { "$CQLSH" 127.0.0.1 "$CQL_PORT" --connect-timeout=5 --request-timeout=10 -e "$1"; }
cql_ready() { cql_query 'SELECT release_version FROM system.local' >/dev/null 2>&1; }
# cqlsh prints a version-mismatch WARNING, a header and a dashed line before the value.
cql_version() { cql_query 'SELECT release_version FROM system.local' 2>/dev/null | grep -Eo '^ *[0-9][0-9.]*' | tr -d ' '; }

# Cassandra 5.0 supports JDK 11 and 17 only (its security manager use breaks on newer JDKs).
JAVA=
find_java() {
  local cand v
  for cand in "${MEMBERLAKE_JAVA:-}" "${JAVA_HOME:+$JAVA_HOME/bin/java}" "$(command -v java || true)" \
    /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/java-11-openjdk-*/bin/java; do
    [[ -n $cand && -x $cand ]] || continue
    v=$("$cand" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    if [[ $v == 17 || $v == 11 ]]; then
      JAVA=$cand
      return 0
    fi
  done
  return 1
}

cassandra_fetch() {
  local lib=$CASSANDRA_HOME/lib t0 flog=$LOG_DIR/cassandra-fetch.log
  [[ -f $CASSANDRA_HOME/.complete ]] && return 0
  command -v mvn >/dev/null || apt_install maven
  t0=$(now)
  log "cassandra: fetching cassandra-all $CASSANDRA_VERSION and its dependencies from Maven Central (first run only; log: $flog)"
  rm -rf "$CASSANDRA_HOME"
  mkdir -p "$CASSANDRA_HOME"
  render "$SCRIPT_DIR/cassandra/pom.xml.tmpl" "$CASSANDRA_HOME/pom.xml" CASSANDRA_VERSION="$CASSANDRA_VERSION"
  # Private local repository inside the cache dir: self-contained, no ~/.m2 side effects.
  # copy-dependencies copies cassandra-all itself too (it is this pom's direct dependency).
  if ! mvn -B -f "$CASSANDRA_HOME/pom.xml" -Dmaven.repo.local="$CACHE_DIR/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib.tmp" \
    </dev/null >"$flog" 2>&1; then
    show_log_tail "maven" "$flog"
    die "cassandra: Maven could not fetch cassandra-all $CASSANDRA_VERSION"
  fi
  mv "$lib.tmp" "$lib"
  ls "$lib"/cassandra-all-*.jar "$lib"/jamm-*.jar >/dev/null || die "cassandra: jars missing in $lib"
  touch "$CASSANDRA_HOME/.complete"
  TIMINGS+=("cassandra-fetch $(($(now) - t0))s")
}

cassandra_start() {
  local lib=$CASSANDRA_HOME/lib jamm opts=() line jars
  find_java || { apt_install openjdk-17-jre-headless; find_java; } ||
    die "cassandra: need a JDK 17 (or 11) java"
  jars=("$lib"/jamm-*.jar)
  jamm=${jars[0]}
  mkdir -p "$CASSANDRA_DIR"/{conf,data,commitlog,saved_caches,hints,cdc_raw,logs,triggers}
  # Regenerated on every start so template changes take effect; the data dirs are kept.
  render "$SCRIPT_DIR/cassandra/cassandra.yaml.tmpl" "$CASSANDRA_DIR/conf/cassandra.yaml" \
    DATA_DIR="$CASSANDRA_DIR" CQL_PORT="$CQL_PORT" STORAGE_PORT="$CASSANDRA_STORAGE_PORT"
  render "$SCRIPT_DIR/cassandra/logback.xml.tmpl" "$CASSANDRA_DIR/conf/logback.xml" \
    LOG_DIR="$CASSANDRA_DIR/logs"
  while IFS= read -r line; do
    line=${line%%#*}
    line=${line%"${line##*[![:space:]]}"}
    [[ -z $line ]] && continue
    # "--add-opens x=y" is two argv words.
    # shellcheck disable=SC2206
    opts+=($line)
  done <"$SCRIPT_DIR/cassandra/jvm17-server.options"
  opts+=(
    "-Xms$CASSANDRA_HEAP" "-Xmx$CASSANDRA_HEAP"
    "-javaagent:$jamm"
    "-Dcassandra-foreground=yes"
    "-Dcassandra-pidfile=$CASSANDRA_PIDFILE"
    "-Dcassandra.config=file://$CASSANDRA_DIR/conf/cassandra.yaml"
    "-Dcassandra.storagedir=$CASSANDRA_DIR"
    "-Dcassandra.logdir=$CASSANDRA_DIR/logs"
    "-Dcassandra.triggers_dir=$CASSANDRA_DIR/triggers"
    "-Dlogback.configurationFile=file://$CASSANDRA_DIR/conf/logback.xml"
    # Local-only JMX so nodetool works: java -cp "$lib/*" org.apache.cassandra.tools.NodeTool -p 17199 status
    "-Dcassandra.jmx.local.port=$CASSANDRA_JMX_PORT"
    "-XX:HeapDumpPath=$CASSANDRA_DIR/logs"
    "-XX:ErrorFile=$CASSANDRA_DIR/logs/hs_err_%p.log"
  )
  rotate_log "$CASSANDRA_DIR/logs/stdout.log" "$CASSANDRA_DIR/logs/system.log"
  log "cassandra: starting $CASSANDRA_VERSION ($JAVA, heap $CASSANDRA_HEAP) on 127.0.0.1:$CQL_PORT"
  # setsid: own session, so the node survives the calling shell/CI step and its signals.
  # The script has no job control, so setsid execs java directly and $! is the JVM's pid.
  setsid "$JAVA" "${opts[@]}" -cp "$CASSANDRA_DIR/conf:$lib/*" \
    org.apache.cassandra.service.CassandraDaemon \
    9>&- </dev/null >>"$CASSANDRA_DIR/logs/stdout.log" 2>&1 &
  echo $! >"$CASSANDRA_PIDFILE"
}

scylla_start() {
  # Best effort: developer-mode single shard with little memory, same ports as Cassandra's.
  local d=$STACK_DIR/scylla
  mkdir -p "$d"/{data,commitlog,hints,view_hints}
  log "cql: starting scylla on 127.0.0.1:$CQL_PORT"
  setsid scylla --developer-mode 1 --smp 1 --memory 1G --overprovisioned 1 \
    --listen-address 127.0.0.1 --rpc-address 127.0.0.1 --seed-provider-parameters seeds=127.0.0.1 \
    --native-transport-port "$CQL_PORT" --storage-port "$CASSANDRA_STORAGE_PORT" \
    --workdir "$d" --api-address 127.0.0.1 --prometheus-port 0 \
    9>&- </dev/null >>"$d/scylla.log" 2>&1 &
  echo $! >"$SCYLLA_PIDFILE"
}

cql_up() {
  local kind t0 logs
  cql_kind
  kind=$CQL_KIND
  t0=$(now)
  ensure_venv
  if pid_alive "$CQL_PIDFILE" "$CQL_PID_PATTERN" && cql_ready; then
    log "cql: $kind already running on 127.0.0.1:$CQL_PORT"
    return 0
  fi
  if ! pid_alive "$CQL_PIDFILE" "$CQL_PID_PATTERN"; then
    if port_open "$CQL_PORT"; then
      cql_ready || die "cql: port $CQL_PORT is taken by something that does not answer CQL"
      warn "cql: reusing a CQL server on port $CQL_PORT that this stack dir did not start"
      return 0
    fi
    if [[ $kind == scylla ]]; then
      scylla_start
    else
      cassandra_fetch
      t0=$(now)
      cassandra_start
    fi
  fi
  logs=("$CASSANDRA_DIR/logs/stdout.log" "$CASSANDRA_DIR/logs/system.log")
  [[ $kind == scylla ]] && logs=("$STACK_DIR/scylla/scylla.log")
  if ! wait_until cql "${MEMBERLAKE_CQL_TIMEOUT:-180}" "$CQL_PIDFILE" "$CQL_PID_PATTERN" cql_ready; then
    show_log_tail "$kind" "${logs[@]}"
    die "cql: $kind did not answer 'SELECT release_version FROM system.local' on 127.0.0.1:$CQL_PORT"
  fi
  log "cql: $kind ready (release $(cql_version))"
  TIMINGS+=("$kind-start $(($(now) - t0))s")
}

cql_down() {
  cql_kind
  # Cassandra's shutdown hook drains and flushes on SIGTERM; give it time before SIGKILL.
  stop_pidfile cql "$CQL_PIDFILE" "$CQL_PID_PATTERN" 60
}

cql_status() {
  local kind state=stopped
  cql_kind
  kind=$CQL_KIND
  if pid_alive "$CQL_PIDFILE" "$CQL_PID_PATTERN"; then
    if port_open "$CQL_PORT"; then state=running; else state=starting; fi
  elif port_open "$CQL_PORT"; then
    state="running (not started from this stack dir)"
  fi
  printf '%-10s %-8s 127.0.0.1:%-6s %s cqlsh=%s\n' cql "$state" "$CQL_PORT" "$kind" \
    "$([[ -x $CQLSH ]] && echo "$CQLSH" || echo '(not installed yet)')"
  [[ $state == running* ]]
}

# ================================================================================================
# S3: Garage, built from crates.io once and cached
# ================================================================================================
GARAGE_PIDFILE=$GARAGE_DIR/garage.pid

garage() { "$GARAGE_BIN" -c "$GARAGE_TOML" "$@" </dev/null; }

garage_build() {
  local t0 blog=$LOG_DIR/garage-install.log
  [[ -x $GARAGE_BIN ]] && return 0
  # Another `up` (or a manual run) may be building it right now: wait instead of racing it.
  # ([c] keeps pgrep from matching a command line that merely contains this pattern.)
  if pgrep -f '[c]argo install garage' >/dev/null; then
    log "garage: a 'cargo install garage' is already running; waiting for it"
    while pgrep -f '[c]argo install garage' >/dev/null; do sleep 10; done
    [[ -x $GARAGE_BIN ]] && return 0
  fi
  command -v cargo >/dev/null || die "garage: cargo is needed to build Garage (install Rust via rustup)"
  t0=$(now)
  log "garage: building garage $GARAGE_VERSION from crates.io (first run only, ~10 min on 2 cores; log: $blog)"
  if ! cargo install garage --version "$GARAGE_VERSION" --locked "${GARAGE_CARGO_FEATURES[@]}" \
    --root "$CACHE_DIR/garage" --target-dir "$CACHE_DIR/garage-build" </dev/null >"$blog" 2>&1; then
    show_log_tail "cargo install garage" "$blog"
    die "garage: build failed"
  fi
  TIMINGS+=("garage-build $(($(now) - t0))s")
}

# http_status PORT PATH : HTTP status code of GET http://127.0.0.1:PORT/PATH (bash only, no curl).
http_status() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  IFS=' ' read -r -t 5 _ line _ <&3 || true
  exec 3<&- 3>&-
  printf '%s\n' "${line:-000}"
}
garage_healthy() { [[ $(http_status "$GARAGE_ADMIN_PORT" /health 2>/dev/null) == 200 ]]; }

# S3 round trip with the dev key: put, list, ranged get, delete.
s3_roundtrip() {
  AWS_ACCESS_KEY_ID=$S3_KEY_ID AWS_SECRET_ACCESS_KEY=$S3_SECRET \
    "$VENV/bin/python" - "http://127.0.0.1:$S3_PORT" "$S3_REGION" "$S3_BUCKET" <<'PY'
import sys, boto3
from botocore.config import Config
endpoint, region, bucket = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
key = "_stack_check/roundtrip.bin"
body = bytes(range(256)) * 16
s3.put_object(Bucket=bucket, Key=key, Body=body)
keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="_stack_check/").get("Contents", [])]
assert key in keys, keys
part = s3.get_object(Bucket=bucket, Key=key, Range="bytes=100-199")["Body"].read()
assert part == body[100:200], part
s3.delete_object(Bucket=bucket, Key=key)
PY
}

# Layout, bucket, key and grant: each step checks first, so re-running is harmless.
garage_configure() {
  local node_id version layout
  layout=$(garage layout show) || die "garage: 'garage layout show' failed"
  # Only the applied layout counts (a crash between assign and apply leaves a staged change).
  if ! sed '/STAGED/,$d' <<<"$layout" | grep -q ' dc1 '; then
    node_id=$(garage node id -q 2>/dev/null | cut -d@ -f1)
    [[ -n $node_id ]] || die "garage: could not read the node id"
    log "garage: assigning layout to node ${node_id:0:16}"
    garage layout assign -z dc1 -c 1G "$node_id" >/dev/null
    # Current version + 1: parsed from `layout show` ("Current cluster layout version: N").
    version=$(sed -n 's/.*[Cc]urrent cluster layout version: *\([0-9]\+\).*/\1/p' <<<"$layout" | head -n1)
    garage layout apply --version "$((${version:-0} + 1))" >/dev/null
  fi
  if ! garage bucket info "$S3_BUCKET" >/dev/null 2>&1; then
    log "garage: creating bucket $S3_BUCKET"
    garage bucket create "$S3_BUCKET" >/dev/null
  fi
  if ! garage key info "$S3_KEY_NAME" >/dev/null 2>&1; then
    log "garage: importing dev key $S3_KEY_ID as '$S3_KEY_NAME'"
    garage key import --yes "$S3_KEY_ID" "$S3_SECRET" -n "$S3_KEY_NAME" >/dev/null
  fi
  garage bucket allow --read --write --owner "$S3_BUCKET" --key "$S3_KEY_NAME" >/dev/null
}

garage_up() {
  local t0 logf=$GARAGE_DIR/garage.log secret token
  garage_build
  ensure_venv
  t0=$(now)
  if pid_alive "$GARAGE_PIDFILE" "$GARAGE_BIN" && garage_healthy; then
    log "garage: already running on 127.0.0.1:$S3_PORT"
    return 0
  fi
  if ! pid_alive "$GARAGE_PIDFILE" "$GARAGE_BIN"; then
    if port_open "$S3_PORT"; then
      # Someone else's Garage (another stack dir): usable if our fixed dev key works on it.
      s3_roundtrip >/dev/null 2>&1 ||
        die "garage: port $S3_PORT is taken by something that does not accept the dev S3 key"
      warn "garage: reusing an S3 server on port $S3_PORT that this stack dir did not start"
      return 0
    fi
    mkdir -p "$GARAGE_DIR"/{meta,data}
    chmod 0700 "$GARAGE_DIR"
    # Secrets are random per stack dir and kept across restarts (the RPC secret is cluster identity).
    [[ -s $GARAGE_DIR/rpc_secret ]] || (umask 077 && random_hex 32 >"$GARAGE_DIR/rpc_secret")
    [[ -s $GARAGE_DIR/admin_token ]] || (umask 077 && random_hex 32 >"$GARAGE_DIR/admin_token")
    secret=$(<"$GARAGE_DIR/rpc_secret")
    token=$(<"$GARAGE_DIR/admin_token")
    (umask 077 && render "$SCRIPT_DIR/garage.toml.tmpl" "$GARAGE_TOML" \
      DATA_DIR="$GARAGE_DIR" RPC_PORT="$GARAGE_RPC_PORT" S3_PORT="$S3_PORT" \
      ADMIN_PORT="$GARAGE_ADMIN_PORT" S3_REGION="$S3_REGION" RPC_SECRET="$secret" ADMIN_TOKEN="$token")
    rotate_log "$logf"
    log "garage: starting on 127.0.0.1:$S3_PORT (admin :$GARAGE_ADMIN_PORT, rpc :$GARAGE_RPC_PORT)"
    RUST_LOG=${RUST_LOG:-garage=info} setsid "$GARAGE_BIN" -c "$GARAGE_TOML" server \
      9>&- </dev/null >>"$logf" 2>&1 &
    echo $! >"$GARAGE_PIDFILE"
  fi
  # `garage status` answers a moment before layout commands do; wait for the latter, because
  # garage_configure must tell "no layout yet" from "not ready yet".
  if ! wait_until garage 60 "$GARAGE_PIDFILE" "$GARAGE_BIN" garage layout show; then
    show_log_tail garage "$logf"
    die "garage: RPC not answering (log: $logf)"
  fi
  garage_configure
  if ! wait_until garage 60 "$GARAGE_PIDFILE" "$GARAGE_BIN" garage_healthy; then
    show_log_tail garage "$logf"
    die "garage: admin /health on 127.0.0.1:$GARAGE_ADMIN_PORT never returned 200 (log: $logf)"
  fi
  if ! s3_roundtrip; then
    show_log_tail garage "$logf"
    die "garage: S3 put/list/get round trip on 127.0.0.1:$S3_PORT failed"
  fi
  TIMINGS+=("garage-start+setup $(($(now) - t0))s")
}

garage_down() {
  stop_pidfile garage "$GARAGE_PIDFILE" "$GARAGE_BIN" 30
}

garage_status() {
  local state=stopped
  if pid_alive "$GARAGE_PIDFILE" "$GARAGE_BIN"; then
    if garage_healthy; then state=running; else state=unhealthy; fi
  elif port_open "$S3_PORT"; then
    state="running (not started from this stack dir)"
  fi
  s3_enabled || state="$state (disabled)"
  printf '%-10s %-8s 127.0.0.1:%-6s admin=127.0.0.1:%s bin=%s\n' garage "$state" "$S3_PORT" \
    "$GARAGE_ADMIN_PORT" "$([[ -x $GARAGE_BIN ]] && echo "$GARAGE_BIN" || echo '(not built yet)')"
  [[ $state == running* ]] || ! s3_enabled
}

# ================================================================================================
# Commands
# ================================================================================================
lock_stack() {
  # Serialise concurrent up/down on the same stack dir. Every server is started with fd 9
  # closed (9>&-): a daemon inheriting it would hold the lock for its whole life.
  exec 9>"$STACK_DIR/.lock"
  flock -w 900 9 || die "another stack.sh holds $STACK_DIR/.lock"
}

cmd_up() {
  local want_s3=1 t0 arg
  for arg in "$@"; do
    case $arg in
      --no-s3) want_s3=0 ;;
      *) die "up: unknown option $arg" ;;
    esac
  done
  [[ ${MEMBERLAKE_STACK_S3:-1} == 0 ]] && want_s3=0
  [[ $(id -u) == 0 ]] || warn "not root: the postgres part needs root (runuser) and may fail"
  t0=$(now)
  TIMINGS=()
  ensure_dirs
  lock_stack
  if ((want_s3)); then rm -f "$S3_DISABLED_MARKER"; else touch "$S3_DISABLED_MARKER"; fi
  pg_up
  cql_up
  if ((want_s3)); then garage_up; else log "garage: skipped (--no-s3)"; fi
  local summary=""
  ((${#TIMINGS[@]})) && summary=" ($(IFS=,; echo "${TIMINGS[*]}"))"
  log "stack up in $(($(now) - t0))s$summary"
  log "use: eval \"\$($0 env)\""
}

cmd_down() {
  local purge=0 arg
  for arg in "$@"; do
    case $arg in
      --purge) purge=1 ;;
      *) die "down: unknown option $arg" ;;
    esac
  done
  [[ -d $STACK_DIR ]] || { log "nothing to stop: $STACK_DIR does not exist"; return 0; }
  lock_stack
  garage_down
  cql_down
  pg_down
  if ((purge)); then
    log "deleting $STACK_DIR"
    rm -rf "$(pg_home)" "$STACK_DIR"
  fi
}

cmd_status() {
  local rc=0
  echo "stack dir: $STACK_DIR"
  pg_status || rc=1
  cql_status || rc=1
  garage_status || rc=1
  return $rc
}

cmd_env() {
  cat <<EOF
export MEMBERLAKE_STACK_DIR=$STACK_DIR
export MEMBERLAKE_DATABASE_URL=postgres://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB
export MEMBERLAKE_SCYLLA_NODES=127.0.0.1:$CQL_PORT
export MEMBERLAKE_SCYLLA_KEYSPACE=$CQL_KEYSPACE
export MEMBERLAKE_LAKE_URL=file://$STACK_DIR/lake
export MEMBERLAKE_CQLSH=$CQLSH
EOF
  # Without S3 (up --no-s3 / MEMBERLAKE_STACK_S3=0, and no Garage answering anyway) the S3
  # variables are left out, so S3 tests can skip instead of failing to connect.
  if s3_enabled || port_open "$S3_PORT"; then
    cat <<EOF
export MEMBERLAKE_TEST_S3_LAKE_URL=s3://$S3_BUCKET
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_KEY_ID
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=$S3_REGION
export AWS_ALLOW_HTTP=true
EOF
  fi
}

cmd_check() {
  pg_find_bin || die "postgres not installed"
  log "postgres: $(pg_psql -d "$PG_DB" -U "$PG_ROLE" -tAc 'SELECT version()' | cut -c1-40)"
  cql_kind
  log "cql: release $(cql_version)"
  if s3_enabled; then
    s3_roundtrip && log "s3: put/list/ranged-get/delete OK on s3://$S3_BUCKET"
  fi
  log "all checks passed"
}

# Game-day helpers: stop or start one server of a running stack (tests stop the CQL node or
# Postgres on purpose and expect the services to recover).
cmd_component() {
  local action=$1 name=${2:-}
  TIMINGS=()
  ensure_dirs
  lock_stack
  case $action:$name in
    start:postgres) pg_up ;;
    stop:postgres) pg_down ;;
    start:cql) cql_up ;;
    stop:cql) cql_down ;;
    start:s3) garage_up ;;
    stop:s3) garage_down ;;
    *) die "usage: $0 start|stop postgres|cql|s3" ;;
  esac
}

# Every test world creates its own Postgres database (test_*) and CQL keyspace (t_*) and leaves
# them for a post-mortem; runs pile them up. Hundreds of keyspaces cost a 1 GiB Cassandra heap
# its per-table overhead (measured: 507 left keyspaces halved the node's rows per CPU-second),
# so the test command and the benchmarks start by dropping them. Never while tests run.
cmd_clean_tests() {
  local db n drops
  drops=$(mktemp)
  cql_query "SELECT keyspace_name FROM system_schema.keyspaces" |
    awk '$1 ~ /^t_[0-9a-f]+$/ {print "DROP KEYSPACE IF EXISTS " $1 ";"}' >"$drops"
  n=$(wc -l <"$drops")
  # One cqlsh for all of them (a cqlsh start costs about a second).
  if ((n > 0)); then
    "$CQLSH" 127.0.0.1 "$CQL_PORT" --connect-timeout=5 --request-timeout=60 -f "$drops" >/dev/null
  fi
  rm -f "$drops"
  for db in $(pg_psql -d postgres -tAc "SELECT datname FROM pg_database WHERE datname ~ '^test_[0-9a-f]+$'"); do
    pg_psql -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
  done
  log "dropped $n test keyspaces and the test databases"
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status ;;
    env) cmd_env ;;
    check) cmd_check ;;
    start | stop) cmd_component "$cmd" "$@" ;;
    clean-tests) pg_find_bin; cmd_clean_tests ;;
    *) usage ;;
  esac
}

main "$@"
