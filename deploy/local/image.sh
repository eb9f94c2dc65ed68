#!/usr/bin/env bash
# The shipped image, built and run on this machine, without a registry (issue 19, part 7):
#   1. Debian's docker.io daemon, private to this script: its own socket, data root, exec root,
#      pid file and log under ~/.cache/memberlake/docker; no bridge, no iptables (host network
#      only); started under `nice -n 19`, so the build and every container are niced too.
#   2. Local stand-ins for deploy/Dockerfile's base images, made with debootstrap from the Debian
#      mirror this machine's apt uses: a minbase rootfs for RUNTIME_IMAGE (debian:*-slim), and
#      for RUST_IMAGE (rust:*-bookworm) a rootfs with the C toolchain plus this machine's Rust
#      toolchain (the one rust-toolchain.toml pins, under rustup, as the official image lays it
#      out) and this host's CA bundle (HTTPS may leave through an intercepting proxy). Both are
#      tidied as Debian's images are (apt caches off; -slim: no docs, manuals, locales). The
#      rootfs tarballs are cached, and imported only when the docker data root lacks them.
#   3. docker build --network host of deploy/Dockerfile, with --build-arg RUST_IMAGE/RUNTIME_IMAGE
#      naming the stand-ins. The context is the repository's files as git sees them (tracked and
#      untracked, minus .gitignore'd: never the stack dirs), or MEMBERLAKE_IMAGE_REF's commit
#      (e.g. HEAD, while uncommitted work does not build): a release build from scratch.
#   4. A local stack beside the others (own dir .stack-image, port offset 400, Garage S3 as the
#      lake), `memberlake migrate`, the four services (two workers) in containers of the image
#      (--network host, read-only root filesystem, no capabilities, uid 10001, loopback addresses),
#      a list uploaded to the lake, and checks: member / non-member answers of /v1/match and
#      /v1/suppress, every service's /metrics, no socket of a container to or on a non-loopback
#      address.
#   5. Teardown (also on failure): containers (their logs kept), the stack (purged), the build
#      stage's layers, dockerd. The stand-in images and memberlake:test stay in the data root.
#
#   deploy/local/image.sh               run it all (and record a green run of these inputs)
#   deploy/local/image.sh --if-changed  the same, unless the image inputs are those of the last
#                                       green run on this machine (CI calls this)
#   deploy/local/image.sh inputs        print the image inputs' hash and the files it covers
#
# Image inputs (the --if-changed key): deploy/Dockerfile, this script, lib.sh, genlist.py,
# Cargo.lock, rust-toolchain.toml, every Cargo.toml, and the Rust toolchain installed here.
# Source files (*.rs, SQL) are not among them: deploy/local/test.sh runs the same code on every
# CI run; what only this script tests is the packaging (base images, system packages, toolchain,
# linking, the Dockerfile, users and addresses), which those files determine.
#
# Settings: MEMBERLAKE_IMAGE_REF (unset: the working tree), MEMBERLAKE_IMAGE_PORT_OFFSET (400), MEMBERLAKE_IMAGE_STACK_DIR (<repo>/.stack-image),
# MEMBERLAKE_IMAGE_TAG (memberlake:test), MEMBERLAKE_IMAGE_ROWS (20000, the list's size),
# MEMBERLAKE_IMAGE_KEEP=1 (keep the stack's data and the build stage's layers: a re-run with an
# unchanged context then reuses the build), MEMBERLAKE_DEBIAN_MIRROR (default: from
# /etc/apt/sources.list*), MEMBERLAKE_DOCKER_STORAGE_DRIVER (overlay2; vfs is tried when overlay2
# does not start), MEMBERLAKE_DOCKER_DIR (~/.cache/memberlake/docker).
# Network: the daemon makes no bridge and no iptables rules; every build step and container uses
# the host's network namespace. The services talk to 127.0.0.1 only (checked); the build's
# fetches (crates.io for cargo, the Debian mirror for the runtime stage's apt-get) and
# debootstrap's are the only traffic beyond loopback, all from the host's namespace.
# Runs unattended as root; installs docker.io and debootstrap with apt-get when missing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/local/lib.sh
source "$SCRIPT_DIR/lib.sh"
log()  { printf '[image] %s\n' "$*" >&2; }
warn() { printf '[image] WARNING: %s\n' "$*" >&2; }
die()  { printf '[image] ERROR: %s\n' "$*" >&2; exit 1; }

REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE_DIR=$(realpath -m "${MEMBERLAKE_CACHE_DIR:-${HOME:?HOME must be set}/.cache/memberlake}")
IMAGE_CACHE=$CACHE_DIR/image # rootfs tarballs, debootstrap's .deb cache, run logs, last green run
DOCKER_DIR=$(realpath -m "${MEMBERLAKE_DOCKER_DIR:-$CACHE_DIR/docker}")
DOCKER_SOCK=$DOCKER_DIR/docker.sock
DOCKERD_PIDFILE=$DOCKER_DIR/dockerd.pid
DOCKERD_LOG=$DOCKER_DIR/dockerd.log
# The daemon's client, from the same docker.io package. This machine may have another docker
# client first on PATH (a static 28.x in /usr/local/bin): not ours to use or change.
DOCKER_CLI=/usr/bin/docker
STACK_DIR=$(realpath -m "${MEMBERLAKE_IMAGE_STACK_DIR:-$REPO_ROOT/.stack-image}")
PORT_OFFSET=${MEMBERLAKE_IMAGE_PORT_OFFSET:-400}
IMAGE_TAG=${MEMBERLAKE_IMAGE_TAG:-memberlake:test}
ROWS=${MEMBERLAKE_IMAGE_ROWS:-20000}
KEEP=${MEMBERLAKE_IMAGE_KEEP:-0}
LAST_GREEN=$IMAGE_CACHE/last-green
CONTAINER_PREFIX=memberlake-image-
[[ $PORT_OFFSET =~ ^[0-9]+$ ]] || die "MEMBERLAKE_IMAGE_PORT_OFFSET must be a number"
[[ $ROWS =~ ^[1-9][0-9]*$ ]] || die "MEMBERLAKE_IMAGE_ROWS must be a positive number"

