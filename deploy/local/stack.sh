#!/usr/bin/env bash
# Local development / CI stack for memberlake: real servers on loopback, non-default ports.
#
#   deploy/local/stack.sh up [--no-s3] [--secure] [--cql-nodes N]
#                                        start (or reuse) PostgreSQL, the CQL node(s) and Garage (S3)
#   deploy/local/stack.sh down [--purge] stop what `up` started (--purge also deletes the data)
#   deploy/local/stack.sh status         one line per server; exit 1 if an enabled one is down
#   deploy/local/stack.sh env            `export` lines only: eval "$(deploy/local/stack.sh env)"
#   deploy/local/stack.sh check          real round trips: SQL query, CQL query, S3 put/list/get
#   deploy/local/stack.sh stop|start postgres|cql|s3   one server (game-day tests; cql = every node)
#   deploy/local/stack.sh stop-node N [--kill]   stop CQL node N (SIGTERM, drains; --kill: SIGKILL)
#   deploy/local/stack.sh start-node N           start CQL node N; waits until it answers CQL and
#                                                the running nodes see each other up
#   deploy/local/stack.sh repair-node N [ARGS]   `nodetool repair ARGS` on node N (e.g. --full KS)
#   deploy/local/stack.sh nodetool N ARGS...     any nodetool command against node N's JMX port
#   deploy/local/stack.sh clean-tests    drop the databases and keyspaces tests left behind
#
# Modes (chosen by `up`, remembered in $MEMBERLAKE_STACK_DIR/stack.conf; every other verb, and a
# later `up` without mode options, uses the remembered one; another mode needs `down --purge`):
#   plain (default)   no authentication, no TLS.
#   --secure          Postgres: TLS only over TCP (hostssl, scram-sha-256; plaintext refused), a
#                     random password for the memberlake role. Cassandra: PasswordAuthenticator,
#                     CassandraAuthorizer, client TLS required (plaintext refused), a memberlake
#                     role with a random password, the default superuser's password changed.
#                     A CA and a server certificate (SAN IP:127.0.0.1-3, DNS:localhost) are made
#                     with openssl; certificates under <stack dir>/tls, passwords (0600) under
#                     <stack dir>/secrets. `env` prints the file settings the services read.
#   --cql-nodes N     N (1-9) Cassandra nodes on 127.0.0.1..127.0.0.N, one datacenter; `env`
#                     adds the NetworkTopologyStrategy replication and the local datacenter.
# Both modes use Apache Cassandra even where ScyllaDB is installed, and cannot be combined yet.
#
# Ports (127.0.0.1 only): PostgreSQL 55432, CQL 19042 (Cassandra storage 17000, JMX 17199; node N
# of a cluster listens on 127.0.0.N with the same CQL and storage ports, JMX 17199+N-1),
# S3 39000 (Garage RPC 39001, admin 39003); MEMBERLAKE_STACK_PORT_OFFSET=N adds N to all of them
# (remembered in stack.conf too). A second stack runs beside the first with its own stack dir and
# offset, e.g. MEMBERLAKE_STACK_DIR=$PWD/.stack-secure MEMBERLAKE_STACK_PORT_OFFSET=100.
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

# ---- the stack dir's mode, written by `up` and read by every verb ------------------------------
STACK_CONF=$STACK_DIR/stack.conf
STACK_SECURE=0 # 1: authentication and TLS (up --secure)
CQL_NODES=1    # Cassandra nodes, on 127.0.0.1..127.0.0.N (up --cql-nodes N)
CQL_DC=        # the nodes' datacenter as they report it (recorded by a multi-node up)
CONF_PORT_OFFSET=
CONF_FOUND=0

read_stack_conf() {
  local key val
  [[ -f $STACK_CONF ]] || return 0
  CONF_FOUND=1
  while IFS='=' read -r key val; do
    case $key in
      SECURE) [[ $val =~ ^[01]$ ]] && STACK_SECURE=$val ;;
      CQL_NODES) [[ $val =~ ^[1-9]$ ]] && CQL_NODES=$val ;;
      PORT_OFFSET) [[ $val =~ ^[0-9]+$ ]] && CONF_PORT_OFFSET=$val ;;
      CQL_DC) [[ $val =~ ^[A-Za-z0-9_.-]+$ ]] && CQL_DC=$val ;;
    esac
  done <"$STACK_CONF"
  return 0
}

write_stack_conf() {
  {
    echo "# Written by deploy/local/stack.sh up: this stack dir's mode. Every verb reads it; another"
    echo "# mode or port offset needs 'stack.sh down --purge' first (or another MEMBERLAKE_STACK_DIR)."
    echo "SECURE=$STACK_SECURE"
    echo "CQL_NODES=$CQL_NODES"
    echo "PORT_OFFSET=$PORT_OFFSET"
    echo "CQL_DC=$CQL_DC"
  } >"$STACK_CONF.tmp"
  mv -f "$STACK_CONF.tmp" "$STACK_CONF"
}

mode_name() {
  local name=plain
  ((STACK_SECURE)) && name=secure
  ((CQL_NODES > 1)) && name="$name, $CQL_NODES CQL nodes"
  printf '%s\n' "$name"
}

read_stack_conf

# ---- ports (the env output follows them) ------------------------------------------------------
# Non-default ports so a developer's own servers on 5432/9042/3900 are untouched.
# MEMBERLAKE_STACK_PORT_OFFSET shifts all of them, for a second stack on the same machine; the
# offset a stack dir was brought up with is remembered, so later verbs need not repeat it.
PORT_OFFSET=${MEMBERLAKE_STACK_PORT_OFFSET:-${CONF_PORT_OFFSET:-0}}
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || die "MEMBERLAKE_STACK_PORT_OFFSET must be a number"
if [[ -n $CONF_PORT_OFFSET && $CONF_PORT_OFFSET != "$PORT_OFFSET" ]]; then
  die "$STACK_DIR was brought up with MEMBERLAKE_STACK_PORT_OFFSET=$CONF_PORT_OFFSET (stack.conf), not $PORT_OFFSET"
