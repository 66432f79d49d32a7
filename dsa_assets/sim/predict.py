"""Point-source visibilities, averaged over each integration and channel: the simulator's
inner loop, compiled.

For source k, baseline row r (time t) and channel frequency nu, the visibility is

    A_k(t, nu) exp(2 pi i nu tau) sinc(nu dtau) sinc(dnu tau)

with ``tau`` the source's delay (s) relative to the fixed phase centre at the integration's
middle, ``dtau`` its change across the integration (the sky turns under a phase centre fixed
on the meridian: time smearing) and ``dnu`` the channel width (bandwidth smearing); the sinc
factors are the exact averages of a phase that runs linearly across the integration and the
channel. Channels lie on a uniform grid, so each source's phasor and the time-smearing sine
advance by one complex rotation per channel; per (source, row) only a few sines are taken.
The cost is one complex multiply-add per source, row and channel, on every core (numba).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=True)
def _accumulate(vis, direction, drift, baselines, amp, f0, step, channel_width, smearing,
                factor, ant1, ant2):  # pragma: no cover
    n_src = direction.shape[0]
    n_rows, n_ch = vis.shape
    n_bls = baselines.shape[0]
    for row in numba.prange(n_rows):
        t, bl = row // n_bls, row % n_bls
        bx, by, bz = baselines[bl, 0], baselines[bl, 1], baselines[bl, 2]
        re, im = np.empty(n_src), np.empty(n_src)
        cr, ci = np.empty(n_src), np.empty(n_src)
        sr, si = np.empty(n_src), np.empty(n_src)
        sdr, sdi = np.empty(n_src), np.empty(n_src)
        half = np.empty(n_src)
        for k in range(n_src):
            tau = direction[k, t, 0] * bx + direction[k, t, 1] * by + direction[k, t, 2] * bz
            weight = 1.0
            if smearing:
                x = np.pi * channel_width * tau
                if abs(x) > 1e-12:
                    weight = np.sin(x) / x
            # the antennas' own responses to this source: f_i conj(f_j)
            g = factor[k, ant1[bl]] * np.conj(factor[k, ant2[bl]]) * weight
            c0, s0 = np.cos(2.0 * np.pi * f0 * tau), np.sin(2.0 * np.pi * f0 * tau)
            re[k], im[k] = g.real * c0 - g.imag * s0, g.real * s0 + g.imag * c0
            cr[k], ci[k] = np.cos(2.0 * np.pi * step * tau), np.sin(2.0 * np.pi * step * tau)
            # time smearing: sinc(nu dtau) = sin(pi nu dtau) / (pi nu dtau), its sine advanced
            # channel by channel like the phasor (a tiny drift stands for none: the ratio is 1)
            h = np.pi * (drift[k, t, 0] * bx + drift[k, t, 1] * by + drift[k, t, 2] * bz)
            h = h if abs(h) > 1e-24 else 1e-24
            half[k] = h
            sr[k], si[k] = np.cos(h * f0), np.sin(h * f0)
            sdr[k], sdi[k] = np.cos(h * step), np.sin(h * step)
        for c in range(n_ch):
            f = f0 + c * step
            acc_re, acc_im = 0.0, 0.0
            for k in range(n_src):
                a = amp[t, c, k]
                if smearing:
                    a *= si[k] / (half[k] * f)
                acc_re += a * re[k]
                acc_im += a * im[k]
                re[k], im[k] = re[k] * cr[k] - im[k] * ci[k], re[k] * ci[k] + im[k] * cr[k]
                sr[k], si[k] = sr[k] * sdr[k] - si[k] * sdi[k], sr[k] * sdi[k] + si[k] * sdr[k]
            vis[row, c] += complex(acc_re, acc_im)


SOURCES_PER_PASS = 64
"""Sources whose amplitudes are held at once (bounded memory: 64 x Nt x Nch doubles)."""


def point_source_visibilities(direction: np.ndarray, drift: np.ndarray, baselines_s: np.ndarray, amplitude,
                              freq0_hz: float, step_hz: float, n_channels: int, channel_width_hz: float,
                              smearing: bool = True, antenna_factors: np.ndarray | None = None,
                              ant1: np.ndarray | None = None, ant2: np.ndarray | None = None) -> np.ndarray:
    """Sum of point sources' visibilities on the uniform channel grid ``freq0_hz + c step_hz``
    (c < ``n_channels``), rows time-major (Nt x Nbls), shape (Nrows, Nch), complex64 (half the
    memory of a full-scale observation's band in double precision; sums of thousands of sources
    keep seven significant digits).

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
    if antenna_factors is None:
        antenna_factors = np.ones((n_src, 1), dtype=np.complex128)
        ant1 = ant2 = np.zeros(n_bls, dtype=np.int64)
    out = np.zeros((n_t * len(baselines_s), n_channels), dtype=np.complex64)
    for k0 in range(0, n_src, SOURCES_PER_PASS):
        k1 = min(n_src, k0 + SOURCES_PER_PASS)
        _accumulate(out, np.ascontiguousarray(direction[k0:k1], dtype=np.float64),
                    np.ascontiguousarray(drift[k0:k1], dtype=np.float64),
                    np.ascontiguousarray(baselines_s, dtype=np.float64),
                    np.ascontiguousarray(np.moveaxis(amplitude(k0, k1), 0, -1), dtype=np.float64),
                    float(freq0_hz), float(step_hz), float(channel_width_hz), bool(smearing),
                    np.ascontiguousarray(antenna_factors[k0:k1], dtype=np.complex128),
                    np.ascontiguousarray(ant1, dtype=np.int64), np.ascontiguousarray(ant2, dtype=np.int64))
    return out
