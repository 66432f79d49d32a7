"""Peeling inside the image, observation by observation: the false-variable bench's sky
(``bench/false_variables.py``: 2203+626 solved, 20 antennas at the SEFD of the full array's
image noise, the realistic sky with the A-team) over three observations in which a 3.6 Jy
source drifts 0.6-1.2 deg from the beam centre (2.1-2.6 Jy apparent) beside a 3.0 Jy one.
The platform calibrates them with nothing subtracted (``dsa110-stream --once --no-peeling``);
then each variant of the peeling settings subtracts the sky from a copy
(:func:`dsa_assets.stages.peeling.subtract_sky`), which is imaged and searched as the platform
does.

Prints per variant and observation: the image's rms (mJy/beam), the uncatalogued detections
at 5 sigma or more (every one false: the catalogue is the simulated sky) and how many of them
lie within 0.5 deg of a source peeled inside the image, and the subtraction's time.

    python bench/field_peeling.py [--no-noise] [--variants default,"whole observation"]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

VARIANTS = {
    "default": {},
    "gains over the whole observation": {"solution_integrations": 10_000},
    "gains over the band": {"solution_bands": 1},
    "two passes": {"cycles": 2},
    "only the candidates in the gains' model": {"context_above_jy": np.inf},
    "nothing peeled inside the image": {"in_field_above_jy": np.inf},
}
FIRST = 6
"""The first observation after the calibrator's, 31 minutes later."""


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from false_variables import full_array_sefd_jy, pick_variants, run_platform, simulate

    from dsa_assets import catalogue
    from dsa_assets.stages import peeling
    from dsa_assets.stages.photometry import PhotometryStage
    from resources.calibration import CalibrationResource
    from resources.imaging import ImagingResource

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--no-noise", action="store_true", help="simulate without thermal noise (and gains)")
    p.add_argument("--first", type=int, default=FIRST, help="the first observation, counted from the calibrator's")
    args = p.parse_args()
    chosen = pick_variants(p, args.variants, VARIANTS)
    sefd = full_array_sefd_jy(20)
    root = Path(tempfile.mkdtemp(prefix="dsa110-field-peeling-", dir=args.scratch))
    try:
        flags = ["--no-noise", "--no-gains"] if args.no_noise else []
        simulate(root / "in", 3 * 309 / 3600, 20, sefd, flags, first=args.first)
        run_platform(root / "in", root / "out", ["--no-peeling"], root / "stream.log", sefd)
        sky = catalogue.read(root / "in" / "sky_catalogue.csv")
        calibrated = sorted((root / "out" / "calibrated").rglob("*.ms"))[1:]  # not the calibrator's
        imaging = ImagingResource(sefd_jy=sefd)
        levels = CalibrationResource().stage(root, root / "scratch", imaging.half_width_deg).config.peeling
        print(f"observations {', '.join(ms.stem for ms in calibrated)}; SEFD {sefd:.0f} Jy"
              f"{', no noise or gains' if args.no_noise else ''}")
        print("\n| variant | rms (mJy/beam) | uncatalogued >= 5 sigma (within 0.5 deg of a source peeled inside) "
              "| subtraction (s) |")
        print("|---|---|---|---|")
        for name in chosen:
            config = replace(levels, **VARIANTS[name])
            rms, found, seconds = [], [], []
            for ms in calibrated:
                work = root / "work" / ms.name
                shutil.copytree(ms, work)
                t = time.perf_counter()
                peeled, _, _ = peeling.subtract_sky(work, sky, "DATA", config)
                seconds.append(time.perf_counter() - t)
                image = imaging.stage(root / "images" / name, root / "scratch").execute(group_id=ms.stem, ms_path=work)
                files = image.images
                result = PhotometryStage().execute_observation(files["image"], files["residual"], files["pb"], sky)
                inside = [s for s in peeled if s.name in image.metrics["restored"]]
                uncatalogued = [m for m in result.blind() if m.matched is None and m.snr >= 5]
                near = sum(1 for m in uncatalogued if inside and catalogue.separation_deg(
                    inside, m.ra_deg, m.dec_deg).min() < 0.5)
                rms.append(image.metrics["rms_jy"] * 1e3)
                found.append(f"{len(uncatalogued)} ({near})")
                shutil.rmtree(work)
            print(f"| {name} | {' / '.join(f'{r:.2f}' for r in rms)} | {' / '.join(found)} | "
                  f"{' / '.join(f'{s:.0f}' for s in seconds)} |", flush=True)
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
