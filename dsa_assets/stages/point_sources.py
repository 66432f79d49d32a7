"""Point-source visibilities averaged over each integration and channel: the inner loop of the
simulator and of every model prediction (calibrator models, peeling, the subtraction of the
sky outside the image), compiled.

For source k, row r and channel frequency nu, the visibility is

    A_k(t_r, nu) g_rk exp(2 pi i nu tau_rk) sinc(nu dtau_rk)

with ``tau`` the source's delay (s) relative to the phase centre, ``dtau`` its change across
the integration (time smearing: the sinc is the exact average of a phase that runs linearly
across it), ``g`` any factor that does not depend on frequency (the bandwidth smearing
sinc(dnu tau') of the channel width dnu, the antennas' own responses to the source) and ``A``
the apparent flux density (beam x spectrum, Jy). Along each run of evenly spaced channels the
phasor and the time-smearing sine advance by one complex rotation per channel, so per row and
source only a few sines are taken at each run's first channel; the cost is one complex
multiply-add per source, row and channel, on every core (numba).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(parallel=True, cache=True, fastmath=True)
def _accumulate(vis, tau, dtau, gain, amp, t_index, freqs, run_start, run_step, smearing):  # pragma: no cover
    n_rows, n_ch = vis.shape
    n_src = tau.shape[1]
    for row in numba.prange(n_rows):
        t = t_index[row]
        re, im = np.empty(n_src), np.empty(n_src)
        cr, ci = np.empty(n_src), np.empty(n_src)
        sr, si = np.empty(n_src), np.empty(n_src)
        sdr, sdi = np.empty(n_src), np.empty(n_src)
        half = np.empty(n_src)
        for c in range(n_ch):
            f = freqs[c]
            if run_start[c]:  # a run's first channel: the phasors taken directly
                step = run_step[c]
                for k in range(n_src):
                    g, tk = gain[row, k], tau[row, k]
                    c0, s0 = np.cos(2.0 * np.pi * f * tk), np.sin(2.0 * np.pi * f * tk)
                    re[k], im[k] = g.real * c0 - g.imag * s0, g.real * s0 + g.imag * c0
                    cr[k], ci[k] = np.cos(2.0 * np.pi * step * tk), np.sin(2.0 * np.pi * step * tk)
                    # sinc(nu dtau) = sin(pi nu dtau) / (pi nu dtau), its sine advanced like the
                    # phasor (a tiny drift stands for none: the ratio is 1)
                    h = np.pi * dtau[row, k]
                    h = h if abs(h) > 1e-24 else 1e-24
                    half[k] = h
                    sr[k], si[k] = np.cos(h * f), np.sin(h * f)
                    sdr[k], sdi[k] = np.cos(h * step), np.sin(h * step)
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


def channel_runs(freqs_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first channel of a run?, the run's spacing in Hz) for each channel: a run is a stretch
    of evenly spaced channels, ending where the spacing changes (the subbands of a scaled-down
    band, channels left out)."""
    freqs_hz = np.asarray(freqs_hz, dtype=float)
    n = len(freqs_hz)
    start, step = np.zeros(n, dtype=np.bool_), np.zeros(n)
    gaps = np.diff(freqs_hz)
    ends = np.flatnonzero(~np.isclose(gaps[1:], gaps[:-1], rtol=1e-9, atol=0.0)) + 2
    for first, last in zip(np.concatenate([[0], ends]), np.concatenate([ends, [n]])):
        start[first] = True
        step[first:last] = gaps[first] if last - first > 1 else 0.0
    return start, step


def add_point_sources(vis: np.ndarray, tau_s: np.ndarray, dtau_s: np.ndarray, gain: np.ndarray,
                      amplitude_jy: np.ndarray, t_index: np.ndarray, freqs_hz: np.ndarray,
                      smearing: bool = True) -> None:
    """Add the sources' visibilities (module docstring) to ``vis`` (rows, channels; complex64 or
    complex128, in place; its rows contiguous).

    ``tau_s``, ``dtau_s`` (rows, sources): delay and its change across the integration (s);
    ``gain`` (rows, sources): frequency-independent complex factor; ``amplitude_jy`` (times,
    channels, sources): apparent flux density, row r taking time ``t_index[r]``; ``freqs_hz``
    (channels). ``smearing`` False leaves out the time-smearing sinc (``dtau_s`` unused)."""
    start, step = channel_runs(freqs_hz)
    _accumulate(vis, np.ascontiguousarray(tau_s, dtype=np.float64), np.ascontiguousarray(dtau_s, dtype=np.float64),
                np.ascontiguousarray(gain, dtype=np.complex128), np.ascontiguousarray(amplitude_jy, dtype=np.float64),
                np.ascontiguousarray(t_index, dtype=np.int64), np.ascontiguousarray(freqs_hz, dtype=np.float64),
                start, step, bool(smearing))
