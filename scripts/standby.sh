#!/usr/bin/env bash
# A throwaway primary and its hot standby (a real streaming replica made with
# pg_basebackup -R), for the read-replica test (tests/api/read_replica.rs).
#
#   scripts/standby.sh up <name>     initialise and start both; prints the
#                                    primary's base URL, then the standby's
#   scripts/standby.sh stop-standby <name>   stop the standby only (the
#                                    primary goes on: a standby outage)
#   scripts/standby.sh down <name>   stop both and delete their data
#
# The pair is small and private to its caller: the shared test cluster holds
# every test's databases (gigabytes on a busy machine), too much to copy for
# each run. Both listen on 127.0.0.1 only, with trust authentication, and run
# as the postgres user when called as root (initdb refuses root).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf 'standby.sh: %s\n' "$*" >&2; }

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$dir" ] && [ -x "$dir/pg_basebackup" ] && echo "$dir"
}

# From / : the caller's folder may be private (a 0700 temp clone) and the
# postgres user could not enter it.
run_pg() {
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

base_dir() {
  local name=$1
  if [ "$(id -u)" -eq 0 ]; then
    echo "/var/lib/postgresql/ck-standby-$name"
  else
    echo "$root/.pgdata/standby-$name"
  fi
}

# A free port, starting at a random point of 24000-24999 so that two runs at
# once rarely try the same one. The range lies below the kernel's ephemeral
# ports (32768 and up): on a busy test machine an outgoing connection can hold
# any ephemeral port, which a probe for a listener does not see and which then
# makes the server's bind fail.
free_port() {
  local start=$((24000 + RANDOM % 1000)) i port
  for i in $(seq 0 999); do
    port=$((24000 + (start - 24000 + i) % 1000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"; return 0
    fi
  done
  log "no free port in 24000-24999"; exit 1
}

# Starts the server in $data on a free port and prints the port. A port taken
# between the probe and the bind costs a retry on another port; after three
# failures the server's log goes to stderr.
start() {
  local bin=$1 data=$2 attempt port
  for attempt in 1 2 3; do
    port=$(free_port)
    if run_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 120 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$(dirname "$data")" \
      start >/dev/null; then
      echo "$port"; return 0
    fi
    log "start of $data on port $port failed (attempt $attempt)"
  done
  log "server log of $data:"
  tail -n 40 "$data/server.log" >&2 || true
  exit 1
}

up() {
  local name=$1 bin base primary_port standby_port
  bin=$(pg_bin) || { log "postgresql is not installed (scripts/postgres.sh installs it)"; exit 1; }
  base=$(base_dir "$name")
  down "$name" 2>/dev/null || true
  if [ "$(id -u)" -eq 0 ]; then
    install -d -o postgres -g postgres -m 700 "$base" "$base/primary"
  else
    install -d -m 700 "$base" "$base/primary"
  fi
  run_pg "$bin/initdb" -D "$base/primary" -U postgres --auth=trust --encoding=UTF8 \
    --locale=C.UTF-8 >/dev/null
  # initdb's pg_hba.conf already lets local replication connections in
  # (host replication all 127.0.0.1/32 trust); the settings are said anyway.
  cat >>"$base/primary/postgresql.conf" <<'EOF'
wal_level = replica
max_wal_senders = 4
hot_standby = on
fsync = off
full_page_writes = off
max_connections = 100
EOF
  primary_port=$(start "$bin" "$base/primary")
  # -R writes primary_conninfo and standby.signal: the copy starts as a
  # streaming replica of the primary.
  run_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
    -D "$base/standby" -R -X stream -c fast >/dev/null
  standby_port=$(start "$bin" "$base/standby")
  log "primary on 127.0.0.1:$primary_port, standby on 127.0.0.1:$standby_port ($base)"
  echo "postgres://postgres@127.0.0.1:$primary_port/"
  echo "postgres://postgres@127.0.0.1:$standby_port/"
}

down() {
  local name=$1 bin base
  bin=$(pg_bin) || exit 0
  base=$(base_dir "$name")
  for data in "$base/standby" "$base/primary"; do
    if [ -f "$data/PG_VERSION" ]; then
      run_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$base"
}

stop_standby() {
  local bin data
  bin=$(pg_bin) || exit 0
  data="$(base_dir "$1")/standby"
  run_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
}

case "${1:-}" in
  stop-standby) stop_standby "${2:?usage: standby.sh stop-standby <name>}" ;;
  up) up "${2:?usage: standby.sh up <name>}" ;;
  down) down "${2:?usage: standby.sh down <name>}" ;;
  *) log "usage: standby.sh up|stop-standby|down <name>"; exit 2 ;;
esac
