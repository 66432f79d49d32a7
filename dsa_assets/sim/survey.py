"""A simulated survey's products database: a field measured at every transit for months, for
the source explorer, its tests and its benchmark, without a year of imaging.

Sources sit within 0.6 deg of (150, +55); each day (90% of days) the field is imaged
``per_day`` times 309 s apart. Every image row points at one small FITS image of the field
(the sources as beams on noise), so cut-outs are real. The light curves hold constant sources,
a flaring one, an extreme scattering event, bad images (every 37th, 40% low, flagged
``bad_image``), and a transient absent from the catalogue that appears on the last day. Then
the variability stage computes every source's statistics, as the variability asset does.

Fluxes in Jy, times Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import catalogue, ese

DAY_S = 86400.0
CENTRE = (150.0, 55.0)


@dataclass(frozen=True)
class Survey:
    db_path: Path
    image_path: Path
    names: list[str]
    flaring: str
    ese_source: str
    transient: str
    """Name of the uncatalogued source the last day's detections began."""
    n_epochs: int


def _field_image(path: Path, sources: list, size: int = 256, cell_arcsec: float = 20.0, beam_arcsec: float = 60.0,
                 rms_jy: float = 0.001, seed: int = 0) -> None:
    from astropy.io import fits
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = list(CENTRE)
    wcs.wcs.crpix = [size / 2 + 1, size / 2 + 1]
    wcs.wcs.cdelt = [-cell_arcsec / 3600, cell_arcsec / 3600]
    rng = np.random.default_rng(seed)
    data = rng.normal(0, rms_jy, (size, size))
    ys, xs = np.mgrid[:size, :size]
    sigma = beam_arcsec / cell_arcsec / 2.3548
    for s in sources:
        x, y = wcs.world_to_pixel_values(s.ra_deg, s.dec_deg)
        data += s.flux_jy * np.exp(-0.5 * ((xs - x) ** 2 + (ys - y) ** 2) / sigma**2)
    header = wcs.to_header()
    header.update(BMAJ=beam_arcsec / 3600, BMIN=beam_arcsec / 3600, BPA=0.0, BUNIT="JY/BEAM")
    fits.writeto(path, data.astype(np.float32), header, overwrite=True)


def write_survey(directory: Path, days: int = 365, n_sources: int = 40, per_day: int = 7, seed: int = 0,
                 start_unix: float = 1.8e9) -> Survey:
    """Write ``directory``/products.sqlite3 and the field image; returns what was put in."""
    from ..products import ProductsDB
    from ..stages.variability import VariabilityConfig, VariabilityStage

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    r = 0.6 * np.sqrt(rng.uniform(0, 1, n_sources))
    phi = rng.uniform(0, 2 * np.pi, n_sources)
    dec = CENTRE[1] + r * np.sin(phi)
    ra = CENTRE[0] + r * np.cos(phi) / np.cos(np.radians(dec))
    flux = 0.01 * rng.uniform(0, 1, n_sources) ** (-1 / 0.9)
    sources = [catalogue.CatalogueSource(catalogue.iau_name(a, d, "SIM"), float(a), float(d), float(min(f, 2.0)))
               for a, d, f in zip(ra, dec, flux)]
    image = directory / "field.fits"
    _field_image(image, sources)
    db = ProductsDB(directory / "products.sqlite3")
    db.record_catalogue(sources)
    flaring, ese_source = sources[0].name, sources[1].name
    observed = np.flatnonzero(rng.uniform(size=days) < 0.9)
    times = np.concatenate([start_unix + d * DAY_S + 309.0 * np.arange(per_day) for d in observed])
    t_flare, t_ese = times[len(times) // 3], times[2 * len(times) // 3]
    ese_factor = ese.injected(times, t_ese, 30.0, 0.3)
    transient = (float(ra[2] + 0.2), float(dec[2]))
    last_day = np.floor(times[-1] / DAY_S)
    for k, t in enumerate(times):
        bad = k % 37 == 36
        rows = []
        for s in sources:
            factor = 1.0
            if s.name == flaring:
                factor += 2.0 * np.exp(-0.5 * ((t - t_flare) / (3 * DAY_S)) ** 2)
            elif s.name == ese_source:
                factor = ese_factor[k]
            err = float(np.hypot(0.001, 0.03 * s.flux_jy))
            value = s.flux_jy * factor * (0.6 if bad else 1.0) + rng.normal(0, err)
            rows.append({"source_name": s.name, "epoch_unix": float(t), "kind": "forced", "flux_jy": float(value),
                         "flux_err_jy": err, "local_rms_jy": 0.001, "snr": float(value / err),
                         "flags": "bad_image" if bad else ""})
        detected = []
        if np.floor(t / DAY_S) == last_day:
            detected.append({"source_name": None, "ra_deg": transient[0] + rng.normal(0, 1) / 3600,
                             "dec_deg": transient[1] + rng.normal(0, 1) / 3600, "ra_err_arcsec": 3.0, "dec_err_arcsec": 3.0,
                             "flux_jy": 0.05, "flux_err_jy": 0.002, "local_rms_jy": 0.001, "snr": 25.0, "flags": "",
                             "new": True})
        image_id = f"obs{k:06d}"
        db.record_photometry({"image_id": image_id, "kind": "observation", "partition_key": image_id, "path": str(image),
                              "epoch_unix": float(t), "centre_ra_deg": CENTRE[0], "centre_dec_deg": CENTRE[1],
                              "radius_deg": 0.7, "rms_jy": 0.001, "beam_major_arcsec": 60.0, "beam_minor_arcsec": 60.0,
                              "beam_pa_deg": 0.0, "n_inputs": 1}, rows, detected,
                             quality={"problems": "flux scale 0.60" if bad else ""}, max_separation_arcsec=90.0)
    result = VariabilityStage(VariabilityConfig(directory / "products")).execute(db)
    db.record_source_statistics(result.statistics_rows())
    (found,) = [s["name"] for s in db.new_sources()]
    return Survey(directory / "products.sqlite3", image, [s.name for s in sources], flaring, ese_source, found, len(times))
