"""Reference catalogues: the sky the platform expects to see.

A catalogue is a CSV file with a header row and the columns

    name, ra_deg, dec_deg, flux_jy, spectral_index

(ICRS degrees; flux density in Jy at 1.4 GHz; S ~ nu^spectral_index, -0.7 when the column is
empty or absent). NVSS- or RACS-like catalogues convert to it with one line of pandas. The
simulator writes its sky in this format (``sky_catalogue.csv`` beside the subbands); the
calibration model takes the field sources around a calibrator from it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLUMNS = ("name", "ra_deg", "dec_deg", "flux_jy", "spectral_index")
DEFAULT_SPECTRAL_INDEX = -0.7


@dataclass(frozen=True)
class CatalogueSource:
    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    spectral_index: float = DEFAULT_SPECTRAL_INDEX


def write(path: Path | str, sources) -> None:
    """Write ``sources`` (anything with the columns as attributes) atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for s in sources:
            w.writerow([s.name, f"{s.ra_deg:.6f}", f"{s.dec_deg:.6f}", f"{s.flux_jy:.5f}", f"{s.spectral_index:.4f}"])
    tmp.replace(path)


def read(path: Path | str) -> list[CatalogueSource]:
    """Read a catalogue; raises ValueError naming the file when a required column is missing."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"name", "ra_deg", "dec_deg", "flux_jy"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: catalogue lacks column(s) {sorted(missing)}")
        return [CatalogueSource(r["name"], float(r["ra_deg"]), float(r["dec_deg"]), float(r["flux_jy"]),
                                float(r.get("spectral_index") or DEFAULT_SPECTRAL_INDEX)) for r in reader]


def separation_deg(sources, ra_deg: float, dec_deg: float) -> np.ndarray:
    """Angular distance (deg) of each source from (ra_deg, dec_deg)."""
    if not len(sources):
        return np.zeros(0)
    ra = np.radians([s.ra_deg for s in sources])
    dec = np.radians([s.dec_deg for s in sources])
    r0, d0 = np.radians(ra_deg), np.radians(dec_deg)
    c = np.sin(dec) * np.sin(d0) + np.cos(dec) * np.cos(d0) * np.cos(ra - r0)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def within(sources, ra_deg: float, dec_deg: float, radius_deg: float) -> list:
    """The sources within ``radius_deg`` of (ra_deg, dec_deg)."""
    sep = separation_deg(sources, ra_deg, dec_deg)
    return [s for s, d in zip(sources, sep) if d <= radius_deg]
