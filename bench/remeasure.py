"""Re-measure a finished run's observation images with this release's photometry, and report
what its light curves of constant sources would say: false variables, pulls against the
simulated truth, measurements flagged (``blend``, ``low_beam``: left out of light curves), time
per image.

A run of ``bench/false_variables.py`` (``--root``) keeps each variant's simulation (``in/``:
the truth catalogue) and products (``out/``: images, products database). Its imaging is
untouched here: forced photometry is repeated at every catalogue source in every observation
image, as the ``photometry`` asset does (a backfill of that asset over the run's partitions
does the same in the product), and the light curves are judged with the variability table's
thresholds. Every source is constant, so every variable is a false one. Images the run marked
``bad_image`` stay out, as they do from its light curves. With ``--baseline PYTHONPATH``
(another checkout's root) the same images are re-measured with that release's photometry too,
so two releases are compared on the same pixels. With ``--mosaics`` the run's hourly mosaics are
re-measured instead, as ``mosaic_photometry`` does.

    python bench/remeasure.py /scratch/day/a-team-peeling [--baseline /path/to/older/checkout]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path


def measure_run(run: Path, pb_cutoff: float | None = None, kind: str = "observation") -> dict:
    """Per observation image (or hourly mosaic, ``kind``) not marked ``bad_image``: its forced
    measurements (source, flux (Jy), error (Jy), flags) and the photometry's time (s); with
    ``pb_cutoff``, positions where an observation's primary beam is below it are not measured
    (default: the photometry's own cutoff)."""
    import warnings

    from dsa_assets import catalogue, naming
    from dsa_assets.products import ProductsDB, images
    from dsa_assets.stages.photometry import PhotometryConfig, PhotometryStage

    warnings.filterwarnings("ignore")  # photutils: an image without detections above the threshold
    db = ProductsDB(run / "out" / "state" / "products.sqlite3", read_only=True)
    sky = catalogue.read(run / "in" / "sky_catalogue.csv")
    stage = PhotometryStage(PhotometryConfig() if pb_cutoff is None else PhotometryConfig(pb_cutoff=pb_cutoff))
    out = {}
    for image in db.rows(images):
        quality = db.image_quality(image["image_id"])
        if image["kind"] != kind or (quality and quality["problems"]):
            continue
        t0 = time.perf_counter()
        if kind == "mosaic":
            files = naming.mosaic_files(run / "out", image["partition_key"])
            result = stage.execute_mosaic(files["image"], files["noise"], sky, files["residual"], files["psf"],
                                          files["weight"])
        else:
            files = naming.image_files(run / "out", image["image_id"])
            result = stage.execute_observation(files["image"], files["residual"], files["pb"], sky, psf=files["psf"])
        out[image["image_id"]] = {"seconds": time.perf_counter() - t0,
                                  "forced": [(m.source, m.flux_jy, m.flux_err_jy, m.flags) for m in result.forced()]}
    return out


def summarise(name: str, measured: dict, truth: dict) -> None:
    import numpy as np

    from dsa_assets import variability
    from dsa_assets.qa import UNRELIABLE_FLAGS

    curves, pulls, flagged, total = defaultdict(list), [], dict.fromkeys(UNRELIABLE_FLAGS, 0), 0
    for image in measured.values():
        for source, flux, err, flags in image["forced"]:
            total += 1
            for flag in flagged:
                flagged[flag] += flag in flags
            if any(flag in flags for flag in flagged):
                continue
            curves[source].append((flux, err))
            pulls.append((flux - truth[source]) / err)
    pulls = np.array(pulls)
    thresholds = variability.table_thresholds(len(curves))
    variables = []
    for source, points in curves.items():
        if len(points) > 1:
            flux, err = np.array(points).T
            m = variability.metrics(flux, err, thresholds)
            if m.variable:
                variables.append(f"{source} ({truth[source] * 1e3:.1f} mJy: eta {m.eta:.1f}, Vs {m.vs:.1f})")
    robust = 1.4826 * np.median(np.abs(pulls - np.median(pulls)))
    counts = ", ".join(f"{n} {flag} ({n / max(total, 1):.2%})" for flag, n in flagged.items())
    print(f"{name}: {len(measured)} images, {total} forced measurements, {counts}; "
          f"{len(curves)} light curves, {len(variables)} variable ({len(variables) / max(len(curves), 1):.3%})")
    print(f"    pulls: std {pulls.std():.3f}, robust {robust:.3f}, beyond 4 sigma {np.mean(np.abs(pulls) > 4) * 1e4:.2f} "
          f"per 10^4 (Gaussian 0.63), beyond 5 sigma {int(np.sum(np.abs(pulls) > 5))}; photometry "
          f"{np.median([i['seconds'] for i in measured.values()]):.1f} s per image (median)")
    for v in variables[:12]:
        print(f"    variable {v}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a variant's directory of a false_variables.py run (with in/ and out/)")
    p.add_argument("--baseline", help="the root of another checkout whose photometry is compared on the same images")
    p.add_argument("--pb-cutoff", type=float, help="measure only where the primary beam is at least this (this "
                   "release's photometry; default: its own cutoff)")
    p.add_argument("--mosaics", action="store_true", help="re-measure the run's hourly mosaics instead of its "
                   "observation images (their pulls and flags; mosaics make no light curves)")
    p.add_argument("--dump", help=argparse.SUPPRESS)  # where a baseline's child process writes its measurements
    args = p.parse_args()
    run = Path(args.run)
    if not (run / "out" / "state" / "products.sqlite3").exists() or not (run / "in" / "sky_catalogue.csv").exists():
        p.error(f"{run} holds no finished run (in/sky_catalogue.csv, out/state/products.sqlite3)")
    if args.dump:
        Path(args.dump).write_text(json.dumps(measure_run(run, kind="mosaic" if args.mosaics else "observation")))
        return 0
    from dsa_assets import catalogue

    truth = {s.name: s.flux_jy for s in catalogue.read(run / "in" / "sky_catalogue.csv")}
    if args.baseline:  # this script, importing the other checkout's package
        dump = run / "remeasure-baseline.json"
        env = {**os.environ, "PYTHONPATH": str(Path(args.baseline).resolve())}
        subprocess.run([sys.executable, __file__, str(run), "--dump", str(dump)] + ["--mosaics"] * args.mosaics,
                       env=env, check=True)
        summarise(f"baseline ({args.baseline})", json.loads(dump.read_text()), truth)
        dump.unlink()
    summarise("this release" + (f", primary beam cutoff {args.pb_cutoff:g}" if args.pb_cutoff is not None else ""),
              measure_run(run, args.pb_cutoff, "mosaic" if args.mosaics else "observation"), truth)
    return 0


if __name__ == "__main__":
    if "--dump" not in sys.argv:  # a baseline's measurements import its checkout's package (PYTHONPATH)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
