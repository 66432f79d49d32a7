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

from .exceptions import CatalogueError

COLUMNS = ("name", "ra_deg", "dec_deg", "flux_jy", "spectral_index")
DEFAULT_SPECTRAL_INDEX = -0.7


@dataclass(frozen=True)
class CatalogueSource:
    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    spectral_index: float = DEFAULT_SPECTRAL_INDEX
    position_error_arcsec: float | None = None
    """1-sigma position error per axis (arcsec); None: the photometry's catalogue default."""


def write(path: Path | str, sources) -> None:
    """Write ``sources`` (anything with the columns as attributes) atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for s in sources:
            w.writerow([s.name, f"{s.ra_deg:.6f}", f"{s.dec_deg:.6f}", f"{s.flux_jy:.6g}", f"{s.spectral_index:.4f}"])
    tmp.replace(path)


def read(path: Path | str) -> list[CatalogueSource]:
    """Read and check a catalogue. Refused with :class:`CatalogueError`, every problem listed
    with its line number (the header is line 1): a missing required column, an empty or
    repeated name (two sources would share one light curve), a value that is not a finite
    number, a position outside RA [0, 360) or Dec [-90, 90]."""
    try:
        with open(path, newline="") as fh:
            sources, problems = _read_rows(path, csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CatalogueError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise CatalogueError(f"{path}: {len(problems)} bad row(s): {shown}")
    return sources


def _read_rows(path, reader: csv.DictReader) -> tuple[list[CatalogueSource], list[str]]:
    missing = set(COLUMNS[:4]) - set(reader.fieldnames or ())
    if missing:
        raise CatalogueError(f"{path}: catalogue lacks column(s) {sorted(missing)} (line 1: {reader.fieldnames})")
    sources, problems, first_line = [], [], {}
    for row in reader:
        line = reader.line_num
        source, why = _parse_row(row)
        if why:
            problems.append(f"line {line}: {why}")
        elif source.name in first_line:
            problems.append(f"line {line}: name {source.name!r} repeats line {first_line[source.name]}")
        else:
            first_line[source.name] = line
            sources.append(source)
    return sources, problems


def _parse_row(row: dict) -> tuple[CatalogueSource | None, str | None]:
    """A row as a source, or why it is not one."""
    name = (row.get("name") or "").strip()
    if not name:
        return None, "empty name"
    values = {}
    for column in ("ra_deg", "dec_deg", "flux_jy", "spectral_index"):
        text = (row.get(column) or "").strip()
        if column == "spectral_index" and not text:
            values[column] = DEFAULT_SPECTRAL_INDEX
            continue
        try:
            values[column] = float(text)
        except ValueError:
            return None, f"{column} {text!r} is not a number"
        if not np.isfinite(values[column]):
            return None, f"{column} {text!r} is not finite"
    if not 0.0 <= values["ra_deg"] < 360.0:
        return None, f"ra_deg {values['ra_deg']} outside [0, 360)"
    if not -90.0 <= values["dec_deg"] <= 90.0:
        return None, f"dec_deg {values['dec_deg']} outside [-90, 90]"
    return CatalogueSource(name, **values), None


def iau_name(ra_deg: float, dec_deg: float, prefix: str) -> str:
    """``<prefix> Jhhmmss.s+ddmmss`` (ICRS degrees, truncated as the IAU recommends)."""
    t = int((ra_deg % 360.0) / 15.0 * 36000.0)
    h, m, ds = t // 36000, (t // 600) % 60, t % 600
    a = int(abs(dec_deg) * 3600.0)
    sign = "-" if dec_deg < 0 else "+"
    return f"{prefix} J{h:02d}{m:02d}{ds // 10:02d}.{ds % 10}{sign}{a // 3600:02d}{(a // 60) % 60:02d}{a % 60:02d}"


def separation_deg(sources, ra_deg: float, dec_deg: float) -> np.ndarray:
    """Angular distance (deg) of each source from (ra_deg, dec_deg)."""
    if not len(sources):
        return np.zeros(0)
    return angular_distance_deg([s.ra_deg for s in sources], [s.dec_deg for s in sources], ra_deg, dec_deg)


def angular_distance_deg(ra_deg, dec_deg, ra0_deg: float, dec0_deg: float) -> np.ndarray:
    """Angular distance (deg) of positions (arrays, degrees) from (ra0_deg, dec0_deg)."""
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    r0, d0 = np.radians(ra0_deg), np.radians(dec0_deg)
    c = np.sin(dec) * np.sin(d0) + np.cos(dec) * np.cos(d0) * np.cos(ra - r0)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def within(sources, ra_deg: float, dec_deg: float, radius_deg: float) -> list:
    """The sources within ``radius_deg`` of (ra_deg, dec_deg)."""
    sep = separation_deg(sources, ra_deg, dec_deg)
    return [s for s, d in zip(sources, sep) if d <= radius_deg]
