#!/usr/bin/env bash
# What `buf breaking` reports between the contract in this checkout and a
# baseline: by default the contract callers first built against
# (tests/fixtures/contract-baseline), or the contract at a git ref
# (`scripts/buf-breaking.sh 30facf5`). Every finding must be an intended change
# listed in docs/contract-changes.md; tests/api/wire_compat.rs enforces that in
# CI for the default baseline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
buf=.tools/buf/node_modules/.bin/buf
if [ ! -x "$buf" ]; then
  command -v npm >/dev/null || { echo "buf-breaking.sh: needs npm (apt-get install npm)" >&2; exit 1; }
  npm install --silent --no-audit --no-fund --prefix .tools/buf @bufbuild/buf >/dev/null
fi
work=$(mktemp -d)
trap 'git worktree remove --force "$work/ref" 2>/dev/null || true; rm -rf "$work"' EXIT
# Images, not directories: the checkout is a workspace of two modules (the
# contract and the vendored googleapis), a baseline may be one.
"$buf" build -o "$work/now.binpb"
if [ $# -eq 0 ]; then
  against="tests/fixtures/contract-baseline"
  "$buf" build "$against" -o "$work/then.binpb"
else
  against="git ref $1"
  git worktree add -q --detach "$work/ref" "$1"
  (cd "$work/ref" && "$OLDPWD/$buf" build -o "$work/then.binpb")
fi
echo "buf breaking against $against:"
if "$buf" breaking "$work/now.binpb" --against "$work/then.binpb"; then
  echo "no breaking change"
else
  echo "(each finding above must be listed in docs/contract-changes.md)"
fi
