#!/usr/bin/env bash
# Run `dcma run` in the project's virtual environment, creating it on first use.
#
#   bash scripts/demo.sh                  the embedded default study, with truth beside estimates
#   bash scripts/demo.sh --data my.csv --treatment A --mediators M --outcome Y
#
# Arguments go to `dcma run` unchanged (see docs/cli.md). The venv is the one scripts/test.sh
# uses (.venv, with the dev extras), set up the same way and reinstalled only when
# pyproject.toml or the interpreter changed.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh

exec "$VENV/bin/dcma" run "$@"
