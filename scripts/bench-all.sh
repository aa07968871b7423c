#!/usr/bin/env bash
# The whole side-by-side benchmark in one run, on one machine and one durable
# local cluster (.pgdata/bench: fsync and synchronous_commit on):
#
#   1. the load generator (benches/load.rs) starts the release server as its
#      own process on a fresh database and loads a small synthetic bank
#      through the API (src/datagen); after a VACUUM ANALYZE it starts the
#      server again and runs every scenario, reads first (64 callers over 4
#      HTTP/2 connections, warm-up then a fixed duration; the two
#      GetCustomer360 scenarios open loop at a fixed rate instead, for their
#      latency) and health-check against a minimal tonic health server;
#   2. pgbench -M prepared, 64 clients, on the same database: the single-row
#      INSERT LogInteraction appends, and a primary-key SELECT of a customer;
#      then that SELECT at the 360's fixed rate, for its p99;
#   3. scripts/bench.sh: ImportInteractions against psql \copy;
#   4. a summary of each ratio against its goal.
#
#   scripts/bench-all.sh
#   BENCH_SECONDS=30 BENCH_CUSTOMERS=100000 BENCH_INTERACTIONS=2000000 scripts/bench-all.sh
#
# Knobs: BENCH_SECONDS (measured per scenario, 12), BENCH_WARMUP (3),
# BENCH_CALLERS (64), BENCH_CONNECTIONS (4), BENCH_POOL (the server's
# database pool, 32), BENCH_360_RATE (calls/s of the GetCustomer360 and
# latency SELECT runs, 100), BENCH_CUSTOMERS (2000), BENCH_INTERACTIONS (100000),
# BENCH_KNOWLEDGE (5000), BENCH_SEED (42), BENCH_SKIP_IMPORT=1 (skip step 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${BENCH_SECONDS:-12}
warmup=${BENCH_WARMUP:-3}
callers=${BENCH_CALLERS:-64}
connections=${BENCH_CONNECTIONS:-4}
pool=${BENCH_POOL:-32}
customers=${BENCH_CUSTOMERS:-2000}
interactions=${BENCH_INTERACTIONS:-100000}
knowledge=${BENCH_KNOWLEDGE:-5000}
seed=${BENCH_SEED:-42}
rate360=${BENCH_360_RATE:-100}
# Reads of the loaded bank first, the writes after them.
scenarios="get-customer,customer-360@$rate360,customer-360-10x@$rate360"
scenarios="$scenarios,log-interaction,batch-log,list-timeline,search-knowledge,health-check,mixed"
started=$(date +%s)

base=$(scripts/postgres.sh bench)
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
db="ck_benchall_$(date +%s)"
"$bin/psql" -q "${base}postgres" -c "CREATE DATABASE $db" >/dev/null
logs=$(mktemp -d)
trap '"$bin/psql" -q "${base}postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$logs"' EXIT
url="${base}${db}"

echo "== build (release)"
cargo bench --quiet --no-run --bench load --bench append 2>&1 | grep -v '^ *Executable' || true

echo "== data: the synthetic bank of seed $seed through the API, then VACUUM ANALYZE"
cargo bench --quiet --bench load -- --database-url "$url" --generate --seed "$seed" \
  --customers "$customers" --interactions "$interactions" --knowledge "$knowledge" \
  --scenarios none | grep '^data:'
# As autovacuum leaves a bank's tables: measured runs do not race its first pass.
"$bin/psql" -q "$url" -c "VACUUM ANALYZE"

echo "== service: cargo bench --bench load ($callers callers, $connections connections, ${warmup}+${seconds}s per scenario)"
out=$(cargo bench --quiet --bench load -- --database-url "$url" --seed "$seed" \
  --scenarios "$scenarios" \
  --customers "$customers" --interactions "$interactions" --knowledge "$knowledge" \
  --callers "$callers" --connections "$connections" --duration "$seconds" --warmup "$warmup" \
  --minimal-health --server-env "CK__DATABASE__MAX_CONNECTIONS=$pool" \
  --server-env "CK__SERVER__MAX_CONCURRENT_CALLS=$((callers * 4))" 2>&1)
printf '%s\n' "$out" | grep -v '^RESULT'
result() { printf '%s\n' "$out" | sed -n "s/^RESULT $1=//p" | head -n 1; }

