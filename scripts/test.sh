#!/usr/bin/env bash
# Set up everything the tests need, lint with ruff (the whole tree) and type-check the package with mypy, then run the whole suite
# (Python tests, notebooks, the browser test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
# The browser test drives Debian's Chromium; never a browser download.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; the browser test will fail" >&2
  else
    echo "warning: /usr/bin/chromium is missing (apt-get install chromium); the browser test will fail" >&2
  fi
fi
# Lint the tree and type-check the package first (settings in pyproject.toml): an error in either fails the run.
checks=0
.venv/bin/ruff check || checks=1  # the package, tests, benchmarks and notebooks
.venv/bin/mypy || checks=1
if [ "$checks" != 0 ]; then
  echo "test.sh: ruff or mypy found errors (above); the tests were not run" >&2
  exit 1
fi
# Keep Jupyter and IPython state out of HOME.
state=$(mktemp -d -t beamkit-test-XXXXXX)
export JUPYTER_CONFIG_DIR="$state/config" JUPYTER_DATA_DIR="$state/data" JUPYTER_RUNTIME_DIR="$state/runtime" IPYTHONDIR="$state/ipython"
# The notebooks measure over small grids of prompts and seeds in CI (docs/notebooks.md).
export BEAMKIT_NOTEBOOK_QUICK=1
exec .venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider "$@"
