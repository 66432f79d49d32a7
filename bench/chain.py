"""Whole-chain timing for full-scale observations against the 309 s between observations:
conversion, calibration and imaging.

Simulates a full-scale 3C286 transit (96 antennas, injected gains and bandpasses) under a
scratch directory, then runs each step in this process with the platform's defaults:
conversion (streaming writer); the calibrator observation's solve (scratch copy, flagging,
model, K, B, G, applycal for the quality figures); the calibrated_ms step (scratch copy,
flagging, applycal); WSClean imaging of CORRECTED_DATA (2048 x 6", Briggs 0.5, up to 1000
iterations). Prints each step's time, and the totals for an ordinary observation (no solve)
and for the calibrator observation, against the cadence.

    python bench/chain.py [--scratch DIR] [--antennas 96]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    p.add_argument("--antennas", type=int, default=96)
    args = p.parse_args()

    from dsa_assets import calibrators
    from dsa_assets import constants as C
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_field
    from dsa_assets.stages.calibration import CalibrationConfig, CalibrationStage, SourceModel
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.imaging import ImagingConfig, ImagingStage

    root = Path(tempfile.mkdtemp(prefix="dsa110-chain-", dir=args.scratch))
    try:
        t = time.perf_counter()
        config, start = calibrator_field(SimConfig(n_antennas=args.antennas), "3C286",
                                         datetime(2026, 1, 15, tzinfo=UTC))
        group = CorrelatorSimulator(config).write_observation(root / "in", start)
        print(f"simulated {args.antennas} antennas in {time.perf_counter() - t:.0f} s (not part of the chain)")
        os.sync()
        out, scratch = root / "out", root / "scratch"
        converted = ConversionStage(ConversionConfig(output_dir=out, scratch_dir=scratch)).execute(
            group_id=group.stamp, hdf5_files=group.files)
        calibration = CalibrationStage(CalibrationConfig(output_dir=out, scratch_dir=scratch))
        model = [SourceModel.from_calibrator(calibrators.by_name("3C286"))]
        solved = calibration.execute_solve(group.stamp, converted.ms_path, model)
        applied = calibration.execute_apply(group.stamp, converted.ms_path, solved)
        imaging = ImagingStage(ImagingConfig(output_dir=out, scratch_dir=scratch))
        imaged = imaging.execute(group_id=group.stamp, ms_path=applied.ms_path)
        steps = [("conversion", converted.wall_time_s), ("calibrated_ms", sum(applied.timings_s.values())),
                 ("imaging", imaged.wall_time_s)]
        solve_s = sum(solved.timings_s.values())
        total = sum(s for _, s in steps)
        print(f"\n{'step':16s} {'seconds':>8s}")
        for name, seconds in steps:
            print(f"{name:16s} {seconds:8.1f}")
        print(f"{'total':16s} {total:8.1f}   = {total / C.OBSERVATION_CADENCE_S:.2f} of the "
              f"{C.OBSERVATION_CADENCE_S:.0f} s cadence (an ordinary observation)")
        print(f"{'+ solve':16s} {solve_s:8.1f}   -> {total + solve_s:.1f} s = "
              f"{(total + solve_s) / C.OBSERVATION_CADENCE_S:.2f} of the cadence (a calibrator observation)")
        print("solve steps:", {k: round(v, 1) for k, v in solved.timings_s.items()})
        print("calibrated_ms steps:", {k: round(v, 1) for k, v in applied.timings_s.items()})
        print("imaging steps:", {k: round(v, 1) for k, v in imaged.timings_s.items()})
        q = solved.quality
        print(f"solution: G median SNR {q.tables['G'].median_snr:.0f}, calibrated flux / model "
              f"{q.flux_ratio:.4f}, phase scatter {q.phase_scatter_deg:.2f} deg, "
              f"flagged {solved.flags.fraction_after:.3f}")
        m = imaged.metrics
        print(f"image rms {m['rms_jy'] * 1e3:.2f} mJy/beam ({m['rms_over_thermal']:.2f} x thermal), "
              f"peak {m['peak_jy']:.3f} Jy, dynamic range {m['dynamic_range']:.0f}")
        return 0 if total + solve_s < C.OBSERVATION_CADENCE_S else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
