#!/usr/bin/env bash
# The fault suite (RELIABILITY.md): every scenario, release build, on the
# suite's own Postgres cluster "fault" (durable settings, its own port and data
# directory, restarted by the scenarios), which is stopped again on the way
# out, also on failure or Ctrl-C. Arguments go to the suite: `--list`, or
# words that pick scenarios by name.
#
#   scripts/fault.sh                      # all scenarios
#   scripts/fault.sh table-lock overload  # some of them
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Built first, so that the time bound of the run is not spent compiling.
cargo test --release --locked --test fault --no-run

stop_cluster() { scripts/postgres.sh stop fault || true; }
trap stop_cluster EXIT
trap 'exit 130' INT TERM
url=$(scripts/postgres.sh fault)
export CK_FAULT_DATABASE_URL="$url"

# The suite bounds itself (each scenario has a limit, the run a budget under
# ten minutes) and kills every service process it starts.
cargo test --release --locked --test fault -- --all "$@"
