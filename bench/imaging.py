"""Flux scale across the field, and imaging time, for image pixel sizes, WSClean's gridders and
baseline averaging.

Simulates one noiseless observation without gains (full scale by default: 96 antennas, 24
integrations, 768 channels) whose sky is a ring of 0.3 Jy sources at offsets 0 to 1.6 deg
from the pointing (four position angles each, so that the sources fall at assorted places
within their pixels; the images reach 1.71 deg along their axes). Converts it, then images
the DATA column once per setting with the platform's imaging stage and measures every source
with its forced photometry (primary-beam corrected). Prints, per setting, the imaging time, the
restoring beam, the largest |value| more than three beams from every source (what the imager
made where the data hold nothing), and the measured over true flux at each offset (mean, and
the spread over the sources at that offset): any departure from 1 is the imager's, since the
data are exact.

``--compare pixels`` (default) compares pixel sizes and baseline averaging at the default
gridder; ``--compare gridders`` the gridders, padding, baseline averaging, weighting and
sub-bands deconvolved jointly; ``--rows`` runs some of a comparison's rows (numbered from 0).

    python bench/imaging.py [--scratch DIR] [--antennas 96] [--integrations 24] [--compare pixels] [--dec-deg D]
                            [--rows 1,6]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

OFFSETS_DEG = (0.0, 0.4, 0.8, 1.0, 1.2, 1.4, 1.5, 1.6)
FLUX_JY = 0.3
PIXEL_SETTINGS = (  # pixel size and baseline averaging, the same field of view (3.4 deg)
    {"cell_arcsec": 12.0, "size": 1024, "baseline_averaging_wavelengths": 10.0},
    {"cell_arcsec": 6.0, "size": 2048, "baseline_averaging_wavelengths": 10.0},
    {"cell_arcsec": 6.0, "size": 2048, "baseline_averaging_wavelengths": 4.0},
    {"cell_arcsec": 6.0, "size": 2048, "baseline_averaging_wavelengths": 0.0},
)
GRIDDER_SETTINGS = (  # departures from the platform's defaults (the second row)
    {"padding": 1.2},
    {},
    {"gridder": "wstacking"},
    {"gridder": "wstacking", "padding": 1.2},
    {"baseline_averaging_wavelengths": 0.0},
    {"weighting": "natural"},
    {"channels_out": 4},
)


def ring_sources(centre_ra_deg: float, centre_dec_deg: float):
    """Two sources per offset, at position angles spread so that no two overlap."""
    from dsa_assets.sim.sky import PointSource

    sources = []
    for i, offset in enumerate(OFFSETS_DEG):
        for j, pa in enumerate(25.0 + 40.0 * i + 90.0 * k for k in range(4)):
            if offset == 0.0 and j:
                continue
            d_dec = offset * np.cos(np.radians(pa))
            d_ra = offset * np.sin(np.radians(pa)) / np.cos(np.radians(centre_dec_deg + d_dec))
            # flat spectrum: the truth is the same at every channel
            sources.append(PointSource(f"R{offset:.1f}-{j}", (centre_ra_deg + d_ra) % 360.0, centre_dec_deg + d_dec,
                                       FLUX_JY, 0.0))
    return sources


def largest_away_from_sources(image_path: Path, sources, beams: float = 3.0) -> float:
    """The largest |value| (Jy/beam) of a restored image farther than ``beams`` restoring-beam
    major axes from every source: what the imager made where the exact data hold nothing."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(image_path) as hdul:
        header, image = hdul[0].header, hdul[0].data.squeeze()
    x, y = WCS(header).celestial.world_to_pixel_values([s.ra_deg for s in sources], [s.dec_deg for s in sources])
    radius = beams * header["BMAJ"] / abs(header["CDELT2"])
    yy, xx = np.indices(image.shape)
    away = np.isfinite(image)
    for xs, ys in zip(x, y):
        away &= (xx - xs) ** 2 + (yy - ys) ** 2 > radius ** 2
    return float(np.max(np.abs(image[away])))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    p.add_argument("--antennas", type=int, default=96)
    p.add_argument("--integrations", type=int, default=24)
    p.add_argument("--compare", choices=("pixels", "gridders"), default="pixels")
    p.add_argument("--dec-deg", type=float, help="pointing declination (default: the platform's, "
                   "+54.6 deg; the w-terms grow with the zenith angle, 17 deg there)")
    p.add_argument("--rows", help="comma-separated row numbers of the comparison (default: all)")
    args = p.parse_args()
    n_rows = len(PIXEL_SETTINGS if args.compare == "pixels" else GRIDDER_SETTINGS)
    try:
        rows = [int(n) for n in args.rows.split(",")] if args.rows else list(range(n_rows))
    except ValueError:
        p.error(f"--rows: comma-separated numbers, got {args.rows!r}")
    if any(not 0 <= n < n_rows for n in rows):
        p.error(f"--rows: --compare {args.compare} has rows 0 to {n_rows - 1}")

    from astropy.time import Time

    from dsa_assets import constants as C
    from dsa_assets import geometry
    from dsa_assets.catalogue import CatalogueSource
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.imaging import ImagingConfig, ImagingStage
    from dsa_assets.stages.photometry import PhotometryStage

    root = Path(tempfile.mkdtemp(prefix="dsa110-imaging-", dir=args.scratch))
    try:
        start = datetime(2026, 4, 1, 9, 21, 9, tzinfo=UTC)
        mid = Time(start + timedelta(seconds=args.integrations * C.INTEGRATION_TIME_S / 2))
        dec_rad = C.DEFAULT_POINTING_DEC_RAD if args.dec_deg is None else np.radians(args.dec_deg)
        centre = geometry.meridian_icrs(dec_rad, mid, geometry.default_site())
        sources = ring_sources(centre.ra.deg, centre.dec.deg)
        config = SimConfig(n_antennas=args.antennas, n_integrations=args.integrations, sources=tuple(sources),
                           noise=False, gains=False, timestamp_jitter=False, pointing_dec_rad=dec_rad)
        group = CorrelatorSimulator(config).write_observation(root / "in", start)
        ms = ConversionStage(ConversionConfig(output_dir=root / "out", scratch_dir=root / "scratch")).execute(
            group_id=group.stamp, hdf5_files=group.files).ms_path
        catalogue = [CatalogueSource(s.name, s.ra_deg, s.dec_deg, s.flux_jy) for s in sources]
        print(f"{args.antennas} antennas, {args.integrations} integrations, Dec {np.degrees(dec_rad):+.1f} deg; "
              f"{len(sources)} sources of "
              f"{FLUX_JY} Jy; measured / true flux by offset from the pointing (deg)")
        print("pixel(\")  gridder    padding  BDA(lambda)  weighting  bands  time(s)  beam(\")   away(mJy)  "
              + "  ".join(f"{o:11.1f}" for o in OFFSETS_DEG))
        for n in rows:
            setting = (PIXEL_SETTINGS if args.compare == "pixels" else GRIDDER_SETTINGS)[n]
            stage = ImagingStage(ImagingConfig(output_dir=root / f"images-{n}", scratch_dir=root / "scratch",
                                               data_column="DATA", **setting))
            t = time.perf_counter()
            result = stage.execute(group_id=group.stamp, ms_path=ms)
            seconds = time.perf_counter() - t
            files = result.images
            measured = PhotometryStage().execute_observation(files["image"], files["residual"], files["pb"], catalogue,
                                                                  psf=files["psf"])
            ratio = {o: [] for o in OFFSETS_DEG}
            for m in measured.forced():
                ratio[float(m.source[1:4])].append(m.flux_jy / FLUX_JY)
            cells = "  ".join(f"{np.mean(ratio[o]):5.3f}±{np.std(ratio[o]):.3f}" if ratio[o] else "     -     "
                              for o in OFFSETS_DEG)
            c = stage.config
            away = largest_away_from_sources(files["image"], sources)
            beam = f"{result.metrics['beam_major_arcsec']:.0f}x{result.metrics['beam_minor_arcsec']:.0f}"
            print(f"{c.cell_arcsec:8g}  {c.gridder:10s} {c.padding:7.1f}  {c.baseline_averaging_wavelengths:11g}  "
                  f"{c.weighting:9s}  {c.channels_out:5d}  {seconds:7.1f}  {beam:8s}  {away * 1e3:9.2f}  {cells}", flush=True)
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
