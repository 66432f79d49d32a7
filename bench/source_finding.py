"""Blind source finders compared on synthetic images with known sources: photutils (what the
platform uses), Aegean (AegeanTools) and PyBDSF (bdsf), when installed.

Each image is 1024 x 1024 pixels of 12" with a 25" x 20" restoring beam, noise correlated like
the beam (1 mJy/beam), and ``--sources`` point sources with peak signal-to-noise log-uniform
between 3 and 100. A detection matches a source within the beam's major axis. Reported per
finder: completeness above 5 and 10 sigma, false detections (no source within half a beam),
median detected / true peak flux, and time per image.

    pip install aegeantools bdsf     # optional, for the comparison only
    python bench/source_finding.py [--images 3] [--sources 150] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIGMA = 1e-3


def make_image(directory: Path, rng, n_sources: int, size=1024, cell_arcsec=12.0):
    from astropy.io import fits
    from astropy.wcs import WCS

    from dsa_assets.sim.images import beam_correlated_noise, image_header
    from dsa_assets.stages.photometry import beam_kernel

    header = image_header(size, cell_arcsec, 25.0, 20.0, 20.0)
    w = WCS(header).celestial
    noise = beam_correlated_noise(header, (size, size), SIGMA, rng)
    ys, xs = np.mgrid[0:size, 0:size]
    x, y = rng.uniform(30, size - 30, (2, n_sources))
    peak = SIGMA * np.exp(rng.uniform(np.log(3), np.log(100), n_sources))
    image = noise.copy()
    for xi, yi, p in zip(x, y, peak):
        sl = (slice(int(yi) - 12, int(yi) + 13), slice(int(xi) - 12, int(xi) + 13))
        image[sl] += p * beam_kernel(header, xi, yi, xs[sl], ys[sl])
    ra, dec = w.pixel_to_world_values(x, y)
    path = directory / "image.fits"
    fits.writeto(path, image.astype(np.float32), header, overwrite=True)
    fits.writeto(directory / "rms.fits", np.full((size, size), SIGMA, np.float32), header, overwrite=True)
    fits.writeto(directory / "bkg.fits", np.zeros((size, size), np.float32), header, overwrite=True)
    return path, np.array(ra), np.array(dec), peak


def photutils_finder(path: Path, directory: Path):
    from astropy.io import fits

    from dsa_assets.stages.photometry import ImagePlanes, PhotometryConfig, measure

    header = fits.getheader(path)
    planes = ImagePlanes(fits.getdata(path).astype(float), fits.getdata(directory / "rms.fits").astype(float), header)
    # the finder alone: no survey rule (the edge margin) between it and Aegean or PyBDSF
    found = measure(planes, [], PhotometryConfig(detect_snr=5.0, edge_margin_deg=0.0)).blind()
    return [(m.ra_deg, m.dec_deg, m.flux_jy) for m in found]


def aegean_finder(path: Path, directory: Path):
    from AegeanTools.source_finder import SourceFinder

    found = SourceFinder().find_sources_in_image(str(path), innerclip=5, outerclip=4,
                                                 rmsin=str(directory / "rms.fits"), bkgin=str(directory / "bkg.fits"))
    return [(s.ra, s.dec, s.peak_flux) for s in found]


def pybdsf_finder(path: Path, directory: Path):
    import bdsf

    img = bdsf.process_image(str(path), thresh_isl=4.0, thresh_pix=5.0, rms_map=False, mean_map="zero", frequency=1.4e9,
                             rms_value=SIGMA, quiet=True, ncores=1)
    return [(s.posn_sky_centroid[0], s.posn_sky_centroid[1], s.peak_flux_max) for s in img.sources]


FINDERS = {"photutils": photutils_finder, "aegean": aegean_finder, "pybdsf": pybdsf_finder}


def score(found, ra, dec, peak, beam_deg=25 / 3600):
    from dsa_assets.catalogue import separation_deg

    class P:
        def __init__(self, r, d):
            self.ra_deg, self.dec_deg = r, d

    truth = [P(r, d) for r, d in zip(ra, dec)]
    matched_truth, false, ratios = set(), 0, []
    for r, d, f in found:
        sep = separation_deg(truth, r, d)
        k = int(np.argmin(sep))
        if sep[k] <= beam_deg:
            matched_truth.add(k)
            ratios.append(f / peak[k])
        else:
            false += 1
    snr = peak / SIGMA
    complete = {lim: np.mean([k in matched_truth for k in np.flatnonzero(snr > lim)]) for lim in (5, 10)}
    return complete, false, ratios


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=3)
    p.add_argument("--sources", type=int, default=150)
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dsa110-finders-", dir=args.scratch))
    rng = np.random.default_rng(3)
    try:
        results = {name: {"c5": [], "c10": [], "false": 0, "ratios": [], "s": 0.0} for name in FINDERS}
        for _ in range(args.images):
            path, ra, dec, peak = make_image(root, rng, args.sources)
            for name, finder in FINDERS.items():
                try:
                    t = time.perf_counter()
                    found = finder(path, root)
                    results[name]["s"] += time.perf_counter() - t
                except ImportError:
                    results[name] = None
                    continue
                if results[name] is None:
                    continue
                complete, false, ratios = score(found, ra, dec, peak)
                results[name]["c5"].append(complete[5])
                results[name]["c10"].append(complete[10])
                results[name]["false"] += false
                results[name]["ratios"] += ratios
        print(f"{args.images} images x {args.sources} sources, 1024^2 pixels, noise {SIGMA * 1e3:.0f} mJy/beam\n")
        print(f"{'finder':10s} {'>5 sigma':>9s} {'>10 sigma':>10s} {'false':>6s} {'peak ratio':>11s} {'s/image':>8s}")
        for name, r in results.items():
            if r is None:
                print(f"{name:10s} not installed")
                continue
            print(f"{name:10s} {np.mean(r['c5']):9.3f} {np.mean(r['c10']):10.3f} {r['false']:6d} "
                  f"{np.median(r['ratios']):11.3f} {r['s'] / args.images:8.1f}")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
