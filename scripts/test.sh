#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
# Tests make their own Dagster instances; never touch a user's.
unset DAGSTER_HOME
exec python -m pytest -p no:cacheprovider "$@"
