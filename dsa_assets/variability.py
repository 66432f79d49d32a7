"""Variability statistics of light curves, with the VAST pipeline's definitions.

For a source with flux densities I_i and errors sigma_i (Jy), weights w_i = 1 / sigma_i^2:

- V = std(I, ddof=1) / mean(I): the coefficient of variation;
- eta = N / (N - 1) * (mean(w I^2) - mean(w I)^2 / mean(w)): the weighted reduced chi^2 about
  the weighted mean, ~1 for a constant source with correct errors;
- for a pair of epochs (a, b): Vs = (I_a - I_b) / sqrt(sigma_a^2 + sigma_b^2), the significance
  of the difference, and m = 2 (I_a - I_b) / (I_a + I_b), the modulation index. The pair with the
  largest |Vs| is reported.

A source is flagged variable when eta and V both exceed their thresholds (VAST-style: eta
above its chi^2 tail probability, and a fractional variability worth looking at), or when the
most significant pair has |Vs| >= its threshold and |m| >= m_threshold. Mooley et al.'s 4.3
is a two-epoch threshold; the most significant of a light curve's N(N-1)/2 pairs is the
largest of many, so its threshold rises with N to the |Vs| a constant source's largest pair
exceeds with probability 0.001 (Bonferroni): 4.3 up to 11 epochs, 4.7 at 30, 5.9 at 700.
Without that, a year of a constant source's epochs (300,000 pairs) would reach 4.3 by chance,
and every faint source would be flagged. Likewise across sources: at 0.001 per source a table
of four thousand flags four constant ones every time, so the variability stage sets the
per-source probability from the number of constant sources it may flag in one table
(:func:`per_source_false_alarm`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    eta: float | None = None
    """eta above which a source can be variable; None: the chi^2 p = 0.001 point for its N."""
    v: float = 0.1
    vs: float = 4.3
    """|Vs| of 4.3 is the two-epoch threshold of Mooley et al. (2016) used by VAST; with more
    epochs the most significant pair must reach :func:`pair_threshold`."""
    m: float = 0.26
    false_alarm: float = 1e-3
    """Probability that a constant source with correct errors passes the eta or pair test: the
    tail probability behind :func:`eta_threshold` and :func:`pair_threshold`."""


EXPECTED_FALSE_VARIABLES = 0.1
"""Constant sources a variability table may flag, on average (see :func:`per_source_false_alarm`)."""


def per_source_false_alarm(expected_false: float, n_sources: int, ceiling: float = 1e-3) -> float:
    """The false-alarm probability per source for ``expected_false`` constant sources flagged
    among ``n_sources`` (at most ``ceiling``): a table of thousands of sources at 1e-3 each flags
    a few constant ones on every run."""
    return min(ceiling, expected_false / n_sources) if n_sources > 0 else ceiling


def table_thresholds(n_sources: int, expected_false: float = EXPECTED_FALSE_VARIABLES) -> Thresholds:
    """The thresholds of a variability table of ``n_sources`` sources in which
    ``expected_false`` constant ones may be flagged."""
    return Thresholds(false_alarm=per_source_false_alarm(expected_false, n_sources))


@dataclass(frozen=True)
class Metrics:
    n: int
    mean_flux_jy: float
    weighted_mean_jy: float
    v: float
    eta: float
    vs: float
    m: float
    pair: tuple[int, int]
    """Indices of the most significant pair (-1, -1 with fewer than two points)."""
    variable: bool

    def as_dict(self) -> dict:
        return asdict(self)


def eta(flux: np.ndarray, err: np.ndarray) -> float:
    flux, w = np.asarray(flux, float), 1.0 / np.asarray(err, float) ** 2
    n = len(flux)
    if n < 2:
        return 0.0
    return float(n / (n - 1) * (np.mean(w * flux**2) - np.mean(w * flux) ** 2 / np.mean(w)))


def coefficient_of_variation(flux: np.ndarray) -> float:
    flux = np.asarray(flux, float)
    if len(flux) < 2 or np.mean(flux) == 0:
        return 0.0
    return float(np.std(flux, ddof=1) / np.mean(flux))


PAIR_CANDIDATES = 100
"""Above 4 x this many epochs, the most significant pair is sought among the PAIR_CANDIDATES
highest and lowest fluxes and the most deviant in units of their errors (a year of epochs
holds 3 million pairs; among those candidates the pair found is the true one unless errors
differ several-fold between epochs)."""


def most_significant_pair(flux: np.ndarray, err: np.ndarray) -> tuple[float, float, tuple[int, int]]:
    """(Vs, m, (a, b)) of the pair of epochs with the largest |Vs|."""
    flux, err = np.asarray(flux, float), np.asarray(err, float)
    if len(flux) < 2:
        return 0.0, 0.0, (-1, -1)
    if len(flux) > 4 * PAIR_CANDIDATES:
        k = PAIR_CANDIDATES
        by_flux, by_pull = np.argsort(flux), np.argsort((flux - np.median(flux)) / err)
        keep = np.unique(np.concatenate([by_flux[:k], by_flux[-k:], by_pull[:k], by_pull[-k:]]))
        vs, m, (a, b) = most_significant_pair(flux[keep], err[keep])
        return vs, m, (int(keep[a]), int(keep[b]))
    a, b = np.triu_indices(len(flux), k=1)
    vs = (flux[a] - flux[b]) / np.hypot(err[a], err[b])
    k = int(np.argmax(np.abs(vs)))
    total = flux[a[k]] + flux[b[k]]
    m = 2.0 * (flux[a[k]] - flux[b[k]]) / total if total != 0 else 0.0
    return float(vs[k]), float(m), (int(a[k]), int(b[k]))


def eta_threshold(n: int, p: float = 1e-3) -> float:
    """eta at which a constant source with correct errors has chi^2 tail probability ``p``:
    eta = chi2.isf(p, n - 1) / (n - 1)."""
    from scipy.stats import chi2

    return float(chi2.isf(p, n - 1) / (n - 1)) if n > 1 else np.inf


def pair_threshold(n: int, vs: float = Thresholds.vs, p: float = 1e-3) -> float:
    """|Vs| the most significant of ``n`` epochs' pairs must reach: ``vs``, or the |Vs| that the
    largest of a constant source's n(n-1)/2 pairs exceeds with probability ``p`` (Gaussian
    errors, Bonferroni over the pairs), whichever is larger."""
    from scipy.stats import norm

    pairs = n * (n - 1) / 2
    return max(vs, float(norm.isf(p / (2 * pairs)))) if pairs >= 1 else vs


def metrics(flux, err, thresholds: Thresholds = Thresholds()) -> Metrics:
    flux, err = np.asarray(flux, float), np.asarray(err, float)
    n = len(flux)
    w = 1.0 / err**2 if n else np.zeros(0)
    e, v = eta(flux, err), coefficient_of_variation(flux)
    vs, m, pair = most_significant_pair(flux, err)
    eta_cut = thresholds.eta if thresholds.eta is not None else eta_threshold(n, thresholds.false_alarm)
    variable = n >= 2 and ((e > eta_cut and v > thresholds.v)
                           or (abs(vs) >= pair_threshold(n, thresholds.vs, thresholds.false_alarm)
                               and abs(m) >= thresholds.m))
    return Metrics(n, float(np.mean(flux)) if n else 0.0, float(np.sum(w * flux) / np.sum(w)) if n else 0.0,
                   v, e, vs, m, pair, bool(variable))


EXPECTED_FALSE_NEW_SOURCES_PER_DAY = 0.1
"""Noise peaks that may be called new sources in a day of observation images (and as many in
a day of mosaics), on average (see :func:`new_source_snr`)."""


NEW_SOURCE_IMAGES = 2
"""Looks in which a new source must be detected before it is declared (observation images, or
mosaics of different hours). At Dec +62.7 deg a source stays in the field for about six
consecutive observations, so anything lasting longer than one is seen again; a single image's
noise peak or deconvolution artefact is not. On a simulated day of a constant sky (20
antennas, ``bench/false_variables.py --hours 24``) all 24 sources that single detections
began were such, 5.5-7.1 times their local noise, and none was detected in a second observation image or a
second mosaic."""


def new_source_snr(n_beams: float, expected_false: float, floor: float = 5.0) -> float:
    """The signal-to-noise a detection needs to be called new in an image of ``n_beams``
    independent beams in which ``expected_false`` noise peaks may pass: the Gaussian tail's
    one-sided point (5.7 for 56,000 beams at 0.1 a day over 280 images), at least ``floor``.
    At a fixed 5 sigma every image of that size would offer 0.016 noise peaks, a day 4.5."""
    from scipy.stats import norm

    if n_beams <= 0 or expected_false <= 0:
        return floor
    return max(floor, float(norm.isf(min(expected_false / n_beams, 0.5))))


def is_new_source(peak_jy: float, earlier_rms_jy: list[float], factor: float = 5.0) -> bool:
    """A detection absent from the reference catalogue is new when its peak exceeds ``factor``
    times the lowest rms any earlier image had at its position (it would have been seen)."""
    return bool(earlier_rms_jy) and peak_jy > factor * min(earlier_rms_jy)