# The services' ports: their defaults shifted by the offset, all on 127.0.0.1 (the image's own
# defaults are 0.0.0.0, for a container network of its own; on the host's network they must not be).
MATCHER_PORT=$((8080 + PORT_OFFSET))
ADMIN_PORT=$((8081 + PORT_OFFSET))
MATCHER_OPS_PORT=$((9100 + PORT_OFFSET))
META_OPS_PORT=$((9101 + PORT_OFFSET))
SPLITTER_OPS_PORT=$((9102 + PORT_OFFSET))
WORKER1_OPS_PORT=$((9103 + PORT_OFFSET))
WORKER2_OPS_PORT=$((9104 + PORT_OFFSET))

# ---- the image inputs (--if-changed) -----------------------------------------------------------
# The build context: the working tree as git sees it (tracked and untracked files, .gitignore'd
# ones left out), or with MEMBERLAKE_IMAGE_REF=<commit> that commit's tree (git archive), e.g.
# HEAD while uncommitted work in the tree does not build yet.
IMAGE_REF=${MEMBERLAKE_IMAGE_REF:-}

# NUL-separated paths (relative to the repo) of the working tree's files git sees, deleted ones
# left out.
git_files() {
  local f
  git -C "$REPO_ROOT" ls-files -z -co --exclude-standard -- "$@" | sort -z |
    while IFS= read -r -d '' f; do
      if [[ -f $REPO_ROOT/$f || -L $REPO_ROOT/$f ]]; then printf '%s\0' "$f"; fi
    done
  return 0
}

