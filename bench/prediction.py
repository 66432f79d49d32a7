"""Model prediction's cost: MODEL_DATA for point sources (primary beam, time and bandwidth
smearing; :func:`dsa_assets.stages.sky_model.predict_model`, the step behind calibrator models,
peeling and the subtraction of the sky outside the image) on one observation, by number of
sources.

Prints per source count: wall time (s), time per source, nanoseconds per visibility and
source, and the share of the 309 s cadence the prediction takes (the subtraction outside the
image predicts ~40 sources per observation at full scale, peeling ~2 per source it peels).

    python bench/prediction.py                # full scale: 96 antennas, 24 integrations, 768 channels
    python bench/prediction.py --antennas 48 --channels-per-subband 16
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    ap.add_argument("--antennas", type=int, default=96)
    ap.add_argument("--channels-per-subband", type=int, default=48)
    ap.add_argument("--integrations", type=int, default=24)
    ap.add_argument("--sources", default="1,10,40", help="comma-separated source counts")
    args = ap.parse_args()

    from casacore.tables import table

    from dsa_assets import constants as C
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.sky_model import SourceModel, predict_model

    config = replace(SimConfig(), n_antennas=args.antennas, n_integrations=args.integrations,
                     channels_per_subband=args.channels_per_subband, sources=(), gains=False)
    root = Path(tempfile.mkdtemp(prefix="bench-prediction-", dir=args.scratch))
    try:
        t = time.perf_counter()
        group = CorrelatorSimulator(config).write_observation(root / "in", datetime(2026, 3, 1, tzinfo=UTC))
        ms = ConversionStage(ConversionConfig(output_dir=root / "ms")).execute(
            group_id=group.stamp, hdf5_files=group.files).ms_path
        with table(str(ms), ack=False) as tb:
            visibilities = tb.nrows() * tb.getcell("DATA", 0).shape[0]
        with table(str(ms / "FIELD"), ack=False) as tb:
            ra0, dec0 = np.degrees(tb.getcol("PHASE_DIR")[0, 0])
        print(f"simulated and converted {args.antennas} antennas, {args.integrations} integrations, "
              f"{16 * args.channels_per_subband} channels ({visibilities / 1e6:.0f} M visibilities): "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        rng = np.random.default_rng(1)
        counts = [int(n) for n in args.sources.split(",")]
        # the sky outside the image: 1.8-6 deg from the phase centre, in every direction
        radius, angle = rng.uniform(1.8, 6.0, max(counts)), rng.uniform(0, 2 * np.pi, max(counts))
        sources = [SourceModel(f"s{k}", ra0 + r * np.sin(a) / np.cos(np.radians(dec0)), dec0 + r * np.cos(a),
                               rng.uniform(0.1, 2.0), 1.4e9, -0.7) for k, (r, a) in enumerate(zip(radius, angle))]
        predict_model(ms, sources[:1])  # compiles the kernel (cached on disk after the first run)
        print("\n| sources | wall (s) | per source (s) | ns per visibility and source | of the 309 s cadence |")
        print("|---|---|---|---|---|")
        for n in counts:
            t = time.perf_counter()
            predict_model(ms, sources[:n])
            seconds = time.perf_counter() - t
            print(f"| {n} | {seconds:.1f} | {seconds / n:.2f} | {seconds / n / visibilities * 1e9:.1f} | "
                  f"{seconds / C.OBSERVATION_CADENCE_S:.1%} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