fi
PG_PORT=$((55432 + PORT_OFFSET))
CQL_PORT=$((19042 + PORT_OFFSET))
CASSANDRA_STORAGE_PORT=$((17000 + PORT_OFFSET))
CASSANDRA_JMX_PORT=$((17199 + PORT_OFFSET)) # node N of a cluster: + N - 1
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
CQL_ROLE=memberlake # secure mode's CQL login
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
CASSANDRA_DIR=$STACK_DIR/cassandra # node 1; node N of a cluster: $STACK_DIR/cassandra-N
GARAGE_BIN=$CACHE_DIR/garage/bin/garage
GARAGE_DIR=$STACK_DIR/garage
GARAGE_TOML=$GARAGE_DIR/garage.toml
S3_DISABLED_MARKER=$STACK_DIR/s3-disabled
# Secure mode: certificates (the CA's is public; keys 0600) and secrets (0600, in a 0700 dir).
TLS_DIR=$STACK_DIR/tls
CA_PEM=$TLS_DIR/ca.pem
SECRETS_DIR=$STACK_DIR/secrets
PG_PASSWORD_FILE=$SECRETS_DIR/postgres-password    # the memberlake role's
CQL_PASSWORD_FILE=$SECRETS_DIR/cql-password        # the memberlake role's
CQL_ADMIN_PASSWORD_FILE=$SECRETS_DIR/cql-admin-password # the `cassandra` superuser's
KEYSTORE_PASSWORD_FILE=$SECRETS_DIR/keystore-password
CQLSHRC=$SECRETS_DIR/cqlshrc                       # --ssl with the CA (cqlsh --cqlshrc)
CQL_ADMIN_CREDENTIALS=$SECRETS_DIR/cql-admin.credentials # cqlsh --credentials files
CQL_DEFAULT_CREDENTIALS=$SECRETS_DIR/cql-default.credentials
CQL_USER_CREDENTIALS=$SECRETS_DIR/cql-memberlake.credentials

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
# Secure mode: a local CA, one server certificate for every server, random passwords
# ================================================================================================
# secret_file FILE : create FILE (0600) with a random hex secret unless it has one; kept across
# restarts, so a restarted server and the services agree.
secret_file() {
  [[ -s $1 ]] || (umask 077 && random_hex 24 >"$1.tmp" && mv -f "$1.tmp" "$1")
}

# Generated once per stack dir; the server certificate is renewed when it expires within 30 days.
# One certificate for Postgres and every Cassandra node: its SANs name the three node addresses
# (the CQL driver verifies a node's certificate for the node's IP address) and localhost.
tls_setup() {
  local d=$TLS_DIR
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$d" "$SECRETS_DIR"
  chmod 0700 "$SECRETS_DIR"
  chmod 0755 "$d"
  if [[ ! -s $d/ca.key || ! -s $CA_PEM ]]; then
    log "tls: creating a local CA in $d"
    (umask 077 && openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/ca.key") ||
      die "tls: openssl genpkey failed"
    cat >"$d/ca.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
O = memberlake local stack
CN = memberlake local CA ($(basename "$STACK_DIR"))
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -new -key "$d/ca.key" -config "$d/ca.cnf" -sha256 -days 3650 -out "$CA_PEM.tmp" ||
      die "tls: could not create the CA certificate"
    mv -f "$CA_PEM.tmp" "$CA_PEM"
    rm -f "$d/server.pem"
  fi
  if [[ ! -s $d/server.pem || ! -s $d/server.key ]] || ! openssl x509 -checkend 2592000 -noout -in "$d/server.pem" >/dev/null; then
    log "tls: issuing the server certificate (SAN IP:127.0.0.1-3, DNS:localhost)"
    (umask 077 && openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/server.key") ||
      die "tls: openssl genpkey failed"
    cat >"$d/server.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
O = memberlake local stack
CN = localhost
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, IP:127.0.0.2, IP:127.0.0.3, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
EOF
    if ! { openssl req -new -key "$d/server.key" -config "$d/server.cnf" -out "$d/server.csr" &&
      openssl x509 -req -in "$d/server.csr" -CA "$CA_PEM" -CAkey "$d/ca.key" -set_serial "0x$(random_hex 16)" \
        -days 825 -sha256 -extfile "$d/server.cnf" -extensions server -out "$d/server.pem.tmp"; } 2>"$d/openssl.log"; then
      show_log_tail openssl "$d/openssl.log"
      die "tls: could not issue the server certificate"
    fi
    mv -f "$d/server.pem.tmp" "$d/server.pem"
    rm -f "$d/server.csr" "$d/server.p12" "$d/openssl.log"
  fi
  # Cassandra's keystore: PKCS#12 with the key, the certificate and the CA.
  secret_file "$KEYSTORE_PASSWORD_FILE"
  if [[ ! -s $d/server.p12 ]]; then
    (umask 077 && openssl pkcs12 -export -name cassandra -in "$d/server.pem" -inkey "$d/server.key" \
      -certfile "$CA_PEM" -passout "file:$KEYSTORE_PASSWORD_FILE" -out "$d/server.p12") ||
      die "tls: could not write the PKCS#12 keystore"
  fi
}

# The passwords and the cqlsh files of secure mode (all 0600 in the 0700 secrets dir).
secrets_setup() {
  mkdir -p "$SECRETS_DIR"
  chmod 0700 "$SECRETS_DIR"
  secret_file "$PG_PASSWORD_FILE"
  secret_file "$CQL_PASSWORD_FILE"
  secret_file "$CQL_ADMIN_PASSWORD_FILE"
  (
    umask 077
    printf '[plain_text_auth]\nusername = cassandra\npassword = %s\n' "$(<"$CQL_ADMIN_PASSWORD_FILE")" >"$CQL_ADMIN_CREDENTIALS"
    printf '[plain_text_auth]\nusername = cassandra\npassword = cassandra\n' >"$CQL_DEFAULT_CREDENTIALS"
    printf '[plain_text_auth]\nusername = %s\npassword = %s\n' "$CQL_ROLE" "$(<"$CQL_PASSWORD_FILE")" >"$CQL_USER_CREDENTIALS"
    printf '[connection]\nssl = true\n\n[ssl]\ncertfile = %s\nvalidate = true\n\n[authentication]\ncredentials = %s\n' \
      "$CA_PEM" "$CQL_ADMIN_CREDENTIALS" >"$CQLSHRC"
  )
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

# The script's own administrator connection: TCP with trust auth in plain mode; in secure mode
# the Unix socket in the postgres-owned 0700 home dir (only root and postgres reach it), since TCP
# then takes TLS and a password only.
pg_admin_host() {
  if ((STACK_SECURE)); then pg_home; else echo 127.0.0.1; fi
}

pg_psql() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_admin_host)" -p "$PG_PORT" -U postgres "$@" </dev/null
}

# pg_psql_stdin ARGS... : like pg_psql, the SQL read from stdin (keeps passwords off argv).
pg_psql_stdin() {
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_admin_host)" -p "$PG_PORT" -U postgres "$@" -f -
}

