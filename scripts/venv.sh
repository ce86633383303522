# Sourced by scripts/demo.sh and scripts/test.sh: make .venv (Python 3.11+) with the package and
# its dev extras. `pip install -e .[dev]` runs only when pyproject.toml or the interpreter has
# changed since the last install: a stamp in .venv holds their hash. PYTHON picks the
# interpreter (default python3). Expects the repository root as the working directory.
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.dcma-install-stamp"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "$0: $PYTHON is older than Python 3.11" >&2; exit 1; }
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
