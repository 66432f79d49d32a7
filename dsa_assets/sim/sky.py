"""The simulated sky: random and catalogue-matched point sources and their variations. The
truth file, and the corruptions it records, are in :mod:`dsa_assets.truth`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord

from .. import catalogue
from ..truth import REFERENCE_FREQ_HZ, Corruptions, PointSource, Truth

__all__ = ["Corruptions", "PointSource", "REFERENCE_FREQ_HZ", "Truth"]


def random_sources(
    center: SkyCoord,
    n: int,
    rng: np.random.Generator,
    radius_deg: float = 1.2,
    flux_range_jy: tuple[float, float] = (0.2, 3.0),
) -> list[PointSource]:
    """``n`` sources uniformly within ``radius_deg`` of ``center``, log-uniform fluxes (Jy)."""
    r = radius_deg * np.sqrt(rng.uniform(0.0, 1.0, n))
    pa = rng.uniform(0.0, 360.0, n)
    from astropy import units as u

    pos = center.directional_offset_by(pa * u.deg, r * u.deg)
    flux = np.exp(rng.uniform(np.log(flux_range_jy[0]), np.log(flux_range_jy[1]), n))
    alpha = rng.normal(-0.7, 0.2, n)
    return [
        PointSource(f"SIM{i:04d}", float(p.ra.deg), float(p.dec.deg), float(f), float(a))
        for i, (p, f, a) in enumerate(zip(pos, flux, alpha))
    ]


SKY_CATALOGUE = "sky_catalogue.csv"
"""The simulated sky's catalogue (:mod:`dsa_assets.catalogue` format), beside the subband files."""


def sky_strip(
    dec_deg: float,
    seed: int,
    sources_per_beam: float,
    beam_radius_deg: float = 1.2,
    half_width_deg: float = 3.0,
    flux_range_jy: tuple[float, float] = (0.2, 3.0),
) -> list[PointSource]:
    """A fixed random sky over the declination strip ``dec_deg`` +- ``half_width_deg``, all
    right ascensions: ``sources_per_beam`` sources on average within ``beam_radius_deg`` of any
    point, log-uniform flux densities (Jy), spectral indices around -0.7. The same (dec, seed)
    gives the same sky, so consecutive and repeated transits see the same sources."""
    rng = np.random.default_rng([seed, int(round(dec_deg * 1000))])
    lo, hi = np.radians(dec_deg - half_width_deg), np.radians(dec_deg + half_width_deg)
    area_deg2 = 2 * np.pi * (np.sin(hi) - np.sin(lo)) * (180 / np.pi) ** 2
    n = rng.poisson(sources_per_beam / (np.pi * beam_radius_deg**2) * area_deg2)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(lo), np.sin(hi), n)))
    flux = np.exp(rng.uniform(np.log(flux_range_jy[0]), np.log(flux_range_jy[1]), n))
    alpha = rng.normal(-0.7, 0.2, n)
    order = np.argsort(ra)
    return [PointSource(catalogue.iau_name(ra[i], dec[i], "SIM"), float(ra[i]), float(dec[i]), float(flux[i]), float(alpha[i]))
            for i in order]


@dataclass(frozen=True)
class Variation:
    """A light curve imposed on a sky source, as a factor on its flux density at time t (Unix s):
    "flare": 1 + amplitude * exp(-(t - t0)^2 / (2 width_s^2)); "step": 1 before t0, 1 + amplitude
    after; "on": 0 before t0, 1 after (a source that appears)."""

    source: str
    kind: str
    t0_unix: float
    amplitude: float
    width_s: float = 86400.0

    def factor(self, t_unix: float) -> float:
        if self.kind == "flare":
            return 1.0 + self.amplitude * float(np.exp(-0.5 * ((t_unix - self.t0_unix) / self.width_s) ** 2))
        if self.kind == "step":
            return 1.0 + (self.amplitude if t_unix >= self.t0_unix else 0.0)
        if self.kind == "on":
            return 1.0 if t_unix >= self.t0_unix else 0.0
        raise ValueError(f"unknown variation kind {self.kind!r}")


def apply_variations(sources: list[PointSource], variations, t_unix: float) -> list[PointSource]:
    """``sources`` with their flux densities at ``t_unix`` under ``variations``."""
    from dataclasses import replace

    by_name = {v.source: v for v in variations}
    return [replace(s, flux_jy=s.flux_jy * by_name[s.name].factor(t_unix)) if s.name in by_name else s
            for s in sources]
