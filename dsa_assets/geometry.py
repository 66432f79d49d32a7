"""Array geometry and sky directions, shared by the simulator and the converter.

Conventions (``docs/conventions.md``): baselines are ``b = x_ant2 - x_ant1`` in ITRF metres;
UVH5 visibilities of a source in direction ``s`` fringe-stopped to ``s0`` are
``S exp(+2 pi i b.(s - s0) / lambda)``. Directions are *apparent topocentric* unit vectors,
obtained rigorously with astropy (``ICRS -> HADec(obstime, location)`` includes precession,
nutation, aberration; ``HADec -> topocentric ITRS`` is a pure rotation including polar
motion), then expressed on ITRF axes so that ``b.s`` needs no further rotation.

Measurement Set UVW (CASA convention) for a phase centre ``c`` are the components of
``-b`` on the (u east, v north, w towards c) basis whose north is ICRS/J2000 north, so that
images come out on J2000 axes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

import astropy.units as u
import numpy as np
from astropy.coordinates import ICRS, ITRS, EarthLocation, HADec, SkyCoord
from astropy.coordinates.erfa_astrom import ErfaAstromInterpolator, erfa_astrom
from astropy.time import Time
from astropy.utils import iers

from . import constants as C

# Offline machines: use the IERS tables bundled with astropy-iers-data and never download.
# Their UT1-UTC predictions (about a year ahead of the package date) are accepted whatever
# their age: a prediction a few months old is good to ~1 ms of UT1, i.e. ~0.015" of sky
# rotation; past the table's end astropy degrades with a warning rather than failing.
iers.conf.auto_download = False
iers.conf.auto_max_age = None
iers.conf.iers_degraded_accuracy = "warn"


def _use_cached_iers_table() -> None:
    """Parse the bundled IERS-A table once per installed version and keep a pickle of it.

    Parsing the ~20,000-line text table costs ~1 s in every new process (each Dagster run is
    one); unpickling takes milliseconds. A corrupt or missing cache is simply rebuilt.
    """
    import os
    import pickle
    import tempfile
    from pathlib import Path

    try:
        from astropy_iers_data import __version__ as version
    except ImportError:  # pragma: no cover
        return
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dsa110"
    cache = cache_dir / f"iers-a-{version}.pickle"
    try:
        table = pickle.loads(cache.read_bytes())
    except Exception:
        table = iers.IERS_A.open(iers.IERS_A_FILE)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache_dir, delete=False) as fh:
                pickle.dump(table, fh)
            os.replace(fh.name, cache)
        except OSError:
            pass
    iers.earth_orientation_table.set(table)


_use_cached_iers_table()

SPEED_OF_LIGHT_M_S = 299_792_458.0
NORTH_STEP_RAD = 1e-4
"""Offset (rad) used to find the local ICRS-north direction numerically (exact to ~1e-8)."""


@dataclass(frozen=True)
class Station:
    """One DSA-110 station: 1-based number, name, WGS84 geodetic position."""

    number: int
    name: str
    latitude_deg: float
    longitude_deg: float
    elevation_m: float


@lru_cache(maxsize=1)
def stations() -> tuple[Station, ...]:
    """The 117 stations of the packaged coordinate table, ordered by number.

    DSA-117 has no elevation in the table; it takes the median of its ten nearest
    neighbours by number (the table's convention in the reference pipelines).
    """
    rows = []
    with open(C.station_table_path(), newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 5 and row[1].startswith("DSA-") and row[1][4:].isdigit():
                rows.append(row)
    elevations = [float(r[4]) if r[4].strip() else np.nan for r in rows]
    out = []
    for i, r in enumerate(rows):
        elev = elevations[i]
        if np.isnan(elev):
            neighbours = [e for e in elevations[max(0, i - 10) : i] if not np.isnan(e)]
            elev = float(np.median(neighbours))
        out.append(Station(int(r[1][4:]), r[1], float(r[2]), float(r[3]), elev))
    return tuple(out)


def station_positions_ecef() -> np.ndarray:
    """ITRF (ECEF) positions of the 117 stations, shape (117, 3), metres."""
    st = stations()
    loc = EarthLocation.from_geodetic(
        [s.longitude_deg for s in st] * u.deg,
        [s.latitude_deg for s in st] * u.deg,
        [s.elevation_m for s in st] * u.m,
    )
    return np.stack([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)], axis=-1)


def site_location(latitude_deg: float, longitude_deg: float, altitude_m: float) -> EarthLocation:
    """EarthLocation from WGS84 geodetic degrees and metres."""
    return EarthLocation.from_geodetic(longitude_deg * u.deg, latitude_deg * u.deg, altitude_m * u.m)


def default_site() -> EarthLocation:
    """The correlator's site (CASA's OVRO_MMA position)."""
    return site_location(C.OVRO_MMA_LATITUDE_DEG, C.OVRO_MMA_LONGITUDE_DEG, C.OVRO_MMA_ALTITUDE_M)


def _hadec_to_itrs_unit(coord: SkyCoord, times: Time, location: EarthLocation) -> np.ndarray:
    itrs = coord.transform_to(ITRS(obstime=times, location=location))
    xyz = np.moveaxis(itrs.cartesian.xyz.value, 0, -1)
    return xyz / np.linalg.norm(xyz, axis=-1, keepdims=True)


def meridian_unit_vectors(dec_rad: float, times: Time, location: EarthLocation) -> np.ndarray:
    """Apparent direction of (hour angle 0, declination ``dec_rad``) at each time.

    Returns unit vectors on ITRF axes, shape (Ntimes, 3). This is the correlator's
    fringe-stopping centre ``s0`` and the dishes' pointing direction.
    """
    n = len(times)
    hadec = SkyCoord(
        ha=np.zeros(n) * u.rad,
        dec=np.full(n, dec_rad) * u.rad,
        frame=HADec(obstime=times, location=location),
    )
    return _hadec_to_itrs_unit(hadec, times, location)


def icrs_unit_vectors(
    ra_rad: np.ndarray, dec_rad: np.ndarray, times: Time, location: EarthLocation
) -> np.ndarray:
    """Apparent topocentric directions of ICRS positions, shape (Nsrc, Ntimes, 3), ITRF axes."""
    ra = np.atleast_1d(ra_rad)[:, None] * np.ones(len(times))
    dec = np.atleast_1d(dec_rad)[:, None] * np.ones(len(times))
    obstime = Time(np.broadcast_to(times.jd, ra.shape), format="jd", scale=times.scale)
    icrs = SkyCoord(ra=ra * u.rad, dec=dec * u.rad, frame=ICRS())
    # the slow terms of the transformation (precession-nutation, the Earth's position and
    # velocity) evaluated every 300 s and interpolated, not once per source and time: 30x
    # faster for 2,000 sources over an observation's 25 instants, 4e-11 arcsec apart
    with erfa_astrom.set(ErfaAstromInterpolator(300 * u.s)):
        hadec = icrs.transform_to(HADec(obstime=obstime, location=location))
    return _hadec_to_itrs_unit(hadec, obstime, location)


def meridian_icrs(dec_rad: float, time: Time, location: EarthLocation) -> SkyCoord:
    """ICRS position of (hour angle 0, apparent declination ``dec_rad``) at ``time`` (scalar
    or array of times)."""
    shape = np.shape(time)
    hadec = SkyCoord(
        ha=np.zeros(shape) * u.rad, dec=np.full(shape, dec_rad) * u.rad, frame=HADec(obstime=time, location=location)
    )
    out = hadec.transform_to(ICRS())
    return SkyCoord(ra=out.ra, dec=out.dec, frame=ICRS())


def apparent_dec_rad(ra_deg: float, dec_deg: float, time: Time, location: EarthLocation) -> float:
    """Apparent (HADec-frame) declination, in radians, of an ICRS position at ``time``: the
    pointing declination that puts the position on the beam centre at transit."""
    coord = SkyCoord(ra=ra_deg * u.deg, dec=dec_deg * u.deg, frame=ICRS())
    return float(coord.transform_to(HADec(obstime=time, location=location)).dec.rad)


def uvw_basis(center: SkyCoord, times: Time, location: EarthLocation) -> np.ndarray:
    """(u, v, w) unit vectors on ITRF axes for phase centre ``center`` (ICRS), shape (Ntimes, 3, 3).

    w points at the apparent centre; v is the apparent direction of ICRS north at the
    centre, orthogonalised against w; u = v x w points east. Projecting baselines on this
    basis gives UVW whose image axes are J2000 right ascension and declination.
    """
    ra = center.ra.rad
    dec = center.dec.rad
    w = icrs_unit_vectors(np.array([ra]), np.array([dec]), times, location)[0]
    # Step towards the pole from whichever side keeps the offset point valid.
    step = -NORTH_STEP_RAD if dec + NORTH_STEP_RAD > np.pi / 2 else NORTH_STEP_RAD
    n = icrs_unit_vectors(np.array([ra]), np.array([dec + step]), times, location)[0]
    v = np.sign(step) * (n - np.sum(n * w, axis=-1, keepdims=True) * w)
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    u_vec = np.cross(v, w)
    return np.stack([u_vec, v, w], axis=1)


def baseline_vectors(ecef: np.ndarray, ant1: np.ndarray, ant2: np.ndarray) -> np.ndarray:
    """Baseline vectors ``x_ant2 - x_ant1`` (ITRF metres), shape (Nbls, 3)."""
    return ecef[ant2] - ecef[ant1]


def airy_power_beam(cos_offset: np.ndarray, freq_hz: np.ndarray,
                    diameter_m: float = C.DISH_DIAMETER_M) -> np.ndarray:
    """Power primary beam of a uniformly illuminated dish (Airy pattern squared), 4.65 m default.

    ``cos_offset`` is the cosine of the angle from the pointing direction (any shape);
    ``freq_hz`` broadcasts against it. Returns the power response, 1 on axis.
    """
    from scipy.special import j1

    sin_theta = np.sqrt(np.clip(1.0 - np.asarray(cos_offset) ** 2, 0.0, None))
    x = np.pi * diameter_m * sin_theta * np.asarray(freq_hz) / SPEED_OF_LIGHT_M_S
    safe = np.where(x == 0, 1.0, x)
    return np.where(x == 0, 1.0, (2.0 * j1(safe) / safe) ** 2)
