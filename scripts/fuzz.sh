#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for SECONDS each, default
# 60, and prints executions and crashes per target. Not part of CI (too
# long); see RELIABILITY.md.
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600             # every target, 10 minutes each
#   scripts/fuzz.sh 120 tokens      # one target
#
# Needs a nightly toolchain (installed here if missing) and cargo-fuzz
# (likewise). The corpus of each target grows in fuzz/corpus/<target>;
# crashing inputs land in fuzz/artifacts/<target>/, logs in fuzz/logs/.
# A crash is replayed with `cargo +nightly fuzz run <target> <file>`.
# FUZZ_ARGS adds libFuzzer options (e.g. FUZZ_ARGS="-jobs=2 -workers=2").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
shift || true
toolchain=${FUZZ_TOOLCHAIN:-nightly}

rustup run "$toolchain" rustc --version >/dev/null 2>&1 ||
  rustup toolchain install "$toolchain" --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi

mkdir -p fuzz/logs
# One build for every target: they share the crate and its dependencies.
cargo "+$toolchain" fuzz build

summary=()
failed=0
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log="fuzz/logs/$target.log"
  echo "==> $target for ${seconds}s"
  # -malloc_limit_mb: one allocation over 512 MiB is a finding (no request
  # may make the service allocate without bound); -timeout: one input over
  # 10 s is a finding (a hang).
  status=0
  # shellcheck disable=SC2086
  cargo "+$toolchain" fuzz run "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
  crashes=$(find "fuzz/artifacts/$target" -type f 2>/dev/null | wc -l)
  if [ "$status" -ne 0 ]; then
    failed=1
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8 || true
  fi
  summary+=("$(printf '%-22s %6ss %12s execs  exit %s  %s artifact(s)' \
    "$target" "$seconds" "${execs:-?}" "$status" "$crashes")")
done

echo
echo "target                 time        executions"
printf '%s\n' "${summary[@]}"
exit "$failed"
