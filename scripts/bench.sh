#!/usr/bin/env bash
# Append-path benchmark: LogInteraction and ImportInteractions through the
# real server (benches/append.rs), side by side with pgbench running the same
# INSERT and psql \copy of the same rows, on one durable local cluster
# (fsync and synchronous_commit on). Prints the figures and their ratios.
#
#   scripts/bench.sh            # defaults: 20000 calls, 32 concurrent, 200000 rows
#   BENCH_CONCURRENCY=64 scripts/bench.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

concurrency=${BENCH_CONCURRENCY:-32}
rows=${BENCH_IMPORT_ROWS:-200000}
seconds=${BENCH_PGBENCH_SECONDS:-10}
base=$(scripts/postgres.sh bench)
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

echo "== service (cargo bench --bench append)"
out=$(BENCH_DATABASE_URL="$base" BENCH_CONCURRENCY="$concurrency" BENCH_IMPORT_ROWS="$rows" \
  cargo bench --quiet --bench append 2>/dev/null)
printf '%s\n' "$out" | grep -v "^RESULT"
result() { printf '%s\n' "$out" | sed -n "s/^RESULT $1=//p"; }
db=$(result database)
log_rate=$(result log_interactions_per_sec)
import_rate=$(result import_rows_per_sec)
customers=$(result customers)
url="${base}${db}"

pgbench_tps() {
  "$bin/pgbench" -n -c "$concurrency" -j 2 -T "$seconds" -D customers="$customers" -f "$1" "$url" \
    2>/dev/null | sed -n 's/^tps = \([0-9.]*\) .*/\1/p' | head -n 1
}
echo "== pgbench, $concurrency clients, ${seconds}s each"
pg_tps=$(pgbench_tps scripts/bench/insert.sql)
echo "pgbench, the bare INSERT: ${pg_tps} inserts/s"
pg_full_tps=$(pgbench_tps scripts/bench/log_interaction.sql)
echo "pgbench, LogInteraction's SQL (lock, insert, outbox, notify): ${pg_full_tps} transactions/s"

echo "== psql \\copy of $rows rows"
csv=$(mktemp --suffix=.csv)
trap 'rm -f "$csv"' EXIT
"$bin/psql" -q "$url" -c "\\copy (SELECT c.id, 'cp-' || g, 'ONLINE_BANKING', 'TRANSACTION', now(), 'Card payment', '{DEBIT-CARD}', 'CNY', g % 10000, 0, 'CORE', 'CP-' || lpad(g::text, 9, '0') FROM generate_series(1, $rows) g JOIN LATERAL (SELECT id FROM customers ORDER BY id OFFSET g % $customers LIMIT 1) c ON true) TO '$csv' CSV"
start=$(date +%s.%N)
"$bin/psql" -q "$url" -c "\\copy interactions (customer_id, id, channel, kind, occur_time, summary, products, amount_currency, amount_units, amount_nanos, source_system, external_ref) FROM '$csv' CSV"
end=$(date +%s.%N)
copy_rate=$(awk -v r="$rows" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", r / (e - s) }')
echo "psql \\copy: ${copy_rate} rows/s"

echo
echo "== summary ($(nproc) cores, PostgreSQL $("$bin/postgres" --version | awk '{print $3}'), fsync on)"
awk -v l="$log_rate" -v p="$pg_tps" -v f="$pg_full_tps" -v i="$import_rate" -v c="$copy_rate" 'BEGIN {
  printf "LogInteraction      %8.0f interactions/s   pgbench INSERT %8.0f/s   ratio %.2f\n", l, p, l / p
  printf "LogInteraction      %8.0f interactions/s   pgbench same SQL %6.0f/s   ratio %.2f\n", l, f, l / f
  printf "ImportInteractions  %8.0f rows/s           psql \\copy     %8.0f/s   ratio %.2f\n", i, c, i / c
}'
"$bin/psql" -q "${base}postgres" -c "DROP DATABASE $db" >/dev/null
