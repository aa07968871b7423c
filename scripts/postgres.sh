#!/usr/bin/env bash
# Provides a private local Postgres cluster for development and tests.
#
#   scripts/postgres.sh <name>     ensure the cluster <name> (dev, test) runs;
#                                  prints its base URL (postgres://.../)
#   scripts/postgres.sh stop <name>   stop it (e.g. the dev cluster scripts/run.sh
#                                  started); its data stays for the next start
#
# Installs Debian's postgresql when it is missing, initialises the cluster
# under .pgdata/<name> in the project (or, when the postgres user cannot reach
# the project folder, under /var/lib/postgresql/ck-<hash>), starts it on a free
# port on 127.0.0.1, and reuses it on later calls.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'postgres.sh: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root (or sudo) for: $*"; exit 1; fi
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

ensure_installed() {
  if [ -z "$(pg_bin)" ]; then
    log "installing Debian's postgresql"
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      postgresql postgresql-client >&2
  fi
}

# The cluster runs as the postgres user when we are root (initdb refuses root).
# From /, which postgres can always enter (a private checkout it cannot).
run_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

data_dir_for() {
  local name=$1
  local dir="$root/.pgdata/$name"
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$root/.pgdata"
    if ! runuser -u postgres -- test -x "$root/.pgdata"; then
      # A private checkout (e.g. under a 0700 temp folder): postgres cannot
      # traverse it, so the cluster lives in postgres's home instead.
      dir="/var/lib/postgresql/ck-$(printf '%s' "$root" | sha256sum | cut -c1-12)-$name"
    fi
  fi
  echo "$dir"
}

# Ports below the usual ephemeral range (32768-60999 on Linux): a port in
# that range can be taken at any moment as the local end of an outgoing
# connection, which no probe sees, and Postgres then cannot bind it.
PORT_FIRST=25432
PORT_LAST=25631

# The first port from $1 on that nothing listens on.
free_port() {
  local port
  for port in $(seq "$1" "$PORT_LAST"); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"; return 0
    fi
  done
  log "no free port in $1-$PORT_LAST"; exit 1
}

ensure_running() {
  local name=$1 bin data port
  ensure_installed
  bin=$(pg_bin)
  data=$(data_dir_for "$name")
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising cluster $name in $data"
    if [ "$(id -u)" -eq 0 ]; then
      install -d -o postgres -g postgres -m 700 "$data"
    else
      install -d -m 700 "$data"
    fi
    run_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
      --locale=C.UTF-8 >/dev/null
  fi
  if ! run_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    local extra=()
    if [ "$name" = test ]; then
      # Throwaway test data: durability is not under test here. The tests
      # that count a call's statements read pg_stat_statements (sized for
      # the many databases of one run).
      extra=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off
        -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.max=50000)
    fi
    # A port can still be taken between the probe and the bind: then the
    # next one is tried.
    local attempt from=$PORT_FIRST started=
    for attempt in 1 2 3 4 5; do
      port=$(free_port "$from")
      log "starting cluster $name on 127.0.0.1:$port"
      if run_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=300 ${extra[*]}" \
        start >/dev/null; then
        started=1; break
      fi
      from=$((port + 1))
    done
    if [ -z "$started" ]; then
      log "cluster $name did not start; the end of its log:"
      tail -n 20 "$data/server.log" >&2 || true
      exit 1
    fi
  fi
  port=$(sed -n 4p "$data/postmaster.pid")
  echo "postgres://postgres@127.0.0.1:$port/"
}

stop_cluster() {
  local name=$1 bin data
  if ! bin=$(pg_bin); then
    log "postgresql is not installed: no cluster $name to stop"; return 0
  fi
  data=$(data_dir_for "$name")
  if [ -f "$data/PG_VERSION" ] && run_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    run_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    log "stopped cluster $name ($data; its data stays)"
  else
    log "cluster $name is not running"
  fi
}

case "${1:-}" in
  stop) stop_cluster "${2:?usage: postgres.sh stop <name>}" ;;
  "" ) log "usage: postgres.sh <name> | stop <name>"; exit 2 ;;
  *) ensure_running "$1" ;;
esac
