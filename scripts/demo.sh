#!/usr/bin/env bash
# Set up, then run one beam search on the offline provider set (no key, no network).
#   scripts/demo.sh ["a forest at dawn"] [more beamkit run options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
prompt=${1:-a forest at dawn}
shift || true
exec .venv/bin/beamkit run "$prompt" "$@"
