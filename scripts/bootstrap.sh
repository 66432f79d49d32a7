#!/usr/bin/env bash
# Set up a fresh Debian machine for this project (idempotent): system packages, a virtualenv
# in .venv with the project and its test extras. Sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DSA110_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# WSClean (the imager) comes from Debian; the PyPI package of that name is unrelated.
# PostgreSQL: the production storage, started by the tests on a private port.
missing=()
command -v wsclean >/dev/null 2>&1 || missing+=(wsclean)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# Chromium: the UI tests read the Dagster webserver's pages in a real headless browser.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
# Redis: the Celery broker of the scale-out test.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages (${missing[*]})" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the dependency list changed.
STAMP="$VENV/.dsa110-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "bootstrap: installing Python packages into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
