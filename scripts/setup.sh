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
  extra=""
  if [ "${1:-}" = "test" ]; then
    extra="[test,diffusers,scorers]"
    # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build the tests do not need
    # (BEAMKIT_TORCH names another, e.g. a CUDA build on a GPU machine; see docs/local-models.md)
    .venv/bin/python -m pip install --quiet "${BEAMKIT_TORCH:-torch==2.13.0}" 2>&1 | grep -v "is ignored" || true
  fi
  .venv/bin/python -m pip install --quiet -e ".${extra}" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import beamkit" && touch "$stamp"
  if [ "${1:-}" = "test" ]; then
    .venv/bin/python -c "import torch, diffusers, transformers" || { rm -f "$stamp"; echo "setup: the local-model extras did not install" >&2; exit 1; }
  fi
fi
