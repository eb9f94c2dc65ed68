# shellcheck shell=bash
# Helpers shared by deploy/local/stack.sh. Sourced, never executed.

# Messages go to stderr so that `stack.sh env` keeps stdout clean for eval.
log()  { printf '[stack] %s\n' "$*" >&2; }
warn() { printf '[stack] WARNING: %s\n' "$*" >&2; }
die()  { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Seconds since the epoch, for the timings printed by `up`.
now() { date +%s; }

# render TEMPLATE OUT KEY=VALUE... : copy TEMPLATE to OUT replacing every @KEY@ with VALUE.
# Plain bash substitution (no envsubst/gettext dependency, no sed escaping pitfalls).
render() {
  local tmpl=$1 out=$2 text kv key val
  shift 2
  text=$(<"$tmpl")
  for kv in "$@"; do
    key=${kv%%=*}
    val=${kv#*=}
    text=${text//@"$key"@/"$val"}  # quoted: no bash 5.2 "&" expansion
  done
  if [[ $text =~ @[A-Z_]+@ ]]; then
    die "render $tmpl: unsubstituted placeholder ${BASH_REMATCH[0]}"
  fi
  printf '%s\n' "$text" >"$out.tmp"
  mv -f "$out.tmp" "$out"
}

# port_open PORT [HOST] : true when something accepts TCP connections on HOST:PORT (default
# 127.0.0.1; a cluster's nodes listen on 127.0.0.2, 127.0.0.3, ...).
port_open() {
  (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null
}

# pid_alive PIDFILE PATTERN : true when PIDFILE names a live process whose command line
# contains PATTERN (guards against a stale pid file whose pid was reused by something else).
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern"
}

# stop_pidfile NAME PIDFILE PATTERN [GRACE_SECONDS] : SIGTERM, wait, then SIGKILL.
stop_pidfile() {
  local name=$1 pidfile=$2 pattern=$3 grace=${4:-30} pid i
  if ! pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    log "$name: not running"
    return 0
  fi
  pid=$(<"$pidfile")
  log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 5; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.2
  done
  if [[ -d /proc/$pid ]]; then
    warn "$name: still alive after ${grace}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

# rotate_log FILE... : keep exactly one previous log (FILE.prev), so that the tail printed on a
# failed start shows this start's output, not an older run's.
rotate_log() {
  local f
  for f in "$@"; do
    if [[ -e $f ]]; then mv -f "$f" "$f.prev"; fi
  done
}

# show_log_tail NAME FILE... : print the end of each log that exists (used on failures).
show_log_tail() {
  local name=$1 f
  shift
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf '[stack] ----- last 40 lines of %s (%s) -----\n' "$f" "$name" >&2
    tail -n 40 "$f" >&2
    printf '[stack] ----- end of %s -----\n' "$f" >&2
  done
}

# wait_until NAME TIMEOUT_S PIDFILE PATTERN CMD... : run CMD every second until it succeeds.
# Fails early (instead of waiting out the timeout) when the server process has died.
# PIDFILE may be "" when there is no process to watch. Caller prints logs on failure.
wait_until() {
  local name=$1 timeout=$2 pidfile=$3 pattern=$4 start
  shift 4
  start=$(now)
  while true; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [[ -n $pidfile ]] && ! pid_alive "$pidfile" "$pattern"; then
      warn "$name: server process exited while waiting for it"
      return 1
    fi
    if (($(now) - start >= timeout)); then
      warn "$name: not ready after ${timeout}s"
      return 1
    fi
    sleep 1
  done
}

# apt_install PKG... : install Debian packages non-interactively (update first, as apt needs it).
apt_install() {
  command -v apt-get >/dev/null || die "need packages [$*] but apt-get is not available"
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null >&2
  apt-get install -y -qq --no-install-recommends "$@" </dev/null >&2
}

# random_hex NBYTES : lowercase hex from /dev/urandom (no openssl dependency).
random_hex() {
  od -An -vtx1 -N"$1" /dev/urandom | tr -d ' \n'
}
