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

PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.dcma-install-stamp"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "scripts/demo.sh: $PYTHON is older than Python 3.11" >&2; exit 1; }
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

exec "$VENV/bin/dcma" run "$@"
