"""Reading solved gains back, to compare them with known ones (a simulation's truth): the total
gain K.B.G per antenna, channel and polarisation, through CASA's own applycal on a probe copy,
so no convention of CASA's tables is re-implemented here. Plain Python.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .. import fsutil, qa
from .gain_solutions import apply
from .ms_inspect import casa_table, row_chunks


def antenna_gains(ms: Path | str, tables: list[Path | str], scratch_dir: Path | None = None) -> dict:
    """The total antenna gains K.B.G that ``tables`` apply to ``ms``, read through CASA's applycal
    on a probe copy whose data are all 1: CORRECTED(i, j) = 1 / (G_i G_j*).

    Returns {"antennas": ids, "gains": complex (Nant, Nchan, Npol) with each polarisation's phase
    referred to the reference antenna (the table's), "refant": id}; antennas without solutions are
    NaN. Times are averaged (the tables hold one solution per observation).
    """
    with fsutil.scratch_directory(scratch_dir, "gainprobe-") as tmp:
        probe = tmp / "probe.ms"
        shutil.copytree(ms, probe)
        with casa_table(probe, readonly=False) as tb:
            for start, n in row_chunks(tb.nrows()):
                d = tb.getcol("DATA", startrow=start, nrow=n)
                tb.putcol("DATA", np.ones_like(d), startrow=start, nrow=n)
                tb.putcol("FLAG", np.zeros(d.shape, bool), startrow=start, nrow=n)
        apply(probe, tables)
        with casa_table(Path(tables[-1])) as tb:
            refant = int(np.bincount(tb.getcol("ANTENNA2")).argmax())
        with casa_table(probe) as tb:
            a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
            corr = tb.getcol("CORRECTED_DATA")
            flag = tb.getcol("FLAG")
    corr = np.where(flag, np.nan, corr)
    ants = np.unique(np.concatenate([a1, a2]))
    gains = np.full((ants.max() + 1,) + corr.shape[1:], np.nan + 0j)
    for ant in ants:
        auto = (a1 == ant) & (a2 == ant)
        amp = 1.0 / np.sqrt(np.nanmean(np.abs(corr[auto]), axis=0)) if auto.any() else np.nan
        # 1 / (G_ref G_j*) on (ref, j), 1 / (G_j G_ref*) on (j, ref); G_ref is real
        if ant == refant:
            phase = np.ones(corr.shape[1:])
        else:
            as2 = (a1 == refant) & (a2 == ant)
            as1 = (a1 == ant) & (a2 == refant)
            p = np.concatenate([np.conj(1.0 / corr[as2]), 1.0 / corr[as1]])
            phase = np.exp(1j * np.angle(np.nanmean(p, axis=0))) if len(p) else np.nan
        gains[ant] = amp * phase
    return {"antennas": ants, "gains": gains, "refant": refant}


def solution_noise(tables: list[Path | str], shape: tuple[int, int, int]) -> np.ndarray:
    """The fractional noise (1 sigma, in amplitude; in radians of phase alike) of the total gain
    that ``tables`` apply, per antenna, channel and polarisation (``shape``): each complex-gain
    table's 1 / SNR per solution, averaged over its solutions in time, added in quadrature
    (delay tables, whose SNR is of a delay, are left out)."""
    variance = np.zeros(shape)
    for path in tables:
        with casa_table(Path(path)) as tb:
            if "CPARAM" not in tb.colnames() or "SNR" not in tb.colnames():
                continue
            ant, snr = tb.getcol("ANTENNA1"), tb.getcol("SNR")  # snr (rows, chan, pol)
            ok = ~tb.getcol("FLAG") & (snr > 0)
        inverse = np.where(ok, 1.0 / np.where(ok, snr, 1.0) ** 2, 0.0)
        for a in np.unique(ant):
            rows = ant == a
            n = np.maximum(ok[rows].sum(axis=0), 1)
            # the mean of n solutions: its variance the mean of theirs over n
            variance[a] += np.broadcast_to(inverse[rows].sum(axis=0) / n**2, shape[1:])
    return np.sqrt(variance)


def gain_errors(measured: dict, expected: np.ndarray, noise: np.ndarray | None = None,
                noise_sigmas: float = qa.GAIN_NOISE_SIGMAS) -> dict:
    """Compare gains from :func:`antenna_gains` with ``expected`` gains (Nants, Nchan, Npol, in
    CASA's convention) on the measured antennas, after referring both to the reference
    antenna's phase. Returns the worst and median amplitude error (fraction) and phase error
    (deg) over antennas, channels and polarisations; with the solutions' ``noise``
    (:func:`solution_noise`), also the worst of the errors that exceed ``noise_sigmas`` times
    it (``*_unexplained_max``: 0 when the noise explains every error)."""
    ants, ref = measured["antennas"], measured["refant"]
    exp = expected / (expected[ref] / np.abs(expected[ref]))[None]
    ratio = measured["gains"][ants] / exp[ants]
    ok = np.isfinite(ratio)
    amp = np.abs(np.abs(ratio[ok]) - 1.0)
    phase = np.abs(np.degrees(np.angle(ratio[ok])))
    out = {"amplitude_error_max": float(amp.max()), "amplitude_error_median": float(np.median(amp)),
           "phase_error_max_deg": float(phase.max()), "phase_error_median_deg": float(np.median(phase)),
           "antennas_compared": int(len(ants)), "solutions_missing": int((~ok).sum())}
    if noise is not None:
        sigma = noise[ants][ok]
        out.update({"noise_median": float(np.median(sigma)),
                    "amplitude_unexplained_max": float(np.max(amp, where=amp > noise_sigmas * sigma, initial=0.0)),
                    "phase_unexplained_max_deg": float(np.max(phase, where=np.radians(phase) > noise_sigmas * sigma,
                                                              initial=0.0))})
    return out

