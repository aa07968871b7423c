#!/usr/bin/env bash
# Checks the Helm chart without a cluster or a helm binary: lint and render
# with Helm's own engine (PyPI helm-python-sdk), validate every manifest
# against the Kubernetes schemas offline (PyPI kubernetes-validate), assert
# the restricted pod security profile, probes, hooks and that bad values are
# refused. Needs only PyPI; installs into .tools/helm-venv on first use.
#
#   scripts/check-helm.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.tools/helm-venv

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "check-helm.sh: need root (or sudo) for: $*" >&2; exit 1; fi
}
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    python3 python3-venv >/dev/null
fi

if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check helm-python-sdk kubernetes-validate PyYAML
fi

exec "$venv/bin/python" tests/helm/test_chart.py
