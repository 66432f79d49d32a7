"""The simulated sky: random and catalogue-matched point sources, the realistic L-band sky
(source counts out to the far sidelobes, the A-team) and light-curve variations. The truth
file, and the corruptions it records, are in :mod:`dsa_assets.truth`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord

from .. import calibrators, catalogue
from ..truth import REFERENCE_FREQ_HZ, Corruptions, PointSource, Truth

__all__ = ["A_TEAM", "Corruptions", "PointSource", "REFERENCE_FREQ_HZ", "SourceCounts", "Truth", "realistic_strip"]

A_TEAM = tuple(PointSource(s.name, s.ra_deg, s.dec_deg, s.flux_jy, s.spectral_index) for s in calibrators.A_TEAM)
"""Cas A, Cyg A, Tau A and Vir A as simulated point sources (:data:`dsa_assets.calibrators.A_TEAM`)."""


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


@dataclass(frozen=True)
class SourceCounts:
    """Integral source counts N(>S) = ``density_per_deg2`` (S / ``reference_flux_jy``)^-``slope``
    per square degree, truncated at ``max_flux_jy``: NVSS at 1.4 GHz, about 50 sources per square
    degree above 2.5 mJy with N(>S) ~ S^-0.9 between 5 mJy and 1 Jy."""

    density_per_deg2: float = 50.0
    reference_flux_jy: float = 2.5e-3
    slope: float = 0.9
    max_flux_jy: float = 50.0

    def above(self, flux_jy: np.ndarray) -> np.ndarray:
        """Sources per square degree with flux density between ``flux_jy`` and the maximum."""
        f = np.minimum(np.asarray(flux_jy, float), self.max_flux_jy)
        return self.density_per_deg2 * ((f / self.reference_flux_jy) ** -self.slope
                                         - (self.max_flux_jy / self.reference_flux_jy) ** -self.slope)

    def draw(self, minimum_jy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flux densities (Jy) drawn from the counts above each ``minimum_jy``."""
        lo = np.asarray(minimum_jy, float)
        top = (self.max_flux_jy / lo) ** -self.slope
        return lo * (1.0 - rng.uniform(0.0, 1.0, lo.shape) * (1.0 - top)) ** (-1.0 / self.slope)


def beam_envelope(offset_deg: np.ndarray, freqs_hz=(1.31e9, 1.50e9)) -> np.ndarray:
    """The largest power response (4.65 m Airy beam) at ``offset_deg`` or further from the beam
    centre, at any of ``freqs_hz``: the sidelobes' envelope, falling monotonically (fraction)."""
    from ..geometry import airy_power_beam

    grid = np.linspace(0.0, 90.0, 90_001)
    power = np.max([airy_power_beam(np.cos(np.radians(grid)), f) for f in freqs_hz], axis=0)
    envelope = np.maximum.accumulate(power[::-1])[::-1]
    return np.interp(np.asarray(offset_deg, float), grid, envelope)


def realistic_strip(dec_deg: float, seed: int, floor_jy: float = 1e-3, counts: SourceCounts = SourceCounts(),
                    max_offset_deg: float = 30.0, band_deg: float = 0.05, with_calibrators: bool = True
                    ) -> list[PointSource]:
    """A fixed random sky, all right ascensions, with the counts of the real sky down to the
    flux density whose response anywhere in the beam (its sidelobes' envelope, at the
    declination's closest approach to the pointing ``dec_deg``) is ``floor_jy`` (Jy, apparent):
    complete to 1 mJy/beam-response near the pointing, to the brighter sources further out, up
    to ``max_offset_deg`` away in declination. The same (dec, seed) gives the same sky."""
    rng = np.random.default_rng([seed, int(round(dec_deg * 1000)), 2])
    edges = np.arange(max(-90.0, dec_deg - max_offset_deg), min(90.0, dec_deg + max_offset_deg) + band_deg, band_deg)
    edges = np.clip(edges, -90.0, 90.0)
    lo, hi = edges[:-1], edges[1:]
    closest = np.where((lo <= dec_deg) & (dec_deg <= hi), 0.0, np.minimum(abs(lo - dec_deg), abs(hi - dec_deg)))
    minimum = np.minimum(floor_jy / beam_envelope(closest), counts.max_flux_jy)
    area = 2 * np.pi * (np.sin(np.radians(hi)) - np.sin(np.radians(lo))) * (180 / np.pi) ** 2
    n = rng.poisson(area * counts.above(minimum))
    band = np.repeat(np.arange(len(n)), n)
    sin_dec = rng.uniform(np.sin(np.radians(lo[band])), np.sin(np.radians(hi[band])))
    dec = np.degrees(np.arcsin(sin_dec))
    ra = rng.uniform(0.0, 360.0, len(band))
    flux = counts.draw(minimum[band], rng)
    alpha = rng.normal(-0.7, 0.2, len(band))
    order = np.argsort(ra)
    names = unique_names([catalogue.iau_name(ra[i], dec[i], "SIM") for i in order])
    drawn = [PointSource(name, float(ra[i]), float(dec[i]), float(flux[i]), float(alpha[i]))
             for name, i in zip(names, order)]
    return drawn + known_calibrators(dec_deg, floor_jy, max_offset_deg) if with_calibrators else drawn


def known_calibrators(dec_deg: float, floor_jy: float = 1e-3, max_offset_deg: float = 30.0) -> list[PointSource]:
    """The VLA calibrators within ``max_offset_deg`` of declination ``dec_deg`` whose response
    anywhere in the beam reaches ``floor_jy`` (Jy), at their catalogue positions, flux densities
    (Jy at 1.4 GHz) and spectral indices, named as the list names them: the bright compact
    sources a real declination strip holds at known places, which the platform solves on as
    they transit and peels beyond the image. (The list holds none of the A-team.)"""
    cals = [c for c in calibrators.catalogue() if abs(c.dec_deg - dec_deg) <= max_offset_deg]
    response = beam_envelope(np.array([abs(c.dec_deg - dec_deg) for c in cals]))
    return [PointSource(c.name, c.ra_deg, c.dec_deg, c.flux_jy, c.spectral_index)
            for c, r in zip(cals, response) if c.flux_jy * r >= floor_jy]


def unique_names(names: list[str]) -> list[str]:
    """``names`` with a letter appended to repeats (two sources within the truncation of an
    IAU name: a catalogue's names must be unique)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        k = seen.get(name, 0)
        seen[name] = k + 1
        out.append(name if k == 0 else f"{name}{chr(ord('a') + k)}")
    return out