# psql as the memberlake role over TCP with TLS verified against the stack's CA (secure mode).
pg_psql_tls() {
  local sslmode=$1
  shift
  PGPASSWORD=$(<"$PG_PASSWORD_FILE") "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$PG_PORT user=$PG_ROLE dbname=$PG_DB sslmode=$sslmode sslrootcert=$CA_PEM connect_timeout=5" \
    "$@" </dev/null
}

# Secure mode's server settings, pg_hba.conf and certificate (copied into the data dir, where
# PostgreSQL wants its key: owned by postgres, 0600).
pg_secure_files() {
  local home=$1 data=$1/data
  install -o "$PG_USER" -g "$(id -gn "$PG_USER")" -m 0600 "$TLS_DIR/server.pem" "$data/server.crt"
  install -o "$PG_USER" -g "$(id -gn "$PG_USER")" -m 0600 "$TLS_DIR/server.key" "$data/server.key"
  cat >"$data/pg_hba.conf.tmp" <<EOF
# memberlake secure local stack (deploy/local/stack.sh up --secure), regenerated on every start.
# TYPE    DATABASE USER ADDRESS       METHOD
# The socket sits in $home (0700, postgres): only root and postgres reach it.
local     all      all                trust
# TCP: TLS and a SCRAM password, nothing else.
hostssl   all      all  127.0.0.1/32  scram-sha-256
hostnossl all      all  0.0.0.0/0     reject
EOF
  chown "$PG_USER:" "$data/pg_hba.conf.tmp"
  chmod 0600 "$data/pg_hba.conf.tmp"
  mv -f "$data/pg_hba.conf.tmp" "$data/pg_hba.conf"
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
    ((STACK_SECURE)) && die "postgres: port $PG_PORT is taken by a server this stack dir did not start (a secure stack needs its own: set MEMBERLAKE_STACK_PORT_OFFSET)"
    pg_ready || die "postgres: port $PG_PORT is taken by something that is not a ready PostgreSQL"
    warn "postgres: reusing a server on port $PG_PORT that this stack dir did not start"
  else
    mkdir -p "$home"
    chown "$PG_USER:" "$home"
    chmod 0700 "$home"
    if [[ ! -f $data/PG_VERSION ]]; then
      log "postgres: initdb in $data"
      rm -rf "$data"
      # C locale: no dependency on generated system locales. Trust auth: loopback-only dev server
      # (secure mode replaces pg_hba.conf below).
      as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        >"$home/initdb.log" 2>&1 || { show_log_tail postgres "$home/initdb.log"; die "initdb failed"; }
      local sockets="''" secure_conf=""
      if ((STACK_SECURE)); then
        sockets="'$home'"
        secure_conf="
# Secure mode: TLS with the stack's certificate (pg_hba.conf admits TCP over TLS only).
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
unix_socket_permissions = 0700"
      fi
      cat >>"$data/postgresql.conf" <<EOF

# ---- memberlake local stack (deploy/local/stack.sh) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
# No socket in /var/run/postgresql (may not exist, and would clash with a system server); plain
# mode is TCP only, secure mode's administrator socket lives in the 0700 home dir.
unix_socket_directories = $sockets
max_connections = 200
# Throwaway test data: trade crash safety for speed.
fsync = off
synchronous_commit = off
full_page_writes = off$secure_conf
EOF
    fi
    ((STACK_SECURE)) && pg_secure_files "$home"
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

  # Idempotent: role and database. Plain mode: a superuser without a password. Secure mode: a
  # plain role that may create databases (tests do), with the password of the secrets file.
  if ((STACK_SECURE)); then
    pg_psql_stdin -d postgres <<EOF || die "postgres: could not create role $PG_ROLE"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN NOSUPERUSER CREATEDB;
  END IF;
END \$\$;
ALTER ROLE $PG_ROLE PASSWORD '$(<"$PG_PASSWORD_FILE")';
EOF
  else
    pg_psql -d postgres -c "DO \$\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
          CREATE ROLE $PG_ROLE LOGIN SUPERUSER CREATEDB;
        END IF;
      END \$\$;" || die "postgres: could not create role $PG_ROLE"
  fi
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
  printf '%-10s %-8s 127.0.0.1:%-6s data=%s%s\n' postgres "$state" "$PG_PORT" "$(pg_home)/data" \
    "$( ((STACK_SECURE)) && echo ' tls+scram' )"
  [[ $state != stopped ]]
}

# ================================================================================================
# CQL nodes: ScyllaDB if installed (plain single-node stacks only), else Apache Cassandra 5.0
# assembled from Maven Central. Node N of a cluster listens on 127.0.0.N.
# ================================================================================================
SCYLLA_PIDFILE=$STACK_DIR/scylla/scylla.pid
CASSANDRA_PATTERN=org.apache.cassandra.service.CassandraDaemon
CQL_KIND=

