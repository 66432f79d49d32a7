"""Association of blind detections across epochs by the de Ruiter radius, the method of TraP
(Swinbank et al. 2015) and the VAST pipeline (Pintaldi et al. 2022).

Two positions (a1, d1) +- (sa1, sd1) and (a2, d2) +- (sa2, sd2), errors in arcsec on the sky
(sa along RA, already multiplied by cos Dec), are at de Ruiter radius

    r = sqrt( (da cos d)^2 / (sa1^2 + sa2^2) + dd^2 / (sd1^2 + sd2^2) )

(dimensionless). For two measurements of one source with Gaussian errors r follows a Rayleigh
distribution, P(r > R) = exp(-R^2 / 2): the default limit 5.68 (TraP's and VAST's) loses one
true pair in 10^7. Pairs further apart than ``max_separation_beams`` restoring-beam major axes
are never associated (VAST's beam-width limit), whatever their errors.

A detection's positional error is Condon's (1997) for a point source fitted with the beam,
sqrt(2) s / SNR along each axis with s the beam's Gaussian sigma along that axis (FWHM / 2.355),
with a systematic term (calibration phases, the image's astrometric offset) added in quadrature.

An image's detections are associated one to one: candidate pairs in order of increasing r, each
known source taking at most one detection of the image and each detection one source. A
detection left over starts a new identity, whose position is then the error-weighted mean of
its detections. Plain Python: no Dagster, no database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DE_RUITER_LIMIT = 5.68
"""Largest de Ruiter radius of an association (TraP's and VAST's default)."""
MAX_SEPARATION_BEAMS = 1.5
"""Largest separation of an association, in restoring-beam major axes (VAST's default)."""
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class Position:
    """A named position with its 1-sigma errors: ICRS degrees, errors in arcsec on the sky."""

    name: str
    ra_deg: float
    dec_deg: float
    ra_err_arcsec: float
    dec_err_arcsec: float


def beam_axis_fwhm(bmaj_arcsec: float, bmin_arcsec: float, bpa_deg: float) -> tuple[float, float]:
    """The restoring beam's FWHM (arcsec) along RA and along Dec: the radius of its half-power
    ellipse (major axis at position angle ``bpa_deg``, east of north) in those directions."""
    # angle from the major axis: RA (east) lies at PA 90 deg, Dec (north) at PA 0
    def radius(psi):
        return bmaj_arcsec * bmin_arcsec / np.hypot(bmin_arcsec * np.cos(psi), bmaj_arcsec * np.sin(psi))

    pa = np.radians(bpa_deg)
    return float(radius(np.pi / 2 - pa)), float(radius(-pa))


def position_errors(snr, beam_arcsec: tuple[float, float, float], systematic_arcsec: float) -> tuple:
    """1-sigma errors (arcsec) along RA and Dec of detections at signal-to-noise ``snr`` (array)
    fitted with a beam of (major, minor FWHM in arcsec, PA in deg): Condon (1997) for a point
    source, sqrt(2) * FWHM / 2.355 / SNR per axis, with ``systematic_arcsec`` in quadrature."""
    fwhm_ra, fwhm_dec = beam_axis_fwhm(*beam_arcsec)
    snr = np.maximum(np.asarray(snr, float), 1e-3)
    fit_ra = np.sqrt(2.0) * fwhm_ra / FWHM_PER_SIGMA / snr
    fit_dec = np.sqrt(2.0) * fwhm_dec / FWHM_PER_SIGMA / snr
    return np.hypot(fit_ra, systematic_arcsec), np.hypot(fit_dec, systematic_arcsec)


def de_ruiter(ra1, dec1, ra_err1, dec_err1, ra2, dec2, ra_err2, dec_err2) -> np.ndarray:
    """de Ruiter radius between positions (degrees) with errors (arcsec); broadcasts."""
    ra1, dec1, ra2, dec2 = (np.asarray(v, float) for v in (ra1, dec1, ra2, dec2))
    dra = (ra1 - ra2 + 180.0) % 360.0 - 180.0
    mean_dec = np.radians(0.5 * (dec1 + dec2))
    x = dra * np.cos(mean_dec) * 3600.0
    y = (dec1 - dec2) * 3600.0
    return np.sqrt(x**2 / (np.square(ra_err1) + np.square(ra_err2)) + y**2 / (np.square(dec_err1) + np.square(dec_err2)))


def known_positions(sources, default_error_arcsec: float) -> list[Position]:
    """Catalogue-like ``sources`` (name, ra_deg, dec_deg, optional position_error_arcsec per
    axis) as positions; those without an error get ``default_error_arcsec``."""
    return [Position(s.name, s.ra_deg, s.dec_deg, *(2 * [getattr(s, "position_error_arcsec", None) or default_error_arcsec]))
            for s in sources]


def _unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def associate(detections: list[Position], known: list[Position], max_separation_arcsec: float,
              limit: float = DE_RUITER_LIMIT) -> list[tuple[str | None, float]]:
    """For each of one image's ``detections``: the ``known`` source it is associated with and
    their de Ruiter radius, or (None, nan) when none is within ``limit`` and
    ``max_separation_arcsec`` (one to one, closest in r first: module docstring)."""
    from scipy.spatial import cKDTree

    out: list[tuple[str | None, float]] = [(None, float("nan"))] * len(detections)
    if not detections or not known:
        return out
    chord = 2.0 * np.sin(np.radians(max_separation_arcsec / 3600.0) / 2.0)
    tree = cKDTree(_unit_vectors([k.ra_deg for k in known], [k.dec_deg for k in known]))
    near = tree.query_ball_point(_unit_vectors([d.ra_deg for d in detections], [d.dec_deg for d in detections]), chord)
    pairs = []
    for i, candidates in enumerate(near):
        if not candidates:
            continue
        d, ks = detections[i], [known[j] for j in candidates]
        r = de_ruiter(d.ra_deg, d.dec_deg, d.ra_err_arcsec, d.dec_err_arcsec,
                      [k.ra_deg for k in ks], [k.dec_deg for k in ks],
                      [k.ra_err_arcsec for k in ks], [k.dec_err_arcsec for k in ks])
        pairs += [(float(rj), i, j) for rj, j in zip(r, candidates) if rj <= limit]
    taken_detections, taken_known = set(), set()
    for r, i, j in sorted(pairs):
        if i in taken_detections or j in taken_known:
            continue
        out[i] = (known[j].name, r)
        taken_detections.add(i)
        taken_known.add(j)
    return out


def weighted_position(ra_deg, dec_deg, ra_err_arcsec, dec_err_arcsec) -> tuple[float, float, float, float]:
    """The error-weighted mean of positions (degrees, errors in arcsec) and its errors:
    (ra_deg, dec_deg, ra_err_arcsec, dec_err_arcsec). RA is averaged as offsets from the first
    position, so a source at RA 0 does not average to 180."""
    ra, dec = np.asarray(ra_deg, float), np.asarray(dec_deg, float)
    w_ra, w_dec = 1.0 / np.square(ra_err_arcsec), 1.0 / np.square(dec_err_arcsec)
    mean_dec = float(np.sum(w_dec * dec) / np.sum(w_dec))
    offsets = (ra - ra[0] + 180.0) % 360.0 - 180.0
    mean_ra = float((ra[0] + np.sum(w_ra * offsets) / np.sum(w_ra)) % 360.0)
    return mean_ra, mean_dec, float(1.0 / np.sqrt(np.sum(w_ra))), float(1.0 / np.sqrt(np.sum(w_dec)))
