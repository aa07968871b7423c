#!/usr/bin/env bash
# Brings the service up on localhost: when neither DATABASE_URL nor
# CK__DATABASE__URL is set, a private Postgres is installed (if needed),
# started and used. Migrations are applied by `serve` at start.
#
#   scripts/run.sh                 # serve on 127.0.0.1:50051
#   scripts/run.sh migrate         # any customer-knowledge arguments pass through
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${DATABASE_URL:-}" ] && [ -z "${CK__DATABASE__URL:-}" ]; then
  base=$(scripts/postgres.sh dev)
  psql_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql
  if ! "$psql_bin" "${base}postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = 'customer_knowledge'" | grep -q 1; then
    "$psql_bin" "${base}postgres" -qc "CREATE DATABASE customer_knowledge" >/dev/null
  fi
  export DATABASE_URL="${base}customer_knowledge"
  echo "run.sh: using the local Postgres at ${DATABASE_URL}" >&2
fi

# Local development defaults: identity from x-employee-id/x-branch/x-roles
# headers (loopback only), readable logs. Set CK__AUTH__MODE=jwt and its keys
# to run as in production.
export CK__AUTH__MODE="${CK__AUTH__MODE:-trusted_headers}"
export CK__LOG__FORMAT="${CK__LOG__FORMAT:-pretty}"

# The README's core-banking examples call as a calling system; one without
# configured methods may call nothing (see [auth.systems] in the README).
exec env "CK__AUTH__SYSTEMS__CORE-BANKING__METHODS=*" \
  cargo run --release --locked --bin customer-knowledge -- "$@"
