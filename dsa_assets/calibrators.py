"""Calibrators: the VLA Calibrator List, Perley-Butler 2017 flux standards, and which
calibrator drifts through the DSA-110 beam during an observation.

The list (``data/vlacalibrators.txt``, credit in ``data/README.md``) gives J2000 positions and
per-band flux densities with a compactness code per VLA configuration: P (< 3% amplitude
closure errors), S (3-10%), W (weak or unreliable), X (unusable). DSA-110's longest baselines
(~2.5 km) sit between the VLA's C (3.4 km) and D (1.0 km) configurations, so the C code is used.
For the primary flux calibrators (3C48, 3C138, 3C147, 3C196, 3C286, 3C295) the flux density is
CASA's Perley-Butler 2017 polynomial, read from casadata.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path

import astropy.units as u
import numpy as np

from . import constants as C
from .catalogue import CatalogueSource, separation_deg

CATALOGUE = "vlacalibrators.txt"
CODE_RANK = {"P": 0, "S": 1}
"""Usable compactness codes, best first; W and X calibrators are never chosen."""
PRIMARY_CALIBRATORS = ("3C48", "3C138", "3C147", "3C196", "3C286", "3C295")
REFERENCE_FREQ_HZ = 1.4e9
SIDEREAL_RATE_DEG_PER_S = 360.0 / 86164.0905

A_TEAM = (
    CatalogueSource("CasA", 350.850, 58.8150, 1600.0, -0.77),
    CatalogueSource("CygA", 299.868, 40.7339, 1590.0, -0.78),
    CatalogueSource("TauA", 83.633, 22.0144, 875.0, -0.30),
    CatalogueSource("VirA", 187.704, 12.3911, 220.0, -0.86),
)
"""The four brightest radio sources of the northern sky at 1.4 GHz (ICRS deg; Jy; spectral
index), as points: Cas A 23h23m24s +58d48m54s (fading ~0.7%/yr), Cyg A 19h59m28s +40d44m02s,
Tau A 05h34m32s +22d00m52s, Vir A 12h30m49s +12d23m28s (``docs/instrument.md``). Real ones are
arcminutes across, resolved by the longest baselines; as points they are what the sidelobes
of a 4.65 m dish pass. Their sidelobes cross every DSA-110 declination strip daily: the
pipeline peels them (:mod:`dsa_assets.stages.peeling`) and the simulator can add them."""


@dataclass(frozen=True)
class Calibrator:
    """One calibrator: J2000 (ICRS) position in degrees, L-band (20 cm) flux density in Jy at
    ``REFERENCE_FREQ_HZ`` with a spectral index, and its C-configuration compactness code."""

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    spectral_index: float
    code: str
    alt_name: str = ""
    flux_standard: str = "VLA calibrator list"

    def flux_at(self, freq_hz) -> np.ndarray:
        """Flux density (Jy) at ``freq_hz``: a power law through the reference flux."""
        return self.flux_jy * (np.asarray(freq_hz, dtype=float) / REFERENCE_FREQ_HZ) ** self.spectral_index

    @property
    def jname(self) -> str:
        """IAU J2000 name, ``Jhhmm+ddmm`` (truncated, as the IAU convention does)."""
        ra_min = int(self.ra_deg / 15.0 * 60.0 + 1e-9)
        dec_min = int(abs(self.dec_deg) * 60.0 + 1e-9)
        sign = "-" if self.dec_deg < 0 else "+"
        return f"J{ra_min // 60:02d}{ra_min % 60:02d}{sign}{dec_min // 60:02d}{dec_min % 60:02d}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.alt_name})" if self.alt_name else self.name


_HEADER = re.compile(
    r"^(?P<name>\S+)\s+J2000\s+(?P<pc>\S)\s+(?P<ra>\d+h\d+m[\d.]+s)\s+(?P<dec>-?\d+d\d+'[\d.]+\")\s*(?P<rest>.*)$"
)
_BAND = re.compile(r"^\s*(?P<band>[\d.]+cm)\s+(?P<letter>\w)\s+(?P<a>\S)\s+(?P<b>\S)\s+(?P<c>\S)\s+(?P<d>\S)\s+(?P<flux>[\d.]+)")
_BAND_FREQ_HZ = {"90cm": 0.33e9, "20cm": 1.4e9, "6cm": 4.9e9, "3.7cm": 8.4e9}


def _sexagesimal(text: str, hours: bool) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    a, b, c = (float(x) for x in re.findall(r"[\d.]+", text))
    value = sign * (a + b / 60 + c / 3600)
    return value * 15.0 if hours else value


def parse_catalogue(text: str) -> list[Calibrator]:
    """Every source of the VLA Calibrator List with a 20 cm flux density, as Calibrators.

    The spectral index comes from the 20 cm and 6 cm (else 90 cm) flux densities when both are
    listed, and is -0.7 otherwise; primary calibrators get Perley-Butler 2017 instead.
    """
    out: list[Calibrator] = []
    entry: dict | None = None

    def finish() -> None:
        if entry and "20cm" in entry["bands"]:
            flux, code = entry["bands"]["20cm"]
            index = -0.7
            for other in ("6cm", "90cm"):
                if other in entry["bands"] and entry["bands"][other][0] > 0 and flux > 0:
                    index = float(np.log(entry["bands"][other][0] / flux) / np.log(_BAND_FREQ_HZ[other] / 1.4e9))
                    break
            cal = Calibrator(entry["name"], entry["ra"], entry["dec"], flux, index, code, entry["alt"])
            out.append(_with_flux_standard(cal))

    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            finish()
            rest = m["rest"].split()
            alt = next((w for w in rest if w.upper().startswith("3C")), "")
            entry = {"name": m["name"], "ra": _sexagesimal(m["ra"], True), "dec": _sexagesimal(m["dec"], False),
                     "alt": alt, "bands": {}}
            continue
        b = _BAND.match(line)
        if b and entry is not None:
            entry["bands"][b["band"]] = (float(b["flux"]), b["c"])
    finish()
    return out


@functools.lru_cache(maxsize=1)
def catalogue() -> tuple[Calibrator, ...]:
    """The packaged VLA Calibrator List, parsed once per process."""
    text = resources.files("dsa_assets").joinpath("data", CATALOGUE).read_text()
    return tuple(parse_catalogue(text))


def by_name(name: str) -> Calibrator:
    """A calibrator by its list name (``1331+305``), J2000 name (``J1331+3030``) or 3C name
    (``3C286``)."""
    key = name.upper()
    for cal in catalogue():
        if key in (cal.name.upper(), cal.alt_name.upper(), cal.jname):
            return cal
    raise KeyError(f"no calibrator named {name!r} in the VLA Calibrator List")


# -- Perley-Butler 2017 ---------------------------------------------------------------------


def _perley_butler_table() -> Path | None:
    try:
        import casadata
    except ImportError:
        return None
    path = Path(casadata.datapath) / "nrao" / "VLA" / "standards" / "PerleyButler2017Coeffs"
    return path if path.exists() else None


@functools.cache
def perley_butler_2017(name: str, epoch_year: float = 2026.0) -> tuple[float, float] | None:
    """(flux density in Jy at 1.4 GHz, spectral index at 1.4 GHz) of a primary calibrator from
    CASA's Perley-Butler 2017 coefficients, log10 S = sum a_n (log10 nu/GHz)^n, using the latest
    epoch not after ``epoch_year`` (3C48, 3C138 and 3C147 vary). None when unknown or no casadata."""
    path = _perley_butler_table()
    if path is None:
        return None
    from casacore.tables import table

    with table(str(path), ack=False) as tb:
        column = f"{name.upper()}_coeffs"
        if column not in tb.colnames():
            return None
        epochs = tb.getcol("Epoch")
        rows = np.flatnonzero(epochs <= epoch_year)
        coeffs = np.asarray(tb.getcell(column, int(rows[-1] if len(rows) else 0)), dtype=float)
    x = np.log10(REFERENCE_FREQ_HZ / 1e9)
    log_s = np.polyval(coeffs[::-1], x)
    slope = np.polyval(np.polyder(coeffs[::-1]), x)
    return float(10**log_s), float(slope)


def _with_flux_standard(cal: Calibrator) -> Calibrator:
    if cal.alt_name.upper() not in PRIMARY_CALIBRATORS:
        return cal
    pb = perley_butler_2017(cal.alt_name)
    if pb is None:
        return cal
    return Calibrator(cal.name, cal.ra_deg, cal.dec_deg, pb[0], pb[1], cal.code, cal.alt_name, "Perley-Butler 2017")


# -- transits through the beam --------------------------------------------------------------


@dataclass(frozen=True)
class Transit:
    """A calibrator crossing the meridian near the pointing declination.

    ``offset_deg``: its angular distance from the beam centre at transit; ``attenuation``: the
    primary-beam power response at transit and at ``REFERENCE_FREQ_HZ``; ``mean_attenuation``
    averages it over the observation; ``apparent_flux_jy`` is the flux times that mean.
    """

    calibrator: Calibrator
    transit_time: datetime
    offset_deg: float
    attenuation: float
    mean_attenuation: float

    @property
    def apparent_flux_jy(self) -> float:
        return self.calibrator.flux_jy * self.mean_attenuation

    def as_dict(self) -> dict:
        return {
            "calibrator": self.calibrator.name, "alt_name": self.calibrator.alt_name,
            "transit_time": self.transit_time.isoformat(), "offset_deg": round(self.offset_deg, 4),
            "attenuation": round(self.attenuation, 4), "mean_attenuation": round(self.mean_attenuation, 4),
            "flux_jy": round(self.calibrator.flux_jy, 4), "apparent_flux_jy": round(self.apparent_flux_jy, 4),
            "code": self.calibrator.code,
        }


def transits(
    start: datetime, end: datetime, pointing_dec_rad: float, max_offset_deg: float = 1.5,
    candidates: tuple[Calibrator, ...] | None = None,
) -> list[Transit]:
    """Calibrators that transit between ``start`` and ``end`` (UTC) within ``max_offset_deg`` of
    the beam centre (the meridian at the pointing declination), earliest first.

    Uses the rigorous ICRS position of the meridian (:func:`geometry.meridian_icrs`), so
    precession and nutation are included.
    """
    from astropy.time import Time

    from . import geometry

    cals = candidates if candidates is not None else catalogue()
    if not cals:
        return []
    dec_p = np.degrees(pointing_dec_rad)
    near = [c for c in cals if abs(c.dec_deg - dec_p) <= max_offset_deg + 1.0]
    if not near:
        return []
    location = geometry.default_site()
    t0 = Time(start)
    meridian0 = geometry.meridian_icrs(pointing_dec_rad, t0, location)
    duration = (end - start).total_seconds()
    out = []
    for cal in near:
        # seconds after start until the meridian reaches the calibrator's right ascension
        dra = (cal.ra_deg - meridian0.ra.deg + 180.0) % 360.0 - 180.0
        dt = dra / SIDEREAL_RATE_DEG_PER_S
        if not -60.0 <= dt <= duration + 60.0:
            continue
        meridian = geometry.meridian_icrs(pointing_dec_rad, t0 + dt * u.s, location)
        dt += ((cal.ra_deg - meridian.ra.deg + 180.0) % 360.0 - 180.0) / SIDEREAL_RATE_DEG_PER_S
        if not 0.0 <= dt < duration:
            continue
        transit_time = start + timedelta(seconds=float(dt))
        pointing = geometry.meridian_icrs(pointing_dec_rad, Time(transit_time), location)
        offset = float(separation_deg([cal], pointing.ra.deg, pointing.dec.deg)[0])
        if offset > max_offset_deg:
            continue
        out.append(Transit(cal, transit_time, offset, *_attenuations(cal, start, end, pointing_dec_rad, location)))
    return sorted(out, key=lambda t: t.transit_time)


def _attenuations(cal, start, end, pointing_dec_rad, location) -> tuple[float, float]:
    """Beam power response at transit (closest approach) and averaged over the observation."""
    from astropy.time import Time

    from . import geometry

    n = 16
    times = Time(start) + np.linspace(0.0, (end - start).total_seconds(), n) * u.s
    s0 = geometry.meridian_unit_vectors(pointing_dec_rad, times, location)
    s = geometry.icrs_unit_vectors(np.radians([cal.ra_deg]), np.radians([cal.dec_deg]), times, location)[0]
    beam = geometry.airy_power_beam(np.einsum("tx,tx->t", s, s0), REFERENCE_FREQ_HZ)
    return float(beam.max()), float(beam.mean())


def best_transit(found: list[Transit], min_apparent_flux_jy: float = 1.0) -> Transit | None:
    """The transit to calibrate on: usable compactness code (P before S), then the largest
    apparent flux (flux density times the mean beam response, which already penalises the
    distance from the beam centre). None when nothing is bright or compact enough."""
    usable = [t for t in found if t.calibrator.code in CODE_RANK and t.apparent_flux_jy >= min_apparent_flux_jy]
    if not usable:
        return None
    return min(usable, key=lambda t: (CODE_RANK[t.calibrator.code], -t.apparent_flux_jy))


def transit_start(cal: Calibrator, near: datetime, pointing_dec_rad: float | None = None,
                  duration_s: float = C.N_INTEGRATIONS * C.INTEGRATION_TIME_S) -> datetime:
    """The start (UTC, whole seconds) of an observation of ``duration_s`` centred on the first
    meridian transit of ``cal`` after ``near``: how the simulator places a calibrator."""
    from astropy.time import Time

    from . import geometry

    location = geometry.default_site()
    t = Time(near)
    dec = geometry.apparent_dec_rad(cal.ra_deg, cal.dec_deg, t, location) if pointing_dec_rad is None else pointing_dec_rad
    for _ in range(3):
        meridian = geometry.meridian_icrs(dec, t, location)
        dra = (cal.ra_deg - meridian.ra.deg) % 360.0
        if _ > 0:
            dra = (dra + 180.0) % 360.0 - 180.0
        t = t + dra / SIDEREAL_RATE_DEG_PER_S * u.s
    start = t.to_datetime(timezone=near.tzinfo) - timedelta(seconds=duration_s / 2)
    return start.replace(microsecond=0)
