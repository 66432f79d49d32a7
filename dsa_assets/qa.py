"""Quality checks as plain code: each check's logic and its named tolerances, with no Dagster.

The asset checks (:mod:`dsa_assets.assets.checks`) call these and only turn the answer into a
Dagster result; a notebook or a benchmark can call them the same way. Each function returns
the list of problems (empty: passed) or a small record. Comparisons with a simulation's truth
take a :class:`dsa_assets.truth.Truth` and are only made where one exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# -- Measurement Sets ------------------------------------------------------------------------

MS_POLARIZATIONS = 2
"""XX and YY."""


def ms_problems(result, found: dict, n_subbands: int) -> list[str]:
    """A converted Measurement Set (``found``: :func:`dsa_assets.stages.ms_inspect.inspect_ms`)
    against what its conversion wrote (``result``: a ConversionResult): rows, channels and
    polarisations agree, and exactly the missing subbands' channels are fully flagged."""
    problems = []
    expected = {"rows": result.n_rows, "channels": result.n_channels, "polarizations": MS_POLARIZATIONS}
    for key, value in expected.items():
        if found[key] != value:
            problems.append(f"{result.group_id}: {key} {found[key]}, expected {value}")
    flagged = found["flagged_channel_fraction"]
    expected_flagged = len(result.subbands_missing) / n_subbands
    if abs(flagged - expected_flagged) > 1e-6:
        problems.append(f"{result.group_id}: {flagged:.3f} of channels fully flagged, expected {expected_flagged:.3f}")
    return problems


# -- calibration -----------------------------------------------------------------------------

CALIBRATOR_FLUX_TOLERANCE = 0.02
"""The calibrated calibrator's flux within this fraction of its model."""
MAX_PHASE_SCATTER_DEG = 10.0
"""The calibrated calibrator's visibility phases scatter less than this (deg)."""
GAIN_AMPLITUDE_TOLERANCE = 0.01
"""Solved total gains within this fraction of the simulated ones in amplitude ..."""
GAIN_PHASE_TOLERANCE_DEG = 1.0
"""... and this many degrees in phase, unless the solutions' noise explains the error (within
GAIN_NOISE_SIGMAS of it)."""
GAIN_NOISE_SIGMAS = 5.0
MAX_FLAGGED_FRACTION = 0.5
"""A calibrated Measurement Set with more of its data flagged fails its check."""


def solution_problems(quality, min_gain_snr: float, max_flagged_solutions: float) -> list[str]:
    """Why a solution (its :class:`~dsa_assets.stages.gain_solutions.SolutionQuality`) should
    not be used (empty: usable): median gain SNR below ``min_gain_snr``, or a table with more
    than ``max_flagged_solutions`` of it flagged."""
    problems = []
    g = quality.tables["G"]
    if (g.median_snr or 0.0) < min_gain_snr:
        problems.append(f"median gain SNR {g.median_snr} < {min_gain_snr}")
    for kind, q in quality.tables.items():
        if q.flagged_fraction > max_flagged_solutions:
            problems.append(f"{kind}: {q.flagged_fraction:.0%} of solutions flagged")
    return problems


def calibrator_problems(quality) -> list[str]:
    """The calibrated calibrator against its model (a SolutionQuality): flux ratio and phase
    scatter."""
    problems = []
    if abs(quality.flux_ratio - 1.0) > CALIBRATOR_FLUX_TOLERANCE:
        problems.append(f"calibrated flux / model = {quality.flux_ratio:.4f}")
    if quality.phase_scatter_deg > MAX_PHASE_SCATTER_DEG:
        problems.append(f"phase scatter {quality.phase_scatter_deg:.1f} deg")
    return problems


def gains_miss_truth(errors: dict) -> bool:
    """Whether solved gains (:func:`dsa_assets.stages.calibration.gain_errors`) miss the truth:
    an error beyond the tolerances that the solutions' own noise does not explain (a bandpass
    solved per channel at 20 antennas and the real SEFD is noisier than 1%)."""
    amplitude = errors.get("amplitude_unexplained_max", errors["amplitude_error_max"])
    phase = errors.get("phase_unexplained_max_deg", errors["phase_error_max_deg"])
    return amplitude > GAIN_AMPLITUDE_TOLERANCE or phase > GAIN_PHASE_TOLERANCE_DEG or bool(errors["solutions_missing"])


# -- images ----------------------------------------------------------------------------------

