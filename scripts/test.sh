#!/usr/bin/env bash
# Run the test suite in the project's virtual environment, creating it on first use.
#
#   bash scripts/test.sh                  fast tests (slow-marked ones are skipped)
#   bash scripts/test.sh --slow           every test, slow-marked included
#   bash scripts/test.sh tests/test_cli.py -x -q    any pytest arguments pass through
#
# Tests run in DCMA_TEST_WORKERS pytest-xdist processes (default 2; 0: in this process). One
# process keeps about 1.4 of 2 cores busy (XLA compiles on one thread); two ran the default
# suite in 8 min 34 s, where one had taken 11 min 19 s with 4 fewer tests (README).
#
# The venv is .venv in the repository root (PYTHON picks the interpreter, default python3,
# 3.11 or newer). `pip install -e .[dev]` runs only when pyproject.toml or the interpreter has
# changed since the last install: a stamp in .venv holds their hash.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh

args=(-n "${DCMA_TEST_WORKERS:-2}")
for arg in "$@"; do
  if [ "$arg" = "--slow" ]; then
    args+=(-m "")  # overrides pyproject's -m 'not slow': run everything
  else
    args+=("$arg")
  fi
done
exec "$VENV/bin/python" -m pytest "${args[@]+"${args[@]}"}"