prefix="s$(printf '%x' "$seed")"
pgbench_tps() {
  "$bin/pgbench" -n -M prepared -c "$callers" -j 2 -T "$seconds" \
    -D customers="$customers" -D prefix="$prefix" -f "$1" "$url" 2>&1 |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1
}
echo "== pgbench -M prepared, $callers clients, ${seconds}s each"
pg_insert=$(pgbench_tps scripts/bench/insert_by_id.sql)
echo "pgbench, single-row INSERT (scripts/bench/insert_by_id.sql): ${pg_insert} tps"
pg_select=$(pgbench_tps scripts/bench/select_customer.sql)
echo "pgbench, primary-key SELECT (scripts/bench/select_customer.sql): ${pg_select} tps"
# The same SELECT at the 360's rate (-R: latency from the scheduled start, as
# the load generator's open loop counts it), p99 from the per-transaction log
# (latency plus schedule lag, in microseconds).
"$bin/pgbench" -n -M prepared -c 4 -j 2 -R "$rate360" -T "$seconds" -l --log-prefix="$logs/select" \
  -D customers="$customers" -D prefix="$prefix" -f scripts/bench/select_customer.sql "$url" >/dev/null 2>&1
pg_select_p99=$(cat "$logs"/select* | awk '{ print ($3 + $7) / 1000 }' | sort -n |
  awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] }')
echo "pgbench, primary-key SELECT at ${rate360}/s: p99 ${pg_select_p99} ms"

import_line=""
if [[ "${BENCH_SKIP_IMPORT:-0}" != 1 ]]; then
  echo "== scripts/bench.sh (LogInteraction 32 callers, ImportInteractions vs psql \\copy)"
  bench_out=$(scripts/bench.sh 2>&1)
  printf '%s\n' "$bench_out" | sed -n '/== summary/,$p'
  import_line=$(printf '%s\n' "$bench_out" | grep '^ImportInteractions' | tail -n 1)
fi

echo
echo "== summary: $(nproc) cores, PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), fsync on, $callers callers / clients, ${seconds}s each, data: $customers customers, $interactions interactions, $knowledge knowledge items"
goal() { awk -v r="$1" -v g="$2" -v dir="$3" 'BEGIN { ok = (dir == ">=") ? (r >= g) : (r <= g); print ok ? "met" : "NOT met" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }'; }
log=$(result log-interaction.calls_per_sec)
get=$(result get-customer.calls_per_sec)
health=$(result health-check.calls_per_sec)
minimal=$(result health-check-minimal.calls_per_sec)
rss=$(result mixed.server_peak_rss_mib)
r_log=$(ratio "$log" "$pg_insert")
r_get=$(ratio "$get" "$pg_select")
r_health=$(ratio "$health" "$minimal")
p99_360=$(result customer-360.p99_ms)
p99_360_10x=$(result customer-360-10x.p99_ms)
r_360=$(ratio "$p99_360" "$pg_select_p99")
r_360_10x=$(ratio "$p99_360_10x" "$p99_360")
printf '%-44s %10s %-34s %10s %6s %-12s %s\n' "what" "service" "baseline" "baseline" "ratio" "goal" ""
printf '%-44s %10.0f %-34s %10.0f %6s %-12s %s\n' "LogInteraction/s, $callers callers" "$log" "pgbench prepared INSERT tps" "$pg_insert" "$r_log" ">= 1.5" "$(goal "$r_log" 1.5 '>=')"
printf '%-44s %10.0f %-34s %10.0f %6s %-12s %s\n' "GetCustomer/s, $callers callers" "$get" "pgbench prepared PK SELECT tps" "$pg_select" "$r_get" ">= 0.6" "$(goal "$r_get" 0.6 '>=')"
printf '%-44s %10.0f %-34s %10.0f %6s %-12s %s\n' "health Check/s, $callers callers" "$health" "minimal tonic health server" "$minimal" "$r_health" ">= 0.8" "$(goal "$r_health" 0.8 '>=')"
printf '%-44s %10.2f %-34s %10.2f %6s %-12s %s\n' "GetCustomer360 p99 ms, ${rate360}/s" "$p99_360" "PK SELECT p99 ms, ${rate360}/s" "$pg_select_p99" "$r_360" "<= 3" "$(goal "$r_360" 3 '<=')"
printf '%-44s %10.2f %-34s %10.2f %6s %-12s %s\n' "GetCustomer360 p99 ms, 10x history" "$p99_360_10x" "GetCustomer360 p99 ms, median" "$p99_360" "$r_360_10x" "<= 1.2" "$(goal "$r_360_10x" 1.2 '<=')"
printf '%-44s %10.1f %-34s %10s %6s %-12s %s\n' "peak RSS under mixed load (MiB)" "$rss" "" "" "" "<= 150" "$(goal "$rss" 150 '<=')"
if [[ -n "$import_line" ]]; then
  echo "$import_line"
fi
echo "(mixed: $(result mixed.calls_per_sec) calls/s, p99 $(result mixed.p99_ms) ms; total time $(( $(date +%s) - started )) s)"