MAX_RMS_OVER_THERMAL = 1.5
"""An image's residual rms at most this many times the thermal expectation from the SEFD."""
RECOVERY_SNR = 10.0
"""Simulated sources brighter than this many sigma are held to their true position and flux."""
RECOVERY_FLUX_TOLERANCE = 0.05
"""... within this fraction of the true flux (plus ``NOISE_ALLOWANCE_SIGMA`` sigma) ..."""
RECOVERY_POSITION_BEAMS = 0.2
"""... and within this fraction of the beam's minor axis of their true position."""
NOISE_ALLOWANCE_SIGMA = 3.0
"""Flux tolerances allow this many times a measurement's noise beside their fraction."""


def recovery_problems(rows: list[dict], flux_tolerance: float = RECOVERY_FLUX_TOLERANCE) -> list[str]:
    """Simulated sources measured off their truth (rows of
    :func:`dsa_assets.stages.imaging.source_recovery`: fluxes in Jy, offsets and beam in arcsec)
    by more than ``RECOVERY_POSITION_BEAMS`` of the beam, or in flux by more than the
    tolerance plus ``NOISE_ALLOWANCE_SIGMA`` times the noise."""
    problems = []
    for r in rows:
        if r["offset_arcsec"] > RECOVERY_POSITION_BEAMS * r["beam_minor_arcsec"]:
            problems.append(f"{r['name']}: {r['offset_arcsec']:.1f}\" from its true position")
        allowed = flux_tolerance * r["true_flux_jy"] + NOISE_ALLOWANCE_SIGMA * r["noise_jy"]
        if abs(r["flux_jy"] - r["true_flux_jy"]) > allowed:
            problems.append(f"{r['name']}: {r['flux_jy']:.4f} Jy measured, {r['true_flux_jy']:.4f} Jy true")
    return problems


def noise_passes(rms_over_thermal: float) -> bool:
    return bool(rms_over_thermal <= MAX_RMS_OVER_THERMAL)


# -- photometry ------------------------------------------------------------------------------

PULL_SNR = 5.0
"""Forced fluxes of simulated sources whose true flux is above this many times the
measurement's error enter the pull distribution. (Chosen by the measured signal-to-noise,
the sources near the cut that noise lifted above it are in and those it lowered are out:
the demo's pull means read +0.13 higher, one image's +0.51 against +0.36.)"""
MIN_PULLS = 5
"""Fewer pulls than this say nothing: the check passes and says so."""
MAX_PULL_MEAN = 0.5
MAX_PULL_STD = 2.0


@dataclass(frozen=True)
class PullSummary:
    """Pulls (measured - true) / error of forced fluxes against a simulation's truth."""

    n: int
    mean: float | None
    std: float | None

    @property
    def enough(self) -> bool:
        return self.n >= MIN_PULLS

    @property
    def passed(self) -> bool:
        """Too few pulls say nothing, and pass."""
        return not self.enough or (abs(self.mean) < MAX_PULL_MEAN and self.std < MAX_PULL_STD)


def forced_pulls(measurements: list[dict], truth) -> list[float]:
    """Pulls of forced ``measurements`` (products-database rows: source_name, flux_jy,
    flux_err_jy; Jy) of the sources in ``truth`` whose true flux is above ``PULL_SNR`` times
    the measurement's error."""
    true_flux = {s.name: s.flux_jy for s in truth.sources}
    return [(m["flux_jy"] - true_flux[m["source_name"]]) / m["flux_err_jy"] for m in measurements
            if m["source_name"] in true_flux and m["flux_err_jy"]
            and true_flux[m["source_name"]] > PULL_SNR * m["flux_err_jy"]]


def summarize_pulls(pulls: list[float]) -> PullSummary:
    if not pulls:
        return PullSummary(0, None, None)
    return PullSummary(len(pulls), float(np.mean(pulls)), float(np.std(pulls)))


# -- images held to the reference catalogue ---------------------------------------------------

