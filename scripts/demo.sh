#!/usr/bin/env bash
# The embedded default: simulate DSA-110 observations and run the platform on them, with the
# Dagster UI at http://127.0.0.1:3000 (DSA110_PORT to change). Three observations are written
# at once; nine more follow at ten times real time (one every ~31 s), so partitions keep
# materializing while you watch. State lives in ./state/demo (DSA110_DEMO_DIR to change).
# Ctrl-C stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
DEMO="${DSA110_DEMO_DIR:-$ROOT/state/demo}"
mkdir -p "$DEMO/incoming"
# Start an hour ago, so that even the paced observations all lie in the past.
START="$(date -u -d '-70 minutes' +%Y-%m-%dT%H:%M:%S)"
dsa110-sim --output-dir "$DEMO/incoming" --n-observations 3 --start "$START" --no-gains
LATER="$(date -u -d "$START UTC + 927 seconds" +%Y-%m-%dT%H:%M:%S)"
dsa110-sim --output-dir "$DEMO/incoming" --n-observations 9 --start "$LATER" --realtime-factor 10 --no-gains \
  > "$DEMO/simulator.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
echo "Dagster UI: http://127.0.0.1:${DSA110_PORT:-3000}  (assets: subband_files -> measurement_set)"
dsa110-stream --input-dir "$DEMO/incoming" --output-dir "$DEMO/output" \
  --port "${DSA110_PORT:-3000}" --stable-seconds 2 "$@"
