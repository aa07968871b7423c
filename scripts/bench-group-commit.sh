#!/usr/bin/env bash
# LogInteraction with group commit off and on, side by side with pgbench's
# single-row INSERT, on one durable cluster (.pgdata/bench) and one database:
# the log-interaction scenario of benches/load.rs (64 callers over 4 HTTP/2
# connections, as scripts/bench-all.sh runs it), first with
# CK__INTERACTIONS__GROUP_COMMIT=false (one transaction per call), then with
# it on, each followed by pgbench -M prepared (scripts/bench/insert_by_id.sql);
# both ratios are against the mean of the two pgbench runs. The first round
# also loads the synthetic bank (as scripts/bench-all.sh does).
#
#   scripts/bench-group-commit.sh
#
# Knobs: BENCH_SECONDS (12), BENCH_WARMUP (3), BENCH_CALLERS (64),
# BENCH_CONNECTIONS (4), BENCH_POOL (32), BENCH_CUSTOMERS (2000),
# BENCH_INTERACTIONS (100000), BENCH_SEED (42), BENCH_ROUNDS (1: off/on pairs),
# BENCH_WORKERS (interactions.group_commit_workers of the "on" runs, 2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${BENCH_SECONDS:-12}
warmup=${BENCH_WARMUP:-3}
callers=${BENCH_CALLERS:-64}
connections=${BENCH_CONNECTIONS:-4}
pool=${BENCH_POOL:-32}
customers=${BENCH_CUSTOMERS:-2000}
interactions=${BENCH_INTERACTIONS:-100000}
seed=${BENCH_SEED:-42}
rounds=${BENCH_ROUNDS:-1}
workers=${BENCH_WORKERS:-2}

base=$(scripts/postgres.sh bench)
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
db="ck_benchgc_$(date +%s)"
"$bin/psql" -q "${base}postgres" -c "CREATE DATABASE $db" >/dev/null
trap '"$bin/psql" -q "${base}postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
url="${base}${db}"

echo "== build (release)"
cargo bench --quiet --no-run --bench load 2>&1 | grep -v '^ *Executable' || true

# One run of the log-interaction scenario; prints its calls/s.
service() {
  local out
  out=$(cargo bench --quiet --bench load -- --database-url "$url" $2 --seed "$seed" \
    --customers "$customers" --interactions "$interactions" --knowledge 100 \
    --scenarios log-interaction --callers "$callers" --connections "$connections" \
    --duration "$seconds" --warmup "$warmup" \
    --server-env "CK__DATABASE__MAX_CONNECTIONS=$pool" \
    --server-env "CK__SERVER__MAX_CONCURRENT_CALLS=$((callers * 4))" \
    --server-env "CK__INTERACTIONS__GROUP_COMMIT=$1" \
    --server-env "CK__INTERACTIONS__GROUP_COMMIT_WORKERS=$workers" 2>&1)
  printf '%s\n' "$out" | grep -v '^RESULT' | grep -i 'log-interaction' >&2 || true
  printf '%s\n' "$out" | sed -n 's/^RESULT log-interaction.calls_per_sec=//p' | head -n 1
}
prefix="s$(printf '%x' "$seed")"
pgbench_tps() {
  "$bin/pgbench" -n -M prepared -c "$callers" -j 2 -T "$seconds" \
    -D customers="$customers" -D prefix="$prefix" -f scripts/bench/insert_by_id.sql "$url" 2>&1 |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }

generate=--generate
printf '%-8s %12s %12s %12s %8s %8s\n' round 'pgbench tps' 'off calls/s' 'on calls/s' off/pg on/pg
for round in $(seq 1 "$rounds"); do
  off=$(service false "$generate")
  generate=
  pg1=$(pgbench_tps)
  on=$(service true "")
  pg2=$(pgbench_tps)
  pg=$(awk -v a="$pg1" -v b="$pg2" 'BEGIN { printf "%.0f", (a + b) / 2 }')
  printf '%-8s %12s %12.0f %12.0f %8s %8s\n' "$round" "$pg1/$pg2" "$off" "$on" "$(ratio "$off" "$pg")" "$(ratio "$on" "$pg")"
done
echo "(group commit: $workers workers; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), fsync on, $callers callers / clients, ${seconds}s each)"
