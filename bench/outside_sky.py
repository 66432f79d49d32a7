"""What the sky outside the image does to it: one observation of the realistic sky (no A-team;
by default each dish's sidelobes 10% different from the model, so no subtraction is exact) at the
full array's image noise, imaged as observed and after subtracting, as predicted, the
sources outside the image above a range of apparent flux densities
(``peeling.subtract_predicted``, what ``--subtract-outside-above-jy`` does).

Prints per variant: sources subtracted, the time it took, the residual image's robust rms
(mJy/beam) and its ratio to the thermal noise. The last row subtracts every source, inside
the image too: the floor that noise and the imperfect models leave.

    python bench/outside_sky.py                   # 48 antennas, 8 integrations, 8 channels/subband
    python bench/outside_sky.py --antennas 20     # the demo's array
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

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

LEVELS_JY = (0.3, 0.03, 0.01, 0.003, 0.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--antennas", type=int, default=48)
    p.add_argument("--integrations", type=int, default=8)
    p.add_argument("--channels-per-subband", type=int, default=8)
    p.add_argument("--dec", type=float, default=55.0, help="pointing declination (deg)")
    p.add_argument("--seed", type=int, default=5)
    p.add_argument("--sidelobe-errors", type=float, default=0.1,
                   help="rms of each dish's own response in the sidelobes (the simulator's sidelobe_errors)")
    args = p.parse_args()

    from false_variables import full_array_sefd_jy  # the sibling bench, beside this file

    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.imaging import ImagingConfig, ImagingStage
    from dsa_assets.stages.peeling import PeelingConfig, _Observation, subtract_predicted
    from dsa_assets.stages.sky_model import SourceModel

    sefd = full_array_sefd_jy(args.antennas, 16 * args.channels_per_subband, args.integrations)
    config = SimConfig(n_antennas=args.antennas, n_integrations=args.integrations,
                       channels_per_subband=args.channels_per_subband, sky="realistic", a_team=False, gains=False,
                       pointing_dec_rad=np.radians(args.dec), seed=args.seed, timestamp_jitter=False,
                       sidelobe_errors=args.sidelobe_errors, sefd_jy=sefd)
    root = Path(tempfile.mkdtemp(prefix="bench-outside-sky-", dir=os.environ.get("DSA110_BENCH_DIR")))
    try:
        group = CorrelatorSimulator(config).write_observation(root / "hdf5", datetime(2026, 3, 1, 6, tzinfo=UTC))
        ms = ConversionStage(ConversionConfig(output_dir=root / "ms")).execute(group_id=group.stamp,
                                                                             hdf5_files=group.files).ms_path
        obs = _Observation.of(ms)
        models = [SourceModel(s.name, s.ra_deg, s.dec_deg, s.flux_jy, 1.4e9, s.spectral_index)
                  for s in group.truth.sources]
        inside = obs.in_image(models, PeelingConfig.image_half_width_deg)
        apparent = obs.apparent_jy(models)
        print(f"{args.antennas} antennas at SEFD {sefd:.0f} Jy (the full array's image noise), Dec {args.dec:+g}, "
              f"sidelobe errors {args.sidelobe_errors:g}: "
              f"{inside.sum()} sources in the image, {(~inside).sum()} outside it", flush=True)
        variants = [("as observed", [])]
        variants += [(f"outside above {level * 1e3:g} mJy subtracted" if level else "all outside subtracted",
                      [m for m, i, a in zip(models, inside, apparent) if not i and a > level]) for level in LEVELS_JY]
        variants.append(("everything subtracted (the floor)", models))
        imaging = ImagingStage(ImagingConfig(output_dir=root / "images", scratch_dir=root / "scratch", sefd_jy=sefd))
        print("\n| variant | subtracted | time (s) | residual rms (mJy/beam) | / thermal |\n|---|---|---|---|---|")
        for k, (label, picked) in enumerate(variants):
            work = root / f"variant{k}.ms"
            shutil.copytree(ms, work)
            t = time.perf_counter()
            subtract_predicted(work, picked)
            seconds = time.perf_counter() - t
            m = imaging.execute(group_id=f"2026-03-01T00:00:{k:02d}", ms_path=work).metrics
            print(f"| {label} | {len(picked)} | {seconds:.1f} | {m['rms_jy'] * 1e3:.3f} | {m['rms_over_thermal']:.2f} |",
                  flush=True)
            shutil.rmtree(work)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
