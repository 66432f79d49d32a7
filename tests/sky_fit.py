"""Least-squares fit of a point-source sky to a Measurement Set, read the way CASA images it.

CASA: V(u, v, w) = sum_k S_k exp(+2 pi i (u l_k + v m_k + w (n_k - 1))), UVW in wavelengths
from the MS UVW column, (l, m, n) of each source relative to the FIELD PHASE_DIR (J2000).
Each source's column of the design matrix carries its primary-beam attenuation per
integration, its spectral shape and its time and bandwidth smearing (the correlator averages
each integration about the meridian's position at its middle, each channel over 244 kHz), so
the fitted coefficient is its true flux density.
"""

from __future__ import annotations

import astropy.units as u
import numpy as np
from astropy.time import Time

from dsa_assets import geometry
from dsa_assets.sim.sky import Truth


def read_ms(path, column="DATA"):
    import casatools

    tb = casatools.table()
    tb.open(str(path))
    cols = {c: tb.getcol(c) for c in ("FLAG", "UVW", "TIME", "ANTENNA1", "ANTENNA2", "INTERVAL")}
    cols["DATA"] = tb.getcol(column)
    tb.close()
    tb.open(f"{path}/SPECTRAL_WINDOW")
    cols["FREQ"] = tb.getcol("CHAN_FREQ")[:, 0]
    cols["CHAN_WIDTH"] = abs(tb.getcol("CHAN_WIDTH")[0, 0])
    tb.close()
    tb.open(f"{path}/ANTENNA")
    cols["POSITION"] = tb.getcol("POSITION").T  # (nant, 3) ITRF metres
    tb.close()
    tb.open(f"{path}/FIELD")
    cols["PHASE_DIR"] = tb.getcol("PHASE_DIR")[:, 0, 0]
    tb.close()
    tb.done()
    return cols


def lmn(ra, dec, ra0, dec0):
    l = np.cos(dec) * np.sin(ra - ra0)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(ra - ra0)
    return l, m, np.sqrt(1 - l**2 - m**2)


def fit_sources(ms_path, truth: Truth, column="DATA"):
    """Fit the truth's sources to ``column`` of the MS. Returns (fitted flux densities (Jy),
    residual std per real component (Jy), n points)."""
    ms = read_ms(ms_path, column)
    cross = ms["ANTENNA1"] != ms["ANTENNA2"]
    data = 0.5 * (ms["DATA"][0] + ms["DATA"][1])[:, cross]  # Stokes I, (nchan, nrow)
    flag = (ms["FLAG"][0] | ms["FLAG"][1])[:, cross]
    uvw = ms["UVW"][:, cross]
    freqs = ms["FREQ"]
    utimes, tidx = np.unique(ms["TIME"][cross], return_inverse=True)
    times = Time(utimes / 86400.0, format="mjd", scale="utc")
    site = geometry.default_site()
    s0 = geometry.meridian_unit_vectors(truth.pointing_dec_rad, times, site)
    ra0, dec0 = ms["PHASE_DIR"]
    # smearing: each integration tracked the meridian's ICRS position at its middle
    half = 0.5 * float(ms["INTERVAL"][0]) * u.s
    edges = Time(np.concatenate([(times - half).jd, (times + half).jd]), format="jd", scale="utc")
    centres = geometry.meridian_icrs(truth.pointing_dec_rad, times, site)
    c = geometry.icrs_unit_vectors(centres.ra.rad, centres.dec.rad, edges, site)
    k = np.arange(len(times))
    centre_drift = c[k, len(times) + k] - c[k, k]  # (nt, 3)
    baseline = (ms["POSITION"][ms["ANTENNA2"]] - ms["POSITION"][ms["ANTENNA1"]])[cross] / 2.99792458e8  # (nrow, 3) s
    columns = []
    for src in truth.sources:
        ra, dec = np.radians(src.ra_deg), np.radians(src.dec_deg)
        l, m, n = lmn(ra, dec, ra0, dec0)
        s = geometry.icrs_unit_vectors(np.array([ra]), np.array([dec]), times, site)[0]
        beam = geometry.airy_power_beam(np.sum(s * s0, axis=-1)[:, None], freqs[None, :])  # (nt, nchan)
        phase = 2 * np.pi * (uvw[0] * l + uvw[1] * m + uvw[2] * (n - 1))[None, :] * freqs[:, None] / 2.99792458e8
        spectrum = (freqs / 1.4e9) ** src.spectral_index
        s_edges = geometry.icrs_unit_vectors(np.array([ra]), np.array([dec]), edges, site)[0]
        drift = np.sum(((s_edges[len(times):] - s_edges[:len(times)]) - centre_drift)[tidx] * baseline, axis=1)
        tau = np.sum((s - s0)[tidx] * baseline, axis=1)
        smear = np.sinc(drift[None, :] * freqs[:, None]) * np.sinc(ms["CHAN_WIDTH"] * tau)[None, :]
        columns.append((beam[tidx].T * spectrum[:, None] * smear * np.exp(1j * phase))[~flag])
    a = np.stack(columns, axis=1)
    d = data[~flag]
    design = np.concatenate([a.real, a.imag])
    target = np.concatenate([d.real, d.imag])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    resid = target - design @ coef
    return coef, float(np.std(resid)), len(d)
