#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
# Lint first: the rule set is in pyproject.toml ([tool.ruff.lint]).
ruff check .
# Tests make their own Dagster instances and settings; never touch a user's.
unset DAGSTER_HOME DSA110_SETTINGS
exec python -m pytest -p no:cacheprovider "$@"
