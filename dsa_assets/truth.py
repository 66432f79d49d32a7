"""The truth file of a simulated observation: what the simulator put into the data (sources,
gains, bandpasses, noise), written as JSON beside the subbands as ``<stamp>_truth.json``.

Neutral ground between the simulator, which writes it, and the quality checks and tests, which
compare products with it; neither imports the other. Real observations have no truth file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import fsutil
from .naming import truth_file_name

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



@dataclass
class Corruptions:
    """Per-antenna complex gains and bandpasses applied as ``V_ij -> G_i conj(G_j) V_ij`` to the
    UVH5-convention data, with ``G_i(nu) = gains_i * bandpass_i(nu)``.

    ``gains`` has shape (Nants_telescope, Npols). The bandpass is kept as its parameters, each
    (Nants_telescope, Npols), so that the truth file can rebuild it at any frequency:
    ``(1 + ripple cos(6 pi x + ripple_phase)) exp(2 pi i delay_ns 1e-9 (nu - band_center_hz))``
    with ``x = (nu - band_center_hz) / band_span_hz``; no ripple array means a flat bandpass.
    """

    gains: np.ndarray
    ripple: np.ndarray | None = None
    ripple_phase: np.ndarray | None = None
    delay_ns: np.ndarray | None = None
    band_center_hz: float = REFERENCE_FREQ_HZ
    band_span_hz: float = 1.0

    @classmethod
    def identity(cls, n_ants: int, n_pols: int = 2) -> Corruptions:
        return cls(np.ones((n_ants, n_pols), dtype=np.complex128))

    @classmethod
    def random(
        cls,
        n_ants: int,
        freqs_hz: np.ndarray,
        rng: np.random.Generator,
        amp_scatter: float = 0.1,
        bandpass: bool = True,
        n_pols: int = 2,
    ) -> Corruptions:
        """Gains with ``amp_scatter`` fractional amplitude scatter and uniform phases; smooth
        bandpasses over the band of ``freqs_hz`` (a 5% ripple plus a residual delay of ~2 ns)."""
        amp = 1.0 + amp_scatter * rng.standard_normal((n_ants, n_pols))
        gains = (amp * np.exp(1j * rng.uniform(-np.pi, np.pi, (n_ants, n_pols)))).astype(np.complex128)
        if not bandpass:
            return cls(gains)
        return cls(
            gains,
            ripple=rng.normal(0.0, 0.05, (n_ants, n_pols)),
            ripple_phase=rng.uniform(0, 2 * np.pi, (n_ants, n_pols)),
            delay_ns=rng.normal(0.0, 2.0, (n_ants, n_pols)),
            band_center_hz=float(np.mean(freqs_hz)),
            band_span_hz=float(np.ptp(freqs_hz)),
        )

    def bandpass(self, freqs_hz: np.ndarray) -> np.ndarray | None:
        """Bandpass at ``freqs_hz``, shape (Nants, Nfreqs, Npols); None when flat."""
        if self.ripple is None:
            return None
        f = np.asarray(freqs_hz, dtype=float)[None, :, None]
        x = (f - self.band_center_hz) / self.band_span_hz
        ripple = self.ripple[:, None, :] * np.cos(2 * np.pi * 3 * x + self.ripple_phase[:, None, :])
        phase = 2 * np.pi * self.delay_ns[:, None, :] * 1e-9 * (f - self.band_center_hz)
        return (1.0 + ripple) * np.exp(1j * phase)

    def total(self, freqs_hz: np.ndarray) -> np.ndarray:
        """G_i(nu) = gain times bandpass, shape (Nants, Nfreqs, Npols)."""
        bp = self.bandpass(freqs_hz)
        g = np.repeat(self.gains[:, None, :], len(np.atleast_1d(freqs_hz)), axis=1)
        return g if bp is None else g * bp


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
    bandpass: dict | None = None
    """Bandpass parameters (see :class:`Corruptions`), or None for flat."""
    missing_subbands: list[int] = field(default_factory=list)

    def write(self, path: Path) -> None:
        fsutil.write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, path: Path) -> Truth:
        payload = json.loads(Path(path).read_text())
        payload["sources"] = [PointSource(**s) for s in payload["sources"]]
        return cls(**payload)

    def complex_gains(self) -> np.ndarray:
        """Gains as a complex array (Nants_telescope, Npols)."""
        g = np.asarray(self.gains, dtype=float)
        return g[..., 0] + 1j * g[..., 1]

    def corruptions(self) -> Corruptions:
        bp = self.bandpass or {}
        arrays = {k: np.asarray(v) for k, v in bp.items() if k in ("ripple", "ripple_phase", "delay_ns")}
        scalars = {k: float(v) for k, v in bp.items() if k in ("band_center_hz", "band_span_hz")}
        return Corruptions(self.complex_gains(), **arrays, **scalars)

    def total_gains(self, freqs_hz: np.ndarray) -> np.ndarray:
        """The simulated antenna gains G_i(nu), shape (Nants_telescope, Nfreqs, Npols), in the
        UVH5 convention. A Measurement Set holds the conjugated visibilities, so CASA's gain
        solutions for these data are ``conj(G_i)``."""
        return self.corruptions().total(freqs_hz)

    @staticmethod
    def bandpass_parameters(c: Corruptions) -> dict | None:
        if c.ripple is None:
            return None
        return {"ripple": c.ripple.tolist(), "ripple_phase": c.ripple_phase.tolist(),
                "delay_ns": c.delay_ns.tolist(), "band_center_hz": c.band_center_hz,
                "band_span_hz": c.band_span_hz}


def read_truth(input_dir: Path | str, group_id: str) -> Truth | None:
    """The truth file of observation ``group_id`` in ``input_dir``, or None (real data)."""
    path = Path(input_dir) / truth_file_name(group_id)
    return Truth.read(path) if path.exists() else None
