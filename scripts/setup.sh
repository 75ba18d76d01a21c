#!/usr/bin/env bash
# Create ./.venv (if needed) and install beamkit into it, editable.
#   scripts/setup.sh          the package
#   scripts/setup.sh test     the package and everything the test suite needs
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.beamkit-installed-${1:-base}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
  extra=""; [ "${1:-}" = "test" ] && extra="[test]"
  .venv/bin/python -m pip install --quiet -e ".${extra}" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import beamkit" && touch "$stamp"
fi
