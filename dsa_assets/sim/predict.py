"""The simulator's sky: point sources' visibilities on a transit array's baselines, averaged
over each integration and channel (the compiled sum of :mod:`dsa_assets.stages.point_sources`,
which every model prediction of the platform shares)."""

from __future__ import annotations

import numpy as np

from ..stages.point_sources import add_point_sources

SOURCES_PER_PASS = 64
"""Sources whose amplitudes are held at once (bounded memory: 64 x Nt x Nch doubles)."""


def point_source_visibilities(direction: np.ndarray, drift: np.ndarray, baselines_s: np.ndarray, amplitude,
                              freqs_hz: np.ndarray, channel_width_hz: float, smearing: bool = True,
                              antenna_factors: np.ndarray | None = None, ant1: np.ndarray | None = None,
                              ant2: np.ndarray | None = None) -> np.ndarray:
    """Sum of point sources' visibilities at the channel frequencies ``freqs_hz``, rows
    time-major (Nt x Nbls), shape (Nrows, Nch), complex64 (half the memory of a full-scale
    observation's band in double precision; sums of thousands of sources keep seven significant
    digits).

    ``direction`` (Nsrc, Nt, 3): each source's unit vector minus the phase centre's at the
    integration's middle; ``drift`` (Nsrc, Nt, 3): its change across the integration;
    ``baselines_s`` (Nbls, 3): baseline vectors over the speed of light (s), on the same axes;
    ``amplitude(k0, k1)``: apparent flux density (beam x spectrum, Jy) of sources k0..k1-1,
    shape (k1 - k0, Nt, Nch). ``smearing`` False evaluates at the integration's middle and the
    channel's centre. ``antenna_factors`` (Nsrc, Nant), with the baselines' ``ant1`` and
    ``ant2``: each antenna's complex response to each source relative to the beam model
    (direction-dependent gains; default 1)."""
    n_src, n_t, _ = direction.shape
    n_bls = len(baselines_s)
    out = np.zeros((n_t * n_bls, len(freqs_hz)), dtype=np.complex64)
    for k0 in range(0, n_src, SOURCES_PER_PASS):
        k1 = min(n_src, k0 + SOURCES_PER_PASS)
        amp = np.moveaxis(amplitude(k0, k1), 0, -1)  # (Nt, Nch, sources)
        responses = 1.0
        if antenna_factors is not None:
            responses = (antenna_factors[k0:k1, ant1] * np.conj(antenna_factors[k0:k1, ant2])).T  # (Nbls, sources)
        for t in range(n_t):
            tau = baselines_s @ direction[k0:k1, t].T  # (Nbls, sources)
            gain = (np.sinc(channel_width_hz * tau) if smearing else np.ones_like(tau)) * responses
            add_point_sources(out[t * n_bls:(t + 1) * n_bls], tau, baselines_s @ drift[k0:k1, t].T, gain,
                              amp[t:t + 1], np.zeros(n_bls, dtype=np.int64), freqs_hz, smearing)
    return out
