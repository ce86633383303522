#!/usr/bin/env bash
# Run the test suite in the project's virtual environment, creating it on first use.
#
#   bash scripts/test.sh                  fast tests (slow-marked ones are skipped)
#   bash scripts/test.sh --slow           every test, slow-marked included
#   bash scripts/test.sh tests/test_cli.py -x -q    any pytest arguments pass through
#
# The venv is .venv in the repository root (PYTHON picks the interpreter, default python3,
# 3.11 or newer). `pip install -e .[dev]` runs only when pyproject.toml or the interpreter has
# changed since the last install: a stamp in .venv holds their hash.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.dcma-install-stamp"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "scripts/test.sh: $PYTHON is older than Python 3.11" >&2; exit 1; }
  echo "Creating $VENV with $("$PYTHON" --version)" >&2
  "$PYTHON" -m venv "$VENV"
fi
want="$("$VENV/bin/python" - <<'PY'
import hashlib, sys
print(hashlib.sha256(open("pyproject.toml", "rb").read() + sys.version.encode()).hexdigest())
PY
)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ] || ! "$VENV/bin/python" -c "import dcma_jax, pytest" 2>/dev/null; then
  echo "Installing dcma_jax and its dev dependencies into $VENV (quiet)" >&2
  "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
  echo "$want" > "$STAMP"
fi

args=()
for arg in "$@"; do
  if [ "$arg" = "--slow" ]; then
    args+=(-m "")  # overrides pyproject's -m 'not slow': run everything
  else
    args+=("$arg")
  fi
done
exec "$VENV/bin/python" -m pytest "${args[@]+"${args[@]}"}"