CATALOGUE_SNR = 20.0
"""Reference sources measured above this many sigma, and not flagged unreliable, hold an image
to the catalogue (forced fluxes for the flux scale, matched blind detections for the positions)."""
MIN_CATALOGUE_SOURCES = 3
"""Fewer such sources say nothing about an image: it is neither passed nor failed on them."""
FLUX_SCALE_TOLERANCE = 0.10
"""An image's median measured / catalogue flux is within this of 1."""
ASTROMETRY_TOLERANCE_BEAMS = 0.2
"""An image's median offset from the catalogue positions is within this fraction of the
restoring beam's minor axis."""
UNRELIABLE_FLAGS = ("blend", "low_beam")
"""Photometry's flags of a measurement it cannot vouch for: its source could not be separated
from a neighbour, or lies where the primary beam is low (``PhotometryConfig.low_beam``)."""
EXCLUDED_FLAGS = ("bad_image", *UNRELIABLE_FLAGS)
"""Measurement flags that keep a measurement out of light-curve statistics: its image failed
the catalogue checks, or photometry cannot vouch for it."""


@dataclass(frozen=True)
class CatalogueComparison:
    """An image's measurements against the reference catalogue. Fluxes as ratios, offsets in
    arcsec (RA offsets times cos Dec)."""

    n_flux: int
    flux_ratio: float | None
    """Median measured / catalogue flux of the bright reference sources photometry vouches for
    (not blended, where the primary beam is not low)."""
    flux_scatter: float | None
    """Robust standard deviation (1.4826 MAD) of those ratios."""
    n_position: int
    offset_ra_arcsec: float | None
    offset_dec_arcsec: float | None

    def problems(self, beam_minor_arcsec: float) -> list[str]:
        """Why the image fails the catalogue (empty: it passes, or too few sources to tell)."""
        found = []
        if self.n_flux >= MIN_CATALOGUE_SOURCES and abs(self.flux_ratio - 1.0) > FLUX_SCALE_TOLERANCE:
            found.append(f"flux scale {self.flux_ratio:.3f} of the catalogue over {self.n_flux} sources")
        if self.n_position >= MIN_CATALOGUE_SOURCES:
            offset = float(np.hypot(self.offset_ra_arcsec, self.offset_dec_arcsec))
            if offset > ASTROMETRY_TOLERANCE_BEAMS * beam_minor_arcsec:
                found.append(f"positions off by {offset:.1f} arcsec over {self.n_position} sources")
        return found

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def compare_with_catalogue(measurements, reference: dict, freq_hz: float | None = None) -> CatalogueComparison:
    """``measurements`` (records with source, kind, flux_jy, flux_err_jy, flags, ra_deg,
    dec_deg, matched) against ``reference`` (name -> catalogue source with ra_deg, dec_deg,
    flux_jy at 1.4 GHz, spectral_index), catalogue fluxes taken to ``freq_hz`` (Hz) when given."""
    ratios, d_ra, d_dec = [], [], []
    for m in measurements:
        flags = m.flags or ""
        if m.flux_err_jy <= 0 or m.flux_jy / m.flux_err_jy < CATALOGUE_SNR or any(f in flags for f in UNRELIABLE_FLAGS):
            continue
        if m.kind == "forced" and m.source in reference:
            src = reference[m.source]
            expected = src.flux_jy * ((freq_hz / 1.4e9) ** src.spectral_index if freq_hz else 1.0)
            if expected > 0:
                ratios.append(m.flux_jy / expected)
        elif m.kind == "blind" and m.matched in reference:
            src = reference[m.matched]
            d_ra.append(((m.ra_deg - src.ra_deg + 180.0) % 360.0 - 180.0) * np.cos(np.radians(src.dec_deg)) * 3600.0)
            d_dec.append((m.dec_deg - src.dec_deg) * 3600.0)
    ratio = float(np.median(ratios)) if ratios else None
    scatter = float(1.4826 * np.median(np.abs(np.asarray(ratios) - ratio))) if ratios else None
    return CatalogueComparison(len(ratios), ratio, scatter, len(d_ra),
                               float(np.median(d_ra)) if d_ra else None, float(np.median(d_dec)) if d_dec else None)


# -- imager cross-check ----------------------------------------------------------------------

CROSSCHECK_SNR = 10.0
"""Sources the WSClean image detects above this many sigma are compared."""
CROSSCHECK_TOLERANCE = 0.03
"""WSClean and tclean fluxes agree within this fraction (plus ``NOISE_ALLOWANCE_SIGMA`` sigma)."""


def imagers_agree(flux_a: float, flux_b: float, sigma: float) -> bool:
    return abs(flux_a - flux_b) <= CROSSCHECK_TOLERANCE * abs(flux_a) + NOISE_ALLOWANCE_SIGMA * sigma
