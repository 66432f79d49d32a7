#!/usr/bin/env bash
# The embedded default: simulate DSA-110 observations and run the platform on them, with the
# Dagster UI at http://127.0.0.1:3000 (DSA110_PORT to change) and the source explorer at
# http://127.0.0.1:3001. Twelve observations of one hour
# of sky are written at ten times real time (one every ~31 s), the first one as 3C286 drifts
# through the beam: the platform solves its calibration there and carries it to the others,
# images and measures every observation, and mosaics each hour.
# State lives in ./state/demo (DSA110_DEMO_DIR to change). Ctrl-C stops everything.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
DEMO="${DSA110_DEMO_DIR:-$ROOT/state/demo}"
mkdir -p "$DEMO/incoming"
# The latest 3C286 transit at least two hours ago, so that the whole hour lies in the past.
START="$(date -u -d '-26 hours' +%Y-%m-%dT%H:%M:%S)"
dsa110-sim --output-dir "$DEMO/incoming" --n-observations 12 --start "$START" --calibrator 3C286 \
  --realtime-factor 10 > "$DEMO/simulator.log" 2>&1 &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
# the platform checks its reference catalogue before starting: the simulator writes it first
for _ in $(seq 120); do [ -s "$DEMO/incoming/sky_catalogue.csv" ] && break; sleep 0.5; done
echo "Dagster UI: http://127.0.0.1:${DSA110_PORT:-3000}   source explorer: http://127.0.0.1:3001"
dsa110-stream --input-dir "$DEMO/incoming" --output-dir "$DEMO/output" \
  --port "${DSA110_PORT:-3000}" --stable-seconds 2 --enable-calibration-solving \
  --enable-photometry --enable-mosaic-creation --mosaic-timeout 120 \
  --reference-catalogue "$DEMO/incoming/sky_catalogue.csv" --simulated "$@"