# Sets CQL_KIND (scylla|cassandra). Secure mode and clusters are set up for Cassandra only.
cql_kind() {
  if ((!STACK_SECURE && CQL_NODES == 1)) && command -v scylla >/dev/null 2>&1; then
    CQL_KIND=scylla
  else
    CQL_KIND=cassandra
  fi
}

node_ip() { printf '127.0.0.%s\n' "$1"; }
node_dir() { if (($1 == 1)); then printf '%s\n' "$CASSANDRA_DIR"; else printf '%s-%s\n' "$CASSANDRA_DIR" "$1"; fi; }
node_jmx_port() { printf '%s\n' $((CASSANDRA_JMX_PORT + $1 - 1)); }
node_pidfile() {
  if [[ $CQL_KIND == scylla ]]; then printf '%s\n' "$SCYLLA_PIDFILE"; else printf '%s/cassandra.pid\n' "$(node_dir "$1")"; fi
}
node_pattern() { if [[ $CQL_KIND == scylla ]]; then echo scylla; else echo "$CASSANDRA_PATTERN"; fi; }
node_alive() { pid_alive "$(node_pidfile "$1")" "$(node_pattern)"; }
node_name() { if ((CQL_NODES == 1)); then echo cql; else echo "cql node $1"; fi; }
node_logs() {
  if [[ $CQL_KIND == scylla ]]; then echo "$STACK_DIR/scylla/scylla.log"; else
    printf '%s\n' "$(node_dir "$1")/logs/stdout.log" "$(node_dir "$1")/logs/system.log"
  fi
}
# host:port of every node, comma-separated (MEMBERLAKE_SCYLLA_NODES).
cql_node_list() {
  local n list=()
  for ((n = 1; n <= CQL_NODES; n++)); do list+=("$(node_ip "$n"):$CQL_PORT"); done
  (IFS=,; echo "${list[*]}")
}
node_arg() { # validates a node number argument
  [[ ${1:-} =~ ^[1-9]$ ]] && (($1 <= CQL_NODES)) || die "node must be 1..$CQL_NODES (this stack: $(mode_name))"
}

# cqlsh_on N [cqlsh options...] : cqlsh against node N as the stack's administrator. Secure mode:
# TLS verified against the stack's CA, the superuser's credentials file (CQLSH_CREDENTIALS
# overrides it: the default superuser's on a first start, the memberlake role's for `check`).
cqlsh_on() {
  local n=$1 sec=()
  shift
  if ((STACK_SECURE)); then
    sec=(--cqlshrc="$CQLSHRC" --ssl --credentials="${CQLSH_CREDENTIALS:-$CQL_ADMIN_CREDENTIALS}")
  fi
  "$CQLSH" "${sec[@]}" "$(node_ip "$n")" "$CQL_PORT" --connect-timeout=5 "$@"
}
cql_query_on() { cqlsh_on "$1" --request-timeout=10 -e "$2"; }
# The first running node (the one to send a stack-wide statement to), else 1.
cql_first_live() {
  local n
  for ((n = 1; n <= CQL_NODES; n++)); do
    if node_alive "$n"; then echo "$n"; return 0; fi
  done
  echo 1
}
cql_query() { cql_query_on "$(cql_first_live)" "$1"; }
cql_ready_on() { cql_query_on "$1" 'SELECT release_version FROM system.local' >/dev/null 2>&1; }
# Secure mode's first start: only the default superuser (cassandra/cassandra) exists yet.
cql_ready_any_on() {
  cql_ready_on "$1" || { ((STACK_SECURE)) && CQLSH_CREDENTIALS=$CQL_DEFAULT_CREDENTIALS cql_ready_on "$1"; }
}
# cql_value N STATEMENT : the first value of a one-column answer (cqlsh prints a header line and
# a dashed line before it).
cql_value() { cql_query_on "$1" "$2" 2>/dev/null | awk 'f && NF { print $1; exit } /^-+$/ { f = 1 }'; }
cql_version() { cql_value "$(cql_first_live)" 'SELECT release_version FROM system.local'; }

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

