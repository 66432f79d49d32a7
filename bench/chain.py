"""Whole-chain timing for one full-scale observation: conversion then imaging, against the
309 s between observations.

Simulates one full-scale observation (96 antennas, no antenna gains: calibration is not part
of this release, so the image is made from the visibilities as they are) under a scratch
directory, converts it with the streaming writer and images it with WSClean using the
platform's defaults (1024 x 12", Briggs 0.5, up to 1000 iterations), each step in this
process, and prints each step's time and the total against the cadence.

    python bench/chain.py [--scratch DIR] [--antennas 96]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    p.add_argument("--antennas", type=int, default=96)
    args = p.parse_args()

    from dsa_assets import constants as C
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.imaging import ImagingConfig, ImagingStage

    root = Path(tempfile.mkdtemp(prefix="dsa110-chain-", dir=args.scratch))
    try:
        t = time.perf_counter()
        group = CorrelatorSimulator(SimConfig(n_antennas=args.antennas, gains=False)).write_observation(
            root / "in", datetime(2026, 1, 15, 12, 0, 0, tzinfo=timezone.utc))
        print(f"simulated {args.antennas} antennas in {time.perf_counter() - t:.0f} s (not part of the chain)")
        os.sync()
        conversion = ConversionStage(ConversionConfig(output_dir=root / "out", scratch_dir=root / "scratch"))
        converted = conversion.execute(group_id=group.stamp, hdf5_files=group.files)
        imaging = ImagingStage(ImagingConfig(output_dir=root / "out", scratch_dir=root / "scratch"))
        imaged = imaging.execute(group_id=group.stamp, ms_path=converted.ms_path)
        steps = [("conversion", converted.wall_time_s), ("imaging", imaged.wall_time_s)]
        total = sum(s for _, s in steps)
        print(f"\n{'step':12s} {'seconds':>8s}")
        for name, seconds in steps:
            print(f"{name:12s} {seconds:8.1f}")
        print(f"{'total':12s} {total:8.1f}   = {total / C.OBSERVATION_CADENCE_S:.2f} of the {C.OBSERVATION_CADENCE_S:.0f} s cadence")
        print("imaging steps:", {k: round(v, 1) for k, v in imaged.timings_s.items()})
        m = imaged.metrics
        print(f"image rms {m['rms_jy'] * 1e3:.2f} mJy/beam ({m['rms_over_thermal']:.2f} x thermal), "
              f"peak {m['peak_jy']:.3f} Jy, dynamic range {m['dynamic_range']:.0f}")
        return 0 if total < C.OBSERVATION_CADENCE_S else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
