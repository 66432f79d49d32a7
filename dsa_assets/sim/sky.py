"""The simulated sky and instrument corruptions, and the truth file that records them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.coordinates import SkyCoord

REFERENCE_FREQ_HZ = 1.4e9


@dataclass(frozen=True)
class PointSource:
    """A point source: ICRS position (degrees), flux density (Jy) at 1.4 GHz, spectral index."""

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    spectral_index: float = -0.7

    def flux_at(self, freq_hz: np.ndarray) -> np.ndarray:
        """Flux density (Jy) at ``freq_hz``: ``flux_jy * (f / 1.4 GHz) ** spectral_index``."""
        return self.flux_jy * (np.asarray(freq_hz) / REFERENCE_FREQ_HZ) ** self.spectral_index


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


@dataclass
class Corruptions:
    """Per-antenna complex gains and bandpasses applied as ``V_ij -> g_i conj(g_j) V_ij``.

    ``gains`` has shape (Nants_telescope, Npols); ``bandpass`` (Nants_telescope, Nfreqs_total,
    Npols) over the observation's channels in ascending frequency, or None for flat.
    """

    gains: np.ndarray
    bandpass: np.ndarray | None = None

    @classmethod
    def identity(cls, n_ants: int, n_pols: int = 2) -> "Corruptions":
        return cls(np.ones((n_ants, n_pols), dtype=np.complex128))

    @classmethod
    def random(
        cls,
        n_ants: int,
        freqs_ascending_hz: np.ndarray,
        rng: np.random.Generator,
        amp_scatter: float = 0.1,
        bandpass: bool = True,
        n_pols: int = 2,
    ) -> "Corruptions":
        """Gains with ``amp_scatter`` fractional amplitude scatter and uniform phases; smooth
        bandpasses (low-order ripple plus a linear phase slope, i.e. a residual delay)."""
        amp = 1.0 + amp_scatter * rng.standard_normal((n_ants, n_pols))
        gains = amp * np.exp(1j * rng.uniform(-np.pi, np.pi, (n_ants, n_pols)))
        bp = None
        if bandpass:
            x = (freqs_ascending_hz - freqs_ascending_hz.mean()) / np.ptp(freqs_ascending_hz)
            ripple = rng.normal(0.0, 0.05, (n_ants, 1, n_pols)) * np.cos(
                2 * np.pi * 3 * x[None, :, None] + rng.uniform(0, 2 * np.pi, (n_ants, 1, n_pols))
            )
            delay_ns = rng.normal(0.0, 2.0, (n_ants, 1, n_pols))
            phase = 2 * np.pi * delay_ns * 1e-9 * (freqs_ascending_hz - freqs_ascending_hz.mean())[None, :, None]
            bp = (1.0 + ripple) * np.exp(1j * phase)
        return cls(gains.astype(np.complex128), bp)


@dataclass
class Truth:
    """Everything needed to predict the simulated data: written as JSON beside the files."""

    group_stamp: str
    sources: list[PointSource]
    pointing_dec_rad: float
    sefd_jy: float
    noise: bool
    antenna_numbers: list[int]
    gains: list[list[list[float]]] = field(default_factory=list)
    """Per telescope antenna and polarisation: [re, im]."""
    bandpass_applied: bool = False
    missing_subbands: list[int] = field(default_factory=list)

    def write(self, path: Path) -> None:
        payload = asdict(self)
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> "Truth":
        payload = json.loads(Path(path).read_text())
        payload["sources"] = [PointSource(**s) for s in payload["sources"]]
        return cls(**payload)

    def complex_gains(self) -> np.ndarray:
        """Gains as a complex array (Nants_telescope, Npols)."""
        g = np.asarray(self.gains, dtype=float)
        return g[..., 0] + 1j * g[..., 1]
