"""Whole-chain timing for full-scale observations against the 309 s between observations:
conversion, calibration and imaging.

Simulates a full-scale 3C286 transit (96 antennas, injected gains and bandpasses) under a
scratch directory, then runs each step in this process with the platform's defaults:
conversion (streaming writer); the calibrator observation's solve (scratch copy, flagging,
model, K, B, G, applycal for the quality figures); the calibrated_ms step of the calibrator
observation (the solve's flagged copy, applycal) and of an ordinary one (scratch copy,
flagging, applycal); WSClean imaging of the calibrated data (2048 x 6", Briggs 0.5, up to 1000
iterations). Prints each step's time, and the totals for an ordinary observation (no solve)
and for the calibrator observation, against the cadence; then the bytes each product takes at
rest, and what the retention policies keep per day.

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
        # the calibrator observation's calibrated copy reuses the solve's flags; applied again,
        # with nothing kept from a solve, it is an ordinary observation's: copy, flag, applycal
        applied_calibrator = calibration.execute_apply(group.stamp, converted.ms_path, solved)
        applied = calibration.execute_apply(group.stamp, converted.ms_path, solved)
        assert applied_calibrator.flags_reused and not applied.flags_reused
        imaging = ImagingStage(ImagingConfig(output_dir=out, scratch_dir=scratch))
        imaged = imaging.execute(group_id=group.stamp, ms_path=applied.ms_path)
        steps = [("conversion", converted.wall_time_s), ("calibrated_ms", sum(applied.timings_s.values())),
                 ("imaging", imaged.wall_time_s)]
        solve_s = sum(solved.timings_s.values())
        total = sum(s for _, s in steps)
        calibrator_total = total - steps[1][1] + sum(applied_calibrator.timings_s.values()) + solve_s
        print(f"\n{'step':16s} {'seconds':>8s}")
        for name, seconds in steps:
            print(f"{name:16s} {seconds:8.1f}")
        print(f"{'total':16s} {total:8.1f}   = {total / C.OBSERVATION_CADENCE_S:.2f} of the "
              f"{C.OBSERVATION_CADENCE_S:.0f} s cadence (an ordinary observation)")
        print(f"{'calibrator':16s} {calibrator_total:8.1f}   = {calibrator_total / C.OBSERVATION_CADENCE_S:.2f} of the "
              "cadence (a calibrator observation: the solve, and its calibrated copy from the solve's flags)")
        print("solve steps:", {k: round(v, 1) for k, v in solved.timings_s.items()})
        print("calibrated_ms steps:", {k: round(v, 1) for k, v in applied.timings_s.items()},
              "(calibrator observation:", {k: round(v, 1) for k, v in applied_calibrator.timings_s.items()}, ")")
        print("imaging steps:", {k: round(v, 1) for k, v in imaged.timings_s.items()})
        q = solved.quality
        print(f"solution: G median SNR {q.tables['G'].median_snr:.0f}, calibrated flux / model "
              f"{q.flux_ratio:.4f}, phase scatter {q.phase_scatter_deg:.2f} deg, "
              f"flagged {solved.flags.fraction_after:.3f}")
        m = imaged.metrics
        print(f"image rms {m['rms_jy'] * 1e3:.2f} mJy/beam ({m['rms_over_thermal']:.2f} x thermal), "
              f"peak {m['peak_jy']:.3f} Jy, dynamic range {m['dynamic_range']:.0f}")
        at_rest(group, converted, applied, solved, imaged)
        return 0 if calibrator_total < C.OBSERVATION_CADENCE_S else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


def mosaic_bytes(image_path: Path, windows_per_hour: int = 12) -> int:
    """Bytes of an hour's mosaic (its four full-grid float32 planes; the PSF is small): the grid
    that covers ``windows_per_hour`` images like ``image_path``, each 5 minutes of RA apart."""
    import numpy as np
    from astropy.io import fits
    from astropy.wcs import WCS
    from reproject.mosaicking import find_optimal_celestial_wcs

    header = fits.getheader(image_path)
    shape = (header["NAXIS2"], header["NAXIS1"])
    tiles = []
    for k in range(windows_per_hour):
        h = header.copy()
        h["CRVAL1"] = (header["CRVAL1"] + k * 1.25) % 360.0  # 5 min of sidereal time
        tiles.append((shape, WCS(h).celestial))
    _, (ny, nx) = find_optimal_celestial_wcs(tiles)
    return int(4 * ny * nx * np.dtype(np.float32).itemsize)


def at_rest(group, converted, applied, solved, imaged) -> None:
    """Bytes of each product class of one observation, and what the retention policies keep
    per day and in total (288 observations, 24 mosaics, ~2 calibrator solutions a day)."""
    from dsa_assets.fsutil import directory_size
    from dsa_assets.retention import PRODUCT_CLASSES, Policy, steady_state_bytes
    from resources.retention import RetentionResource

    per_product = {"subbands": sum(Path(f).stat().st_size for f in group.files),
                   "raw_ms": directory_size(converted.ms_path), "calibrated_ms": directory_size(applied.ms_path),
                   "caltables": directory_size(solved.directory),
                   "images": directory_size(imaged.images["image"].parent),
                   "mosaics": mosaic_bytes(imaged.images["image"])}
    per_day = {"subbands": 288, "raw_ms": 288, "calibrated_ms": 288, "caltables": 2, "images": 288, "mosaics": 24}
    print(f"\n{'at rest':16s} {'GB each':>8s} {'GB/day':>8s}")
    for c in PRODUCT_CLASSES:
        print(f"{c:16s} {per_product[c] / 1e9:8.3f} {per_product[c] * per_day[c] / 1e9:8.1f}")
    print(f"{'all':16s} {sum(per_product[c] for c in PRODUCT_CLASSES if c not in ('caltables', 'mosaics')) / 1e9:8.3f} "
          f"{sum(per_product[c] * per_day[c] for c in PRODUCT_CLASSES) / 1e9:8.1f}   (everything kept)")
    defaults = RetentionResource().policies()
    for label, policies in (("defaults", defaults),
                            ("keep everything", {c: Policy("forever") for c in PRODUCT_CLASSES})):
        for days in (7, 30, 365):
            held = steady_state_bytes(policies, per_product, per_day, days)
            print(f"{label} after {days:3d} d: {sum(held.values()) / 1e12:6.2f} TB  "
                  + ", ".join(f"{c} {v / 1e12:.2f}" for c, v in held.items() if v))
    print("(with the defaults, images and mosaics grow until the disk budget, 85% of the disk, "
          "removes the oldest)")


if __name__ == "__main__":
    sys.exit(main())