# The files of the build context that decide the image apart from the code: the Dockerfile, the
# toolchain pin, the lock file and the manifests (dependencies, features, binaries, profiles).
is_build_input() {
  case $1 in
    deploy/Dockerfile | Cargo.lock | rust-toolchain.toml | Cargo.toml | */Cargo.toml | .cargo/*) return 0 ;;
  esac
  return 1
}

# "<blob id> <path>" of each build input, from the working tree or from IMAGE_REF.
build_inputs() {
  local f
  if [[ -n $IMAGE_REF ]]; then
    git -C "$REPO_ROOT" ls-tree -r -z --full-tree "$IMAGE_REF" |
      while IFS= read -r -d '' f; do
        if is_build_input "${f#*$'\t'}"; then printf '%s %s\n' "$(cut -d' ' -f3 <<<"${f%%$'\t'*}")" "${f#*$'\t'}"; fi
      done
  else
    git_files . | while IFS= read -r -d '' f; do
      if is_build_input "$f"; then printf '%s %s\n' "$(git -C "$REPO_ROOT" hash-object -- "$f")" "$f"; fi
    done
  fi
  return 0
}

# What runs the test, always from the working tree.
HARNESS=(deploy/local/image.sh deploy/local/lib.sh deploy/local/genlist.py)

toolchain_channel() {
  sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$REPO_ROOT/rust-toolchain.toml" | head -n1
}

# The key of a green run: the build inputs, the harness, and the Rust toolchain rustup runs here.
inputs_lines() {
  local f
  build_inputs
  for f in "${HARNESS[@]}"; do printf '%s %s\n' "$(git -C "$REPO_ROOT" hash-object -- "$f")" "$f"; done
  (cd "$REPO_ROOT" && rustc -vV 2>/dev/null) | grep -E '^(release|commit-hash|host):' | tr '\n' ' ' | sed 's/ $/\n/'
}

inputs_hash() {
  inputs_lines | sha256sum | cut -c1-64
}

cmd_inputs() {
  echo "image inputs hash: $(inputs_hash) (build context: ${IMAGE_REF:-the working tree})"
  inputs_lines | sed 's/^/  /'
  if [[ -s $LAST_GREEN ]]; then echo "last green run: $(<"$LAST_GREEN")"; else echo "last green run: none"; fi
}

# ---- timings ------------------------------------------------------------------------------------
TIMINGS=()
STEP_NO=0
STEP_LABEL=
STEP_T0=0
T_START=$SECONDS
# step LABEL CMD... : run and time one step; the summary at the end lists every step.
step() {
  local label=$1
  shift
  STEP_NO=$((STEP_NO + 1))
  STEP_LABEL=$label STEP_T0=$SECONDS
  printf '\n== %d. %s\n' "$STEP_NO" "$label"
  # Not `"$@" || ...`: errexit must stay on inside the step. A failure exits the script, and the
  # teardown records the step it happened in.
  "$@"
  TIMINGS+=("$(printf '%4ss  %s' $((SECONDS - STEP_T0)) "$label")")
  printf '== %d. %s: %ss\n' "$STEP_NO" "$label" $((SECONDS - STEP_T0))
  STEP_LABEL=
}

print_timings() {
  ((${#TIMINGS[@]})) || return 0
  printf '\n== timings\n'
  printf '  %s\n' "${TIMINGS[@]}"
  printf '  %4ss  total\n' $((SECONDS - T_START))
}

# ---- 1. packages and the private docker daemon -------------------------------------------------
install_packages() {
  local missing=() own_policy=0 rc=0
  [[ -x /usr/sbin/dockerd && -x $DOCKER_CLI ]] || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v curl >/dev/null || missing+=(curl)
  if ((${#missing[@]} == 0)); then
    log "docker.io ($("$DOCKER_CLI" --version)) and debootstrap are installed"
    return 0
  fi
  # The package's own daemons (docker, containerd) must not start: this script runs its own.
  # policy-rc.d exit 101 = "do not start" (many machines already have one).
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  # /usr/local/bin/docker (another client, not from a package) does not conflict with the
  # package's /usr/bin/docker; this script always calls the latter by its path.
  apt_install "${missing[@]}" || rc=$?
  ((own_policy == 0)) || rm -f /usr/sbin/policy-rc.d
  ((rc == 0)) || die "apt-get install ${missing[*]} failed"
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now docker.service docker.socket containerd.service >/dev/null 2>&1 || true
  fi
}

dk() {
  if [[ $1 == run ]]; then
    # The daemon leaves the host's IP forwarding alone (--ip-forward=false); on the host's
    # network that is as it should be, so docker run's warning about it is noise.
    "$DOCKER_CLI" "$@" 2> >(grep -v '^WARNING: IPv4 forwarding is disabled' >&2)
  else
    "$DOCKER_CLI" "$@"
  fi
}

dockerd_answers() { dk version --format '{{.Server.Version}}' >/dev/null 2>&1; }

dockerd_start() {
  local driver=$1
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/run" "$DOCKER_DIR/client"
  chmod 0700 "$DOCKER_DIR"
  # Its own (empty) configuration: an /etc/docker/daemon.json, if any, is not this script's.
  echo '{}' >"$DOCKER_DIR/daemon.json"
  rotate_log "$DOCKERD_LOG"
  log "dockerd: starting ($driver, data root $DOCKER_DIR/data, socket $DOCKER_SOCK, log $DOCKERD_LOG)"
  # fd 8 (this script's lock) closed: the daemon must not hold it. setsid: Ctrl-C on this script
  # reaches the trap, which stops the daemon in order.
  nice -n 19 setsid /usr/sbin/dockerd \
    --config-file "$DOCKER_DIR/daemon.json" \
    --host "unix://$DOCKER_SOCK" \
    --data-root "$DOCKER_DIR/data" \
    --exec-root "$DOCKER_DIR/run" \
    --pidfile "$DOCKER_DIR/run/dockerd.pid" \
    --storage-driver "$driver" \
    --bridge=none --iptables=false --ip-forward=false --ip-masq=false --userland-proxy=false \
    8>&- 9>&- </dev/null >>"$DOCKERD_LOG" 2>&1 &
  echo $! >"$DOCKERD_PIDFILE"
  wait_until dockerd 90 "$DOCKERD_PIDFILE" dockerd dockerd_answers
}

dockerd_up() {
  local want=${MEMBERLAKE_DOCKER_STORAGE_DRIVER:-overlay2} driver
  export DOCKER_HOST=unix://$DOCKER_SOCK DOCKER_CONFIG=$DOCKER_DIR/client DOCKER_BUILDKIT=0
  if pid_alive "$DOCKERD_PIDFILE" dockerd && dockerd_answers; then
    log "dockerd: reusing the daemon a previous run left (pid $(<"$DOCKERD_PIDFILE"))"
  elif ! dockerd_start "$want"; then
    show_log_tail dockerd "$DOCKERD_LOG"
    dockerd_down
    [[ $want == overlay2 && -z ${MEMBERLAKE_DOCKER_STORAGE_DRIVER:-} ]] || die "dockerd did not start (log: $DOCKERD_LOG)"
    warn "dockerd: overlay2 failed; trying vfs (every layer a full copy: slower, more disk)"
    dockerd_start vfs || { show_log_tail dockerd "$DOCKERD_LOG"; die "dockerd did not start (log: $DOCKERD_LOG)"; }
  fi
  driver=$(dk info --format '{{.Driver}}')
  log "dockerd: $(dk version --format 'server {{.Server.Version}}, client {{.Client.Version}}'), storage driver $driver, pid $(<"$DOCKERD_PIDFILE"), nice $(ps -o ni= -p "$(<"$DOCKERD_PIDFILE")" | tr -d ' ')"
  dk info --format '{{json .Plugins.Network}}' | grep -q '"host"' || die "dockerd offers no host network"
}

dockerd_down() {
  local m
  if [[ -s $DOCKERD_PIDFILE ]]; then
    stop_pidfile dockerd "$DOCKERD_PIDFILE" dockerd 60
  fi
  # What a stopped dockerd leaves mounted (the host network namespace's bind mount at
  # <exec root>/netns/default; after a crash also overlay mounts), innermost first.
  if ! pid_alive "$DOCKERD_PIDFILE" dockerd; then
    awk -v root="$DOCKER_DIR/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" || warn "could not unmount $m"; done
  fi
  return 0
}

# ---- 2. the stand-in base images -----------------------------------------------------------------
# Bumped when the recipe below changes, so cached tarballs and imported images are remade.
STANDIN_RECIPE=2
SUITE=
RUST_TAG=
RUNTIME_TAG=
RUST_STANDIN=
RUNTIME_STANDIN=
DEBIAN_MIRROR=
SECURITY_MIRROR=
# The build stage's system packages: the C toolchain cargo's build scripts use (ring, aws-lc-sys
# and zstd-sys compile C; nothing links OpenSSL: deny.toml bans it) and the CA certificates
# cargo needs for crates.io. A subset of the official rust image's (buildpack-deps): no cmake,
# so a dependency that starts needing it fails here as it would there.
BUILD_PACKAGES=ca-certificates,gcc,g++,libc6-dev,make,pkg-config

# The Dockerfile's defaults name the suite and the Rust release the stand-ins stand in for.
read_dockerfile_defaults() {
  local df=$REPO_ROOT/deploy/Dockerfile channel
  RUST_TAG=$(sed -n 's/^ARG RUST_IMAGE=//p' "$df" | head -n1)
  RUNTIME_TAG=$(sed -n 's/^ARG RUNTIME_IMAGE=//p' "$df" | head -n1)
  [[ $RUST_TAG =~ ^rust:([0-9.]+)-([a-z]+)$ ]] || die "deploy/Dockerfile: ARG RUST_IMAGE=rust:<version>-<suite> expected, found '$RUST_TAG'"
  SUITE=${BASH_REMATCH[2]}
  channel=$(toolchain_channel)
  [[ ${BASH_REMATCH[1]} == "$channel" ]] ||
    die "deploy/Dockerfile builds with $RUST_TAG but rust-toolchain.toml pins $channel"
  [[ $RUNTIME_TAG =~ ^debian:[0-9.]+-slim$ ]] || die "deploy/Dockerfile: ARG RUNTIME_IMAGE=debian:<release>-slim expected, found '$RUNTIME_TAG'"
  RUST_STANDIN=memberlake-standin/rust:$channel-$SUITE
  RUNTIME_STANDIN=memberlake-standin/debian:$SUITE-slim
}

# The mirror apt uses here for SUITE (deb822 .sources or one-line .list), and its security mirror.
read_mirrors() {
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && files+=("$f")
  done
  mirror_for() { # SUITE
    local s=$1
    ((${#files[@]})) || return 0
    awk -v suite="$s" '
      function stanza() {
        if (types ~ /[[:space:]]deb([[:space:]]|$)/ && index(suites, " " suite " ") && !found) { print uris; found = 1 }
        types = ""; uris = ""; suites = ""
      }
      FNR == 1 { stanza() }
      /^[[:space:]]*deb[[:space:]]/ {            # one-line format: deb [opts] URI SUITE COMP...
        n = split($0, w, /[[:space:]]+/); i = 2
        if (w[i] ~ /^\[/) { while (i <= n && w[i] !~ /\]$/) i++; i++ }
        if (w[i + 1] == suite && !found) { print w[i]; found = 1 }
        next
      }
      /^Types:/ { types = $0 }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { suites = " " $0 " " }
      /^[[:space:]]*$/ { stanza() }
      END { stanza() }
    ' "${files[@]}" | head -n1
  }
  DEBIAN_MIRROR=${MEMBERLAKE_DEBIAN_MIRROR:-$(mirror_for "$SUITE")}
  DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
  SECURITY_MIRROR=$(mirror_for "$SUITE-security")
  SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
  DEBIAN_MIRROR=${DEBIAN_MIRROR%/} SECURITY_MIRROR=${SECURITY_MIRROR%/}
  log "Debian mirror: $DEBIAN_MIRROR ($SUITE), security: $SECURITY_MIRROR"
}

# debootstrap_rootfs DIR INCLUDE SLIM : a minbase rootfs of SUITE in DIR, tidied as Debian's
# images are (SLIM=1: as the -slim variant).
debootstrap_rootfs() {
  local dir=$1 include=$2 slim=$3 logf=$IMAGE_CACHE/debootstrap.log args=()
  rm -rf "$dir"
  mkdir -p "$IMAGE_CACHE/debs"
  [[ -n $include ]] && args+=("--include=$include")
  log "debootstrap: $SUITE minbase${include:+ + $include} from $DEBIAN_MIRROR (log $logf)"
  rotate_log "$logf"
  if ! nice -n 19 debootstrap --variant=minbase --components=main "${args[@]}" \
    --cache-dir="$IMAGE_CACHE/debs" "$SUITE" "$dir" "$DEBIAN_MIRROR" </dev/null >"$logf" 2>&1; then
    show_log_tail debootstrap "$logf"
    die "debootstrap failed (log: $logf)"
  fi
  # apt sources as the Debian images have them (deb822, with updates and security).
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What Debian's images (debuerreotype) add: apt keeps no caches and no translations, no
  # service starts from a package's postinst.
  cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$dir/etc/apt/apt.conf.d/docker-autoremove-suggests"
  printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' >"$dir/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 0755 "$dir/usr/sbin/policy-rc.d"
  if ((slim)); then
    # The -slim variant: no documentation, manuals or translations, now or from later installs.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$dir"/usr/share/{man,groff,info,lintian,linda}/*
    find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  fi
  # Nothing of this host in the image: docker provides resolv.conf, hosts and hostname.
  : >"$dir/etc/resolv.conf"
  : >"$dir/etc/machine-id"
  echo localhost >"$dir/etc/hostname"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log "$dir"/tmp/* "$dir"/root/.cache
}

# This machine's Rust toolchain, laid out as the official rust image has it: rustup in
# /usr/local/cargo/bin (with the proxies cargo, rustc, ...), toolchains in /usr/local/rustup.
# rustup, not the bare toolchain: the build then honours rust-toolchain.toml as it would there.
add_rust_toolchain() {
  local dir=$1 channel host sysroot rustup_bin tc p
  channel=$(toolchain_channel)
  host=$(cd "$REPO_ROOT" && rustc -vV | sed -n 's/^host: //p')
  sysroot=$(cd "$REPO_ROOT" && rustc --print sysroot)
  rustup_bin=$(readlink -f "$(command -v rustup)")
  [[ -d $sysroot && -x $rustup_bin ]] || die "no rustup toolchain for $channel here (sysroot '$sysroot')"
  tc=$dir/usr/local/rustup/toolchains/$channel-$host
  log "toolchain: $sysroot (rustc $channel, without its HTML docs) and $($rustup_bin --version 2>/dev/null | head -n1)"
  mkdir -p "$tc" "$dir/usr/local/cargo/bin"
  # "$sysroot/": through the symlink a pinned toolchain often is; share/doc is 800 MB of HTML.
  tar -C "$sysroot/" --exclude=./share/doc -cf - . | tar -C "$tc" -xf -
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$channel-$host" \
    >"$dir/usr/local/rustup/settings.toml"
  install -m 0755 "$rustup_bin" "$dir/usr/local/cargo/bin/rustup"
  for p in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt rust-gdb rust-gdbgui rust-lldb; do
    ln -sf rustup "$dir/usr/local/cargo/bin/$p"
  done
  chmod -R a+w "$dir/usr/local/rustup" "$dir/usr/local/cargo"
}

# The build fetches crates over HTTPS from the host's network namespace, so it must trust what
# the host trusts: where HTTPS leaves through an intercepting proxy, its CA is in the host's
# bundle and not in Debian's. The host's bundle replaces the rootfs's (where nothing intercepts,
# the two hold the same Mozilla roots). Only the build stand-in gets it; the runtime image has
# Debian's ca-certificates, installed by the Dockerfile.
HOST_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
add_host_trust() {
  local dir=$1 theirs ours
  [[ -s $HOST_CA_BUNDLE ]] || return 0
  theirs=$(grep -c 'BEGIN CERTIFICATE' "$dir/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || echo 0)
  ours=$(grep -c 'BEGIN CERTIFICATE' "$HOST_CA_BUNDLE")
  install -m 0644 "$HOST_CA_BUNDLE" "$dir/etc/ssl/certs/ca-certificates.crt"
  log "CA bundle: this host's ($ours certificates; Debian's package has $theirs)"
}

# standin_key KIND : what a stand-in is made of; a change makes it anew.
standin_key() {
  local kind=$1
  {
    echo "recipe $STANDIN_RECIPE $kind $SUITE $DEBIAN_MIRROR $SECURITY_MIRROR"
    if [[ $kind == rust ]]; then
      echo "$BUILD_PACKAGES"
      [[ -s $HOST_CA_BUNDLE ]] && sha256sum <"$HOST_CA_BUNDLE"
      (cd "$REPO_ROOT" && rustc -vV && rustup --version 2>/dev/null | head -n1)
    fi
  } | sha256sum | cut -c1-16
}

# standin KIND TAG : TAG in the docker data root, imported from the cached rootfs tarball (made
# first when missing) unless it is already there with the same key.
standin() {
  local kind=$1 tag=$2 key tarball dir changes=() have t0
  key=$(standin_key "$kind")
  have=$(dk image inspect --format '{{index .Config.Labels "memberlake.standin"}}' "$tag" 2>/dev/null || true)
  if [[ $have == "$key" ]]; then
    log "$tag: in the data root (key $key)"
    return 0
  fi
  tarball=$IMAGE_CACHE/rootfs/$kind-$SUITE-$key.tar
  if [[ ! -s $tarball ]]; then
    t0=$SECONDS
    dir=$IMAGE_CACHE/rootfs/$kind.tmp
    mkdir -p "$IMAGE_CACHE/rootfs"
    if [[ $kind == rust ]]; then
      debootstrap_rootfs "$dir" "$BUILD_PACKAGES" 0
      add_rust_toolchain "$dir"
      add_host_trust "$dir"
    else
      debootstrap_rootfs "$dir" "" 1
    fi
    nice -n 19 tar --numeric-owner --xattrs -C "$dir" -cf "$tarball.tmp" .
    mv -f "$tarball.tmp" "$tarball"
    rm -rf "$dir"
    # Older tarballs of this kind (another recipe, toolchain or mirror) are of no more use.
    find "$IMAGE_CACHE/rootfs" -maxdepth 1 -name "$kind-*.tar" ! -name "$(basename "$tarball")" -delete
    log "$kind rootfs: $(du -h "$tarball" | cut -f1) in $((SECONDS - t0))s → $tarball"
  else
    log "$kind rootfs: cached, $tarball"
  fi
  changes=(--change "LABEL memberlake.standin=$key" --change 'CMD ["bash"]')
  if [[ $kind == rust ]]; then
    changes+=(--change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo'
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
  else
    changes+=(--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
  fi
  log "$tag: importing"
  nice -n 19 "$DOCKER_CLI" import "${changes[@]}" --message "memberlake stand-in ($kind, key $key)" \
    "$tarball" "$tag" >/dev/null
  log "$tag: $(dk image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) imported"
}

make_standins() {
  read_mirrors
  standin runtime "$RUNTIME_STANDIN"
  standin rust "$RUST_STANDIN"
  # The toolchain answers as rust-toolchain.toml wants it, offline (no network at all).
  dk run --rm --network none -v "$REPO_ROOT/rust-toolchain.toml:/src/rust-toolchain.toml:ro" -w /src \
    "$RUST_STANDIN" sh -c 'cargo --version && rustc --version && cargo clippy --version && rustfmt --version' |
    sed 's/^/  stand-in: /'
}

# ---- 3. the image ------------------------------------------------------------------------------------
build_image() {
  local context logf=$IMAGE_CACHE/logs/build.log rc=0
  mkdir -p "$IMAGE_CACHE/logs"
  context=$(mktemp "$IMAGE_CACHE/context.XXXXXX.tar")
  if [[ -n $IMAGE_REF ]]; then
    git -C "$REPO_ROOT" archive --format=tar -o "$context" "$IMAGE_REF"
    log "context: $IMAGE_REF ($(git -C "$REPO_ROOT" rev-parse --short "$IMAGE_REF")), $(tar -tf "$context" | wc -l) entries, $(du -h "$context" | cut -f1)"
  else
    (cd "$REPO_ROOT" && git_files . | tar --null --no-recursion -cf "$context" -T -)
    log "context: the working tree as git sees it, $(tar -tf "$context" | wc -l) files, $(du -h "$context" | cut -f1) (no .stack*, no target)"
  fi
  log "docker build -f deploy/Dockerfile --network host --build-arg RUST_IMAGE=$RUST_STANDIN --build-arg RUNTIME_IMAGE=$RUNTIME_STANDIN -t $IMAGE_TAG (log $logf)"
  rotate_log "$logf"
  set +e
  nice -n 19 "$DOCKER_CLI" build --network host --force-rm -f deploy/Dockerfile \
    --build-arg "RUST_IMAGE=$RUST_STANDIN" --build-arg "RUNTIME_IMAGE=$RUNTIME_STANDIN" \
    -t "$IMAGE_TAG" - <"$context" 2>&1 | tee "$logf" | sed -u 's/\x1b\[[0-9;]*m//g' |
    grep --line-buffered -E '^Step [0-9]+/|Compiling (memberlake|meta-service|splitter|compute-worker|matcher-api)|Finished|^error|Successfully (built|tagged)|^The command'
  rc=${PIPESTATUS[0]}
  set -e
  rm -f "$context"
  if ((rc != 0)); then
    tail -n 40 "$logf" >&2
    die "docker build failed (exit $rc; log $logf)"
  fi
  log "$IMAGE_TAG: $(dk image inspect --format '{{.Size}}' "$IMAGE_TAG" | numfmt --to=iec), user $(dk image inspect --format '{{.Config.User}}' "$IMAGE_TAG")"
}

# Every binary starts in the image (no network at all), and as uid 10001.
image_smoke() {
  local b uid
  for b in meta-service splitter compute-worker matcher-api memberlake; do
    dk run --rm --network none --read-only "$IMAGE_TAG" "$b" --help >/dev/null ||
      die "$b --help failed in $IMAGE_TAG"
  done
  uid=$(dk run --rm --network none --read-only --entrypoint /usr/bin/id "$IMAGE_TAG" -u)
  [[ $uid == 10001 ]] || die "the image runs as uid $uid, not 10001"
  log "the five binaries answer --help; the image runs as uid $uid, read-only root file system"
}

# ---- 4. the local stack and the services in containers -------------------------------------------
image_stack() {
  MEMBERLAKE_STACK_DIR=$STACK_DIR MEMBERLAKE_STACK_PORT_OFFSET=$PORT_OFFSET "$SCRIPT_DIR/stack.sh" "$@" 8>&-
}

stack_up() {
  image_stack up
  eval "$(image_stack env)"
  [[ -n ${AWS_ENDPOINT_URL:-} ]] || die "the stack has no S3 server (Garage)"
  # The lake and the work location: prefixes of the stack's bucket (the work location must not
  # lie inside the lake).
  export MEMBERLAKE_LAKE_URL=s3://memberlake-lake/lake MEMBERLAKE_WORK_URL=s3://memberlake-lake/work
  export MEMBERLAKE_POLL_INTERVAL=1s MEMBERLAKE_RANGE_SIZE=256KiB MEMBERLAKE_LEASE_TTL=10s
  export MEMBERLAKE_RETIRE_INTERVAL=30s MEMBERLAKE_RETIRE_GRACE=20s MEMBERLAKE_LOG=info
}

# The settings the containers get: names only (docker reads the values from this environment,
# so no secret is on a command line).
ENV_ARGS=()
container_env() {
  local v
  ENV_ARGS=()
  for v in $(compgen -e); do
    case $v in
      MEMBERLAKE_STACK_* | MEMBERLAKE_CQLSH* | MEMBERLAKE_TEST_* | MEMBERLAKE_IMAGE_* | \
        MEMBERLAKE_DOCKER_* | MEMBERLAKE_DEBIAN_* | MEMBERLAKE_CACHE_DIR) ;; # this script's or the stack's
      MEMBERLAKE_*) ENV_ARGS+=(-e "$v") ;;
      # The stack's S3 settings only (not, e.g., an AWS_CA_BUNDLE of this machine).
      AWS_ENDPOINT_URL | AWS_ACCESS_KEY_ID | AWS_SECRET_ACCESS_KEY | AWS_REGION | AWS_ALLOW_HTTP) ENV_ARGS+=(-e "$v") ;;
    esac
  done
}

# run_container NAME [docker run options] -- COMMAND... : detached, on the host's network, with
# the restrictions the Kubernetes manifests give the pods.
run_container() {
  local name=$CONTAINER_PREFIX$1 opts=()
  shift
  while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  dk run -d --name "$name" --network host --read-only --tmpfs /tmp:size=64m --cap-drop ALL \
    --security-opt no-new-privileges "${ENV_ARGS[@]}" "${opts[@]}" "$IMAGE_TAG" "$@" >/dev/null
  log "  $name: $*"
}

migrate() {
  container_env
  dk run --rm --network host --read-only --cap-drop ALL --security-opt no-new-privileges \
    "${ENV_ARGS[@]}" -e MEMBERLAKE_LOG=warn "$IMAGE_TAG" memberlake migrate
}

wait_ready() { # NAME PORT
  local i
  for ((i = 0; i < 120; i++)); do
    curl -fsS "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && { log "  $1: ready (127.0.0.1:$2/readyz)"; return 0; }
    if [[ $(dk inspect --format '{{.State.Running}}' "$CONTAINER_PREFIX$1" 2>/dev/null) != true ]]; then
      dk logs --tail 30 "$CONTAINER_PREFIX$1" >&2 || true
      die "$1 exited"
    fi
    sleep 0.5
  done
  dk logs --tail 30 "$CONTAINER_PREFIX$1" >&2 || true
  die "$1 not ready on 127.0.0.1:$2 after 60s"
}

start_services() {
  container_env
  run_container meta-service -e "MEMBERLAKE_ADMIN_ADDR=127.0.0.1:$ADMIN_PORT" \
    -e "MEMBERLAKE_METRICS_ADDR=127.0.0.1:$META_OPS_PORT" -- meta-service
  run_container splitter -e "MEMBERLAKE_METRICS_ADDR=127.0.0.1:$SPLITTER_OPS_PORT" -- splitter
  run_container worker-1 -e "MEMBERLAKE_METRICS_ADDR=127.0.0.1:$WORKER1_OPS_PORT" \
    -e MEMBERLAKE_INSTANCE_ID=worker-1 -- compute-worker
  run_container worker-2 -e "MEMBERLAKE_METRICS_ADDR=127.0.0.1:$WORKER2_OPS_PORT" \
    -e MEMBERLAKE_INSTANCE_ID=worker-2 -- compute-worker
  run_container matcher-api -e "MEMBERLAKE_MATCHER_ADDR=127.0.0.1:$MATCHER_PORT" \
    -e "MEMBERLAKE_METRICS_ADDR=127.0.0.1:$MATCHER_OPS_PORT" -- matcher-api
  wait_ready meta-service "$META_OPS_PORT"
  wait_ready splitter "$SPLITTER_OPS_PORT"
  wait_ready worker-1 "$WORKER1_OPS_PORT"
  wait_ready worker-2 "$WORKER2_OPS_PORT"
  wait_ready matcher-api "$MATCHER_OPS_PORT"
}

WORK=
MEMBER=
NONMEMBER=
upload_list() {
  local seed key python
  WORK=$(mktemp -d)
  seed=$(date +%s)
  python3 "$SCRIPT_DIR/genlist.py" --count "$ROWS" --seed "$seed" --out "$WORK/acme.csv" \
    --hashes "$WORK/acme.hashes" --upper
  MEMBER=$(tail -n 1 "$WORK/acme.hashes")
  NONMEMBER=$(printf %s 'nobody@nowhere.example' | md5sum | cut -d' ' -f1)
  key=lake/advertisers/acme/members-$seed.csv
  python=$(dirname "$MEMBERLAKE_CQLSH")/python
  "$python" - "$WORK/acme.csv" "$key" <<'PY'
import os, sys, boto3
path, key = sys.argv[1:]
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).upload_file(path, "memberlake-lake", key)
PY
  UPLOADED_AT=$SECONDS
  log "uploaded s3://memberlake-lake/$key: $ROWS emails, $(wc -c <"$WORK/acme.csv") bytes"
}

match() { # ADVERTISER HASH → the answer's body
  curl -fsS "http://127.0.0.1:$MATCHER_PORT/v1/match?advertiser_id=$1&email_hash=$2"
}

wait_ingested() {
  local i answer
  for ((i = 0; i < 600; i++)); do
    answer=$(match acme "$MEMBER" 2>/dev/null || true)
    if [[ $answer == *'"member":true'* ]]; then
      log "acme's list answers $((SECONDS - UPLOADED_AT))s after the upload"
      return 0
    fi
    sleep 0.5
  done
  dk logs --tail 20 "${CONTAINER_PREFIX}worker-1" >&2 || true
  die "the list was not ingested within 300s (last answer: ${answer:-none})"
}

check_answers() {
  local a
  a=$(match acme "$MEMBER")
  log "  member:      $a"
  [[ $a == *'"member":true'* ]] || die "a member of acme's list is not a member"
  a=$(match acme "$NONMEMBER")
  log "  non-member:  $a"
  [[ $a == *'"member":false'* ]] || die "a non-member answered $a"
  a=$(match globex "$MEMBER")
  log "  no list:     $a"
  [[ $a == *'"member":false'* ]] || die "an advertiser without a list answered $a"
  a=$(curl -fsS -X POST "http://127.0.0.1:$MATCHER_PORT/v1/suppress" -H 'content-type: application/json' \
    -d "{\"email_hash\":\"$MEMBER\",\"advertiser_ids\":[\"acme\",\"globex\"]}")
  log "  suppress:    $a"
  [[ $a == *'"members":["acme"]'* ]] || die "/v1/suppress answered $a"
}

check_metrics() {
  local name port body want
  for name in meta-service:$META_OPS_PORT splitter:$SPLITTER_OPS_PORT worker-1:$WORKER1_OPS_PORT \
    worker-2:$WORKER2_OPS_PORT matcher-api:$MATCHER_OPS_PORT; do
    port=${name#*:} name=${name%%:*}
    body=$(curl -fsS "http://127.0.0.1:$port/metrics") || die "$name: GET /metrics on 127.0.0.1:$port failed"
    for want in 'memberlake_build_info{' '# HELP memberlake_'; do
      [[ $body == *"$want"* ]] || die "$name: /metrics has no $want"
    done
    case $name in
      matcher-api) want='memberlake_http_requests_total{' ;;
      splitter) want='memberlake_queue_units{' ;; # the leader's
      worker-*) want='memberlake_worker_' ;;
      *) want= ;;
    esac
    [[ -z $want || $body == *"$want"* ]] || die "$name: /metrics has no $want"
    log "  $name (127.0.0.1:$port/metrics): $(grep -c '^# HELP' <<<"$body") metrics, $(grep -m1 '^memberlake_build_info' <<<"$body")"
  done
}

# No socket of a container's process is bound to, or connected to, an address beyond loopback.
check_loopback_only() {
  local pids=() c p bad
  for c in $(dk ps -q --filter "name=^$CONTAINER_PREFIX"); do
    while read -r p; do [[ $p =~ ^[0-9]+$ ]] && pids+=("$p"); done < <(dk top "$c" -eo pid | tail -n +2)
  done
  ((${#pids[@]})) || die "no container processes found"
  bad=$(ss -Htanp 2>/dev/null | awk -v pids=" ${pids[*]} " '
    { pidlist = $0; found = 0
      while (match(pidlist, /pid=[0-9]+/)) { if (index(pids, " " substr(pidlist, RSTART + 4, RLENGTH - 4) " ")) found = 1; pidlist = substr(pidlist, RSTART + RLENGTH) }
      if (!found) next
      local = $4; peer = $5
      if (local !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ || (peer !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ && peer !~ /^(\*|0\.0\.0\.0|\[::\]):\*$/)) print }')
  if [[ -n $bad ]]; then
    printf '%s\n' "$bad" >&2
    die "a container's socket is bound or connected beyond loopback"
  fi
  log "${#pids[@]} container processes; $(ss -Htanp 2>/dev/null | grep -cE "pid=($(IFS='|'; echo "${pids[*]}")),") TCP sockets, all on 127.0.0.1"
}

# ---- 5. teardown --------------------------------------------------------------------------------------
RUN_LOGS=
teardown() {
  local rc=$? c name
  set +e
  trap - EXIT INT TERM
  if [[ -n $STEP_LABEL ]]; then
    TIMINGS+=("$(printf '%4ss  %s (FAILED, exit %s)' $((SECONDS - STEP_T0)) "$STEP_LABEL" "$rc")")
    printf '== %d. %s: FAILED after %ss (exit %s)\n' "$STEP_NO" "$STEP_LABEL" $((SECONDS - STEP_T0)) "$rc"
  fi
  if [[ -S $DOCKER_SOCK ]] && dockerd_answers; then
    for c in $(dk ps -aq --filter "name=^$CONTAINER_PREFIX"); do
      name=$(dk inspect --format '{{.Name}}' "$c")
      [[ -n $RUN_LOGS ]] && dk logs "$c" >"$RUN_LOGS/${name#/}.log" 2>&1
      dk rm -f "$c" >/dev/null
    done
    [[ -n $RUN_LOGS ]] && log "container logs: $RUN_LOGS"
    if [[ $KEEP != 1 ]]; then
      # The build stage's layers (GBs of target/) go; the stand-ins and the image stay.
      dk image prune -f >/dev/null
      dk container prune -f >/dev/null
    fi
    log "docker data root: $(du -sh "$DOCKER_DIR/data" 2>/dev/null | cut -f1)"
  fi
  if [[ -f $STACK_DIR/stack.conf ]]; then
    if [[ $KEEP == 1 ]]; then image_stack down; else image_stack down --purge; fi
  fi
  dockerd_down
  [[ -n $WORK ]] && rm -rf "$WORK"
  print_timings
  if ((rc == 0)); then log "image test passed"; else log "image test FAILED (exit $rc)"; fi
  exit "$rc"
}

check_disk() {
  local avail_gb
  avail_gb=$(df -BG --output=avail "$CACHE_DIR" | tail -n1 | tr -dc 0-9)
  log "disk: ${avail_gb}G free on $(df --output=target "$CACHE_DIR" | tail -n1); docker data root $(du -sh "$DOCKER_DIR/data" 2>/dev/null | cut -f1 || echo 0)"
  ((avail_gb >= ${MEMBERLAKE_IMAGE_MIN_FREE_GB:-12})) ||
    die "need ${MEMBERLAKE_IMAGE_MIN_FREE_GB:-12}G free for the build (rootfs, toolchain, target/); have ${avail_gb}G"
}

main() {
  local mode=run
  case ${1:-} in
    "") ;;
    --if-changed) mode=if-changed ;;
    inputs) cmd_inputs; return 0 ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
  esac
  [[ $(id -u) == 0 ]] || die "run as root (dockerd, debootstrap and the stack's postgres need it)"
  cd "$REPO_ROOT"
  mkdir -p "$IMAGE_CACHE" "$CACHE_DIR"
  local hash
  hash=$(inputs_hash)
  if [[ $mode == if-changed && -s $LAST_GREEN && $(cut -d' ' -f1 "$LAST_GREEN") == "$hash" ]]; then
    log "image inputs unchanged since the last green run ($(cut -d' ' -f2- "$LAST_GREEN")): skipped"
    log "(deploy/local/image.sh runs it anyway; deploy/local/image.sh inputs lists the inputs)"
    return 0
  fi
  exec 8>"$IMAGE_CACHE/.lock"
  flock -n 8 || die "another image.sh holds $IMAGE_CACHE/.lock"
  RUN_LOGS=$IMAGE_CACHE/logs/run-$(date +%Y%m%dT%H%M%S)
  mkdir -p "$RUN_LOGS"
  trap teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "image inputs $hash; stack $STACK_DIR (port offset $PORT_OFFSET); logs $RUN_LOGS"
  check_disk
  read_dockerfile_defaults
  step "packages (docker.io, debootstrap)" install_packages
  step "dockerd (private; --bridge=none --iptables=false)" dockerd_up
  step "stand-in base images ($RUST_TAG → $RUST_STANDIN, $RUNTIME_TAG → $RUNTIME_STANDIN)" make_standins
  step "docker build deploy/Dockerfile → $IMAGE_TAG" build_image
  step "image smoke (binaries, user)" image_smoke
  step "local stack up (offset $PORT_OFFSET)" stack_up
  step "memberlake migrate (in the image)" migrate
  step "start meta-service, splitter, 2 compute-workers, matcher-api (in the image)" start_services
  step "upload a list of $ROWS emails to the S3 lake" upload_list
  step "wait until it is ingested" wait_ingested
  step "matcher answers" check_answers
  step "every service's /metrics" check_metrics
  step "containers use loopback only" check_loopback_only
  echo "$hash $(date -Is) $((SECONDS - T_START))s" >"$LAST_GREEN"
  log "recorded a green run of these image inputs in $LAST_GREEN"
}

main "$@"