ensure_java() {
  [[ -n $JAVA ]] && return 0
  find_java || { apt_install openjdk-17-jre-headless; find_java; } || die "cassandra: need a JDK 17 (or 11) java"
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

# The cassandra.yaml lines that depend on the stack's mode (@MODE_OPTIONS@ in the template).
cassandra_mode_options() {
  if ((STACK_SECURE)); then
    cat <<EOF
# Secure mode (stack.sh up --secure): logins with passwords, permissions, and client TLS only.
authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
role_manager: CassandraRoleManager
# Short auth caches, so that a role or password change shows within a second.
roles_validity: 1000ms
permissions_validity: 1000ms
credentials_validity: 1000ms
client_encryption_options:
  enabled: true
  optional: false
  keystore: "$TLS_DIR/server.p12"
  keystore_password: "$(<"$KEYSTORE_PASSWORD_FILE")"
  store_type: PKCS12
  require_client_auth: false
EOF
  else
    cat <<EOF
# No auth: loopback-only throwaway node.
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
role_manager: CassandraRoleManager
EOF
  fi
  if ((CQL_NODES > 1)); then
    cat <<EOF
# A new local cluster (stack.sh up --cql-nodes $CQL_NODES): the nodes join with their own tokens
# at once instead of streaming (there is nothing to stream yet).
auto_bootstrap: false
EOF
  fi
}

cassandra_start() {
  local n=$1 lib=$CASSANDRA_HOME/lib jamm opts=() line jars dir ip jmx pidfile
  ensure_java
  dir=$(node_dir "$n")
  ip=$(node_ip "$n")
  jmx=$(node_jmx_port "$n")
  pidfile=$(node_pidfile "$n")
  jars=("$lib"/jamm-*.jar)
  jamm=${jars[0]}
  mkdir -p "$dir"/{conf,data,commitlog,saved_caches,hints,cdc_raw,logs,triggers}
  # Regenerated on every start so template changes take effect; the data dirs are kept. 0600:
  # in secure mode it holds the keystore password.
  (umask 077 && render "$SCRIPT_DIR/cassandra/cassandra.yaml.tmpl" "$dir/conf/cassandra.yaml" \
    DATA_DIR="$dir" CQL_PORT="$CQL_PORT" STORAGE_PORT="$CASSANDRA_STORAGE_PORT" \
    LISTEN_ADDRESS="$ip" SEEDS="$(node_ip 1)" MODE_OPTIONS="$(cassandra_mode_options)")
  render "$SCRIPT_DIR/cassandra/logback.xml.tmpl" "$dir/conf/logback.xml" \
    LOG_DIR="$dir/logs"
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
    "-Dcassandra-pidfile=$pidfile"
    "-Dcassandra.config=file://$dir/conf/cassandra.yaml"
    "-Dcassandra.storagedir=$dir"
    "-Dcassandra.logdir=$dir/logs"
    "-Dcassandra.triggers_dir=$dir/triggers"
    "-Dlogback.configurationFile=file://$dir/conf/logback.xml"
    # Local-only JMX (127.0.0.1) for nodetool: deploy/local/stack.sh nodetool N status
    "-Dcassandra.jmx.local.port=$jmx"
    "-XX:HeapDumpPath=$dir/logs"
    "-XX:ErrorFile=$dir/logs/hs_err_%p.log"
  )
  # A cluster's nodes start within seconds of each other on loopback: no need to wait for gossip
  # to settle, and 5 s of ring delay (default 30 s) bound a restarting node's wait for peers that
  # are down (its gossip shadow round), e.g. the first node of `stack.sh start cql`.
  # Secure mode: the default superuser is created at once, not after 10 s.
  ((CQL_NODES > 1)) && opts+=("-Dcassandra.skip_wait_for_gossip_to_settle=0" "-Dcassandra.ring_delay_ms=5000")
  ((STACK_SECURE)) && opts+=("-Dcassandra.superuser_setup_delay_ms=0")
  rotate_log "$dir/logs/stdout.log" "$dir/logs/system.log"
  log "cassandra: starting $CASSANDRA_VERSION ($JAVA, heap $CASSANDRA_HEAP) on $ip:$CQL_PORT$( ((CQL_NODES > 1)) && echo " (node $n, jmx $jmx)")"
  # setsid: own session, so the node survives the calling shell/CI step and its signals.
  # The script has no job control, so setsid execs java directly and $! is the JVM's pid.
  setsid "$JAVA" "${opts[@]}" -cp "$dir/conf:$lib/*" \
    org.apache.cassandra.service.CassandraDaemon \
    9>&- </dev/null >>"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$pidfile"
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

# node_start N : starts node N unless it runs (a foreign server on its address: an error).
node_start() {
  local n=$1
  node_alive "$n" && return 0
  port_open "$CQL_PORT" "$(node_ip "$n")" &&
    die "cql: $(node_ip "$n"):$CQL_PORT is taken by a server this stack dir did not start"
  if [[ $CQL_KIND == scylla ]]; then scylla_start; else cassandra_start "$n"; fi
}

# node_wait_ready N : until node N answers CQL (dies, with its log, if it does not).
node_wait_ready() {
  local n=$1 logs
  if ! wait_until "$(node_name "$n")" "${MEMBERLAKE_CQL_TIMEOUT:-180}" "$(node_pidfile "$n")" "$(node_pattern)" \
    cql_ready_any_on "$n"; then
    mapfile -t logs < <(node_logs "$n")
    show_log_tail "$CQL_KIND" "${logs[@]}"
    die "cql: $CQL_KIND did not answer 'SELECT release_version FROM system.local' on $(node_ip "$n"):$CQL_PORT"
  fi
}

# jvm_module_options : the --add-exports/--add-opens pairs of the server's options file (JDK 17
# refuses Cassandra's tools access to JDK internals without them, as it does the server).
jvm_module_options() {
  local line
  while IFS= read -r line; do
    line=${line%%#*}
    [[ $line == --add-* ]] && printf '%s\n' $line
  done <"$SCRIPT_DIR/cassandra/jvm17-server.options"
}

# nodetool_on N ARGS... : Cassandra's nodetool against node N's local JMX port.
nodetool_on() {
  local n=$1 modules
  shift
  ensure_java
  mapfile -t modules < <(jvm_module_options)
  "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "${modules[@]}" \
    -Dlogback.configurationFile="file://$SCRIPT_DIR/cassandra/logback-tools.xml" \
    -Duser.home="$STACK_DIR" -cp "$CASSANDRA_HOME/lib/*" org.apache.cassandra.tools.NodeTool \
    -h 127.0.0.1 -p "$(node_jmx_port "$n")" "$@" </dev/null
}

# seen_up OBSERVER NODE... : `nodetool status` on OBSERVER shows every NODE Up and Normal.
seen_up() {
  local observer=$1 out n
  shift
  out=$(nodetool_on "$observer" status 2>/dev/null) || return 1
  for n in "$@"; do
    grep -Eq "^UN +127\.0\.0\.$n(:[0-9]+)? " <<<"$out" || return 1
  done
}

# The running nodes, space-separated.
live_nodes() {
  local n live=()
  for ((n = 1; n <= CQL_NODES; n++)); do node_alive "$n" && live+=("$n"); done
  echo "${live[*]}"
}

# cluster_converged [NODE] : every running node is seen Up/Normal by NODE (default: the first
# running one) and NODE is seen Up/Normal by another running node, if there is one.
cluster_converged() {
  local observer=${1:-} live other n
  read -r -a live <<<"$(live_nodes)"
  ((${#live[@]})) || return 1
  [[ -n $observer ]] || observer=${live[0]}
  seen_up "$observer" "${live[@]}" || return 1
  for n in "${live[@]}"; do
    if [[ $n != "$observer" ]]; then other=$n; break; fi
  done
  [[ -z ${other:-} ]] || seen_up "$other" "$observer"
}

cluster_wait_converged() {
  local observer=${1:-}
  if ! wait_until "cql cluster" "${MEMBERLAKE_CQL_TIMEOUT:-180}" "" "" cluster_converged "$observer"; then
    nodetool_on "${observer:-$(cql_first_live)}" status >&2 || true
    die "cql: the nodes do not all see each other Up/Normal (nodetool status above)"
  fi
}

# Secure mode: the memberlake role (password from the secrets file, may create keyspaces and
# owns those it creates) and the superuser's own password. Idempotent; statements go through a
# 0600 file, never argv.
cql_secure_setup() {
  local default=0
  if ! cql_ready_on 1; then
    default=1
    log "cql: first start: creating role $CQL_ROLE, changing the default superuser's password"
  fi
  # Cassandra refuses a second password change of a role within 5 s: a role that is created with
  # its password is altered only if it exists with another one (its secrets file was replaced).
  cql_run_secret 1 "$default" <<EOF
CREATE ROLE IF NOT EXISTS $CQL_ROLE WITH LOGIN = true AND SUPERUSER = false AND PASSWORD = '$(<"$CQL_PASSWORD_FILE")';
GRANT CREATE ON ALL KEYSPACES TO $CQL_ROLE;
EOF
  if ((default)); then
    cql_run_secret 1 1 <<<"ALTER ROLE cassandra WITH PASSWORD = '$(<"$CQL_ADMIN_PASSWORD_FILE")';"
  fi
  if ! CQLSH_CREDENTIALS=$CQL_USER_CREDENTIALS wait_until "cql login as $CQL_ROLE" 5 "" "" cql_ready_on 1; then
    log "cql: $CQL_ROLE does not log in with $CQL_PASSWORD_FILE: setting its password"
    cql_run_secret 1 0 <<<"ALTER ROLE $CQL_ROLE WITH PASSWORD = '$(<"$CQL_PASSWORD_FILE")';"
    CQLSH_CREDENTIALS=$CQL_USER_CREDENTIALS wait_until "cql login as $CQL_ROLE" 30 "" "" cql_ready_on 1 ||
      die "cql: the $CQL_ROLE role cannot log in over TLS"
  fi
}

# cql_run_secret N DEFAULT_SUPERUSER : runs the CQL on stdin on node N as the superuser (with
# its default password if DEFAULT_SUPERUSER is 1), from a 0600 file (the statements hold secrets).
cql_run_secret() {
  local n=$1 creds=$CQL_ADMIN_CREDENTIALS stmts=$SECRETS_DIR/statements.cql rc=0
  (($2)) && creds=$CQL_DEFAULT_CREDENTIALS
  (umask 077 && cat >"$stmts")
  CQLSH_CREDENTIALS=$creds cqlsh_on "$n" --request-timeout=30 -f "$stmts" >/dev/null || rc=$?
  rm -f "$stmts"
  ((rc == 0)) || die "cql: the role set-up statements failed (cqlsh -f as the superuser)"
}

cql_up() {
  local kind t0 n started=0 dc
  cql_kind
  kind=$CQL_KIND
  t0=$(now)
  ensure_venv
  if ((STACK_SECURE)); then
    tls_setup
    secrets_setup
  fi
  if node_alive 1 && ((CQL_NODES == 1)) && cql_ready_on 1; then
    log "cql: $kind already running on 127.0.0.1:$CQL_PORT"
    ((STACK_SECURE)) && cql_secure_setup
    return 0
  fi
  if ((CQL_NODES == 1 && !STACK_SECURE)) && ! node_alive 1 && port_open "$CQL_PORT"; then
    # Another stack dir's node (e.g. a developer's while CI runs in a fresh clone): same port,
    # no auth, so just as usable if it answers.
    cql_ready_on 1 || die "cql: port $CQL_PORT is taken by something that does not answer CQL"
    warn "cql: reusing a CQL server on port $CQL_PORT that this stack dir did not start"
    return 0
  fi
  [[ $kind == cassandra ]] && cassandra_fetch
  t0=$(now)
  for ((n = 1; n <= CQL_NODES; n++)); do
    node_alive "$n" && continue
    started=1
    node_start "$n"
    # Node 1 is the seed: the others join through it, so it must be up before they start.
    ((n == 1 && CQL_NODES > 1)) && node_wait_ready 1
  done
  for ((n = 1; n <= CQL_NODES; n++)); do node_wait_ready "$n"; done
  if ((CQL_NODES > 1)); then
    cluster_wait_converged
    dc=$(cql_value 1 'SELECT data_center FROM system.local')
    [[ -n $dc ]] || die "cql: could not read the nodes' datacenter from system.local"
    if [[ $dc != "$CQL_DC" ]]; then
      CQL_DC=$dc
      write_stack_conf
    fi
  fi
  ((STACK_SECURE)) && cql_secure_setup
  log "cql: $kind ready (release $(cql_version))$( ((CQL_NODES > 1)) && echo ", $CQL_NODES nodes in $CQL_DC: $(cql_node_list)")"
  ((started)) && TIMINGS+=("$kind-start $(($(now) - t0))s")
  return 0
}

# node_stop N [kill] : SIGTERM (Cassandra drains and flushes; others see it leave at once) and
# wait, or with kill=1 SIGKILL (others notice through gossip's failure detector, in seconds; the
# node loses what its commit log had not synced yet: commitlog_sync_period).
node_stop() {
  local n=$1 kill=${2:-0} pidfile pid i
  pidfile=$(node_pidfile "$n")
  if ((!kill)); then
    stop_pidfile "$(node_name "$n")" "$pidfile" "$(node_pattern)" 60
    return 0
  fi
  if ! pid_alive "$pidfile" "$(node_pattern)"; then
    rm -f "$pidfile"
    log "$(node_name "$n"): not running"
    return 0
  fi
  pid=$(<"$pidfile")
  log "$(node_name "$n"): kill -9 pid $pid"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  rm -f "$pidfile"
}

cql_down() {
  local n pids=()
  cql_kind
  # In parallel: each node's drain takes seconds.
  for ((n = 1; n <= CQL_NODES; n++)); do
    node_stop "$n" &
    pids+=($!)
  done
  wait "${pids[@]}"
}

cql_status() {
  local kind state n rc=0 ip name extra
  cql_kind
  kind=$CQL_KIND
  for ((n = 1; n <= CQL_NODES; n++)); do
    ip=$(node_ip "$n")
    state=stopped
    if node_alive "$n"; then
      if port_open "$CQL_PORT" "$ip"; then state=running; else state=starting; fi
    elif port_open "$CQL_PORT" "$ip"; then
      state="running (not started from this stack dir)"
    fi
    name=cql
    extra="cqlsh=$([[ -x $CQLSH ]] && echo "$CQLSH" || echo '(not installed yet)')"
    if ((CQL_NODES > 1)); then
      name=cql-$n
      extra="jmx=127.0.0.1:$(node_jmx_port "$n")"
    fi
    ((STACK_SECURE)) && extra="$extra tls+password"
    printf '%-10s %-8s %s:%-6s %s %s\n' "$name" "$state" "$ip" "$CQL_PORT" "$kind" "$extra"
    [[ $state == running* ]] || rc=1
  done
  return $rc
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

# A stack dir from before stack.conf existed holds a plain single-node stack.
stack_has_data() {
  [[ -d $CASSANDRA_DIR/data || -d $STACK_DIR/scylla || -e $STACK_DIR/postgres || -e $STACK_DIR/postgres-data-link ]]
}

# settle_mode SECURE NODES : the mode `up` brings up (empty = not given). Options must match a
# stack dir's remembered mode; without options the remembered one (a new stack dir: plain).
settle_mode() {
  local want_secure=$1 want_nodes=$2
  if ((CONF_FOUND)) || stack_has_data; then
    if [[ -n $want_secure && $want_secure != "$STACK_SECURE" ]] || [[ -n $want_nodes && $want_nodes != "$CQL_NODES" ]]; then
      die "$STACK_DIR holds a $(mode_name) stack; for another mode run 'MEMBERLAKE_STACK_DIR=$STACK_DIR $0 down --purge' first, or use another MEMBERLAKE_STACK_DIR (and MEMBERLAKE_STACK_PORT_OFFSET)"
    fi
  else
    [[ -n $want_secure ]] && STACK_SECURE=$want_secure
    [[ -n $want_nodes ]] && CQL_NODES=$want_nodes
  fi
  if ((STACK_SECURE && CQL_NODES > 1)); then
    die "up: --secure with --cql-nodes > 1 is not supported yet (system_auth would need replicating)"
  fi
  return 0
}

cmd_up() {
  local want_s3=1 t0 want_secure="" want_nodes=""
  while (($#)); do
    case $1 in
      --no-s3) want_s3=0 ;;
      --secure) want_secure=1 ;;
      --cql-nodes | --cql-nodes=*)
        if [[ $1 == *=* ]]; then want_nodes=${1#*=}; else want_nodes=${2:-}; shift; fi
        [[ $want_nodes =~ ^[1-9]$ ]] || die "up: --cql-nodes takes a number from 1 to 9"
        ;;
      *) die "up: unknown option $1" ;;
    esac
    shift
  done
  [[ ${MEMBERLAKE_STACK_S3:-1} == 0 ]] && want_s3=0
  [[ $(id -u) == 0 ]] || warn "not root: the postgres part needs root (runuser) and may fail"
  t0=$(now)
  TIMINGS=()
  ensure_dirs
  lock_stack
  settle_mode "$want_secure" "$want_nodes"
  write_stack_conf
  log "mode: $(mode_name) (stack dir $STACK_DIR, port offset $PORT_OFFSET)"
  if ((want_s3)); then rm -f "$S3_DISABLED_MARKER"; else touch "$S3_DISABLED_MARKER"; fi
  ((STACK_SECURE)) && { tls_setup; secrets_setup; }
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
  echo "stack dir: $STACK_DIR ($(mode_name), port offset $PORT_OFFSET)"
  pg_status || rc=1
  cql_status || rc=1
  garage_status || rc=1
  return $rc
}

# export_line NAME VALUE : an `export` line that `eval` reads back as VALUE.
export_line() {
  local value=$2
  if [[ $value =~ ^[A-Za-z0-9_./:,@%+=-]*$ ]]; then
    printf 'export %s=%s\n' "$1" "$value"
  elif [[ $value != *[\"\$\`\\]* ]]; then
    printf 'export %s="%s"\n' "$1" "$value"
  else
    printf 'export %s=%q\n' "$1" "$value"
  fi
}

cmd_env() {
  local dc=${CQL_DC:-datacenter1} rf=$((CQL_NODES < 3 ? CQL_NODES : 3))
  export_line MEMBERLAKE_STACK_DIR "$STACK_DIR"
  export_line MEMBERLAKE_STACK_PORT_OFFSET "$PORT_OFFSET"
  export_line MEMBERLAKE_DATABASE_URL "postgres://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB"
  export_line MEMBERLAKE_SCYLLA_NODES "$(cql_node_list)"
  export_line MEMBERLAKE_SCYLLA_KEYSPACE "$CQL_KEYSPACE"
  export_line MEMBERLAKE_LAKE_URL "file://$STACK_DIR/lake"
  export_line MEMBERLAKE_CQLSH "$CQLSH"
  if ((STACK_SECURE)); then
    # Files, never the secrets themselves. cqlsh as the stack's superuser:
    # "$MEMBERLAKE_CQLSH" --cqlshrc="$MEMBERLAKE_CQLSHRC" 127.0.0.1 <CQL port>
    export_line MEMBERLAKE_DATABASE_PASSWORD_FILE "$PG_PASSWORD_FILE"
    export_line MEMBERLAKE_DATABASE_TLS_CA_FILE "$CA_PEM"
    export_line MEMBERLAKE_SCYLLA_USERNAME "$CQL_ROLE"
    export_line MEMBERLAKE_SCYLLA_PASSWORD_FILE "$CQL_PASSWORD_FILE"
    export_line MEMBERLAKE_SCYLLA_TLS_CA_FILE "$CA_PEM"
    export_line MEMBERLAKE_CQLSHRC "$CQLSHRC"
  fi
  if ((CQL_NODES > 1)); then
    export_line MEMBERLAKE_SCYLLA_REPLICATION "{'class': 'NetworkTopologyStrategy', '$dc': $rf}"
    export_line MEMBERLAKE_SCYLLA_LOCAL_DC "$dc"
  fi
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
  local n
  pg_find_bin || die "postgres not installed"
  if ((STACK_SECURE)); then
    [[ $(pg_psql_tls verify-full -tAc 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()') == t ]] ||
      die "postgres: no TLS login as $PG_ROLE with the password file and the CA (sslmode=verify-full)"
    log "postgres: $PG_ROLE logs in over TLS (verify-full against $CA_PEM) with its password"
    if pg_psql_tls disable -tAc 'SELECT 1' >/dev/null 2>&1; then
      die "postgres: a plaintext TCP connection was accepted"
    fi
    log "postgres: plaintext TCP refused"
  fi
  log "postgres: $(pg_psql -d "$PG_DB" -U "$PG_ROLE" -tAc 'SELECT version()' | cut -c1-40)"
  cql_kind
  for ((n = 1; n <= CQL_NODES; n++)); do
    log "$(node_name "$n"): release $(cql_value "$n" 'SELECT release_version FROM system.local')"
  done
  if ((STACK_SECURE)); then
    CQLSH_CREDENTIALS=$CQL_USER_CREDENTIALS cql_ready_on 1 || die "cql: $CQL_ROLE cannot log in over TLS"
    log "cql: $CQL_ROLE logs in over TLS with its password"
    if "$CQLSH" --credentials="$CQL_USER_CREDENTIALS" "$(node_ip 1)" "$CQL_PORT" --connect-timeout=5 \
      -e 'SELECT release_version FROM system.local' >/dev/null 2>&1; then
      die "cql: a plaintext CQL connection was accepted"
    fi
    log "cql: plaintext refused"
  fi
  if ((CQL_NODES > 1)); then
    cluster_converged || die "cql: the nodes do not all see each other Up/Normal"
    log "cql: all $CQL_NODES nodes Up/Normal in $CQL_DC"
  fi
  if s3_enabled; then
    s3_roundtrip && log "s3: put/list/ranged-get/delete OK on s3://$S3_BUCKET"
  fi
  log "all checks passed"
}

# Game-day helpers: stop or start one server of a running stack (tests stop the CQL node or
# Postgres on purpose and expect the services to recover). `cql` is every node of a cluster.
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

# Fault injection on one CQL node (any stack; meant for `up --cql-nodes N`).
cmd_node() {
  local action=$1 n=${2:-} kill=0 t0
  shift
  (($#)) && shift
  node_arg "$n"
  cql_kind
  case $action in
    stop-node)
      case ${1:-} in
        "") ;;
        --kill) kill=1 ;;
        *) die "usage: $0 stop-node N [--kill]" ;;
      esac
      ensure_dirs
      lock_stack
      node_stop "$n" "$kill"
      ;;
    start-node)
      (($# == 0)) || die "usage: $0 start-node N"
      t0=$(now)
      ensure_dirs
      lock_stack
      ensure_venv
      [[ $CQL_KIND == cassandra ]] && cassandra_fetch
      node_start "$n"
      node_wait_ready "$n"
      ((CQL_NODES > 1)) && cluster_wait_converged "$n"
      log "$(node_name "$n"): up and answering CQL on $(node_ip "$n"):$CQL_PORT ($(($(now) - t0))s)"
      ;;
    repair-node | nodetool)
      [[ $CQL_KIND == cassandra ]] || die "$action: Cassandra nodes only"
      node_alive "$n" || die "$(node_name "$n") is not running"
      if [[ $action == repair-node ]]; then
        t0=$(now)
        log "$(node_name "$n"): nodetool repair $*"
        nodetool_on "$n" repair "$@"
        log "$(node_name "$n"): repair finished in $(($(now) - t0))s"
      else
        (($#)) || die "usage: $0 nodetool N COMMAND [ARGS...]"
        nodetool_on "$n" "$@"
      fi
      ;;
  esac
}

# Every test world creates its own Postgres database (test_*) and CQL keyspace (t_*) and leaves
# them for a post-mortem; runs pile them up. Hundreds of keyspaces cost a 1 GiB Cassandra heap
# its per-table overhead (measured: 507 left keyspaces halved the node's rows per CPU-second),
# so the test command and the benchmarks start by dropping them. Never while tests run.
cmd_clean_tests() {
  local db n drops node
  cql_kind
  node=$(cql_first_live)
  drops=$(mktemp)
  cql_query_on "$node" "SELECT keyspace_name FROM system_schema.keyspaces" |
    awk '$1 ~ /^t_[0-9a-f]+$/ {print "DROP KEYSPACE IF EXISTS " $1 ";"}' >"$drops"
  n=$(wc -l <"$drops")
  # One cqlsh for all of them (a cqlsh start costs about a second).
  if ((n > 0)); then
    cqlsh_on "$node" --request-timeout=60 -f "$drops" >/dev/null
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
    stop-node | start-node | repair-node | nodetool) cmd_node "$cmd" "$@" ;;
    clean-tests) pg_find_bin; cmd_clean_tests ;;
    *) usage ;;
  esac
}

main "$@"
