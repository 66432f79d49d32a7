"""Search of light curves for extreme scattering events (ESEs) and slow trends.

An ESE (Fiedler et al. 1987) is a plasma lens crossing the line of sight: the flux density
drops for days to months while the lens defocuses the source, with brief brightenings at
ingress and egress where its caustics pass (Clegg, Fey & Lazio 1998). The search fits, at
every centre t0 and duration w of a grid, the symmetric template

    T(t) = -box(t; t0, w) + CAUSTIC * [g(t - t0 + w/2) + g(t - t0 - w/2)]

(box: 1 within w/2 of t0 with edges a tenth of w wide; g: Gaussians of sigma w/10, peak 1) as
flux = a + b T by weighted least squares, and scores the best improvement over a constant,

    score = (chi2_const - chi2_template) / max(1, chi2_template / (N - 2)),

for a dip (b > 0). Dividing by the template fit's reduced chi^2 keeps light curves whose
errors are understated, or that vary some other way, from scoring as ESEs. Slow trends are a
straight line's improvement over a constant, normalised the same way.

Light curves are first averaged per day (weighted; ESEs last days or more, and a source is
measured several times in one transit), so a year of epochs costs a few milliseconds. The
score threshold that makes the false-alarm rate on constant sources 10^-3 per light curve is
measured by ``bench/ese.py``. Times in Unix seconds, fluxes in Jy. Plain Python.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DAY_S = 86400.0
CAUSTIC = 0.5
"""Caustic peak height over the dip's depth in the template."""
WIDTHS_DAYS = tuple(float(w) for w in np.geomspace(4.0, 120.0, 10))
"""Durations of the template grid (days)."""
ESE_THRESHOLD = 25.0
"""Score above which a light curve is an ESE candidate: a false alarm on 10^-3 of constant
light curves of a year of daily epochs (``bench/ese.py``)."""
TREND_THRESHOLD = 25.0
"""Score above which a light curve has a significant monotonic trend."""
MIN_DAYS = 8
"""Light curves with fewer distinct days are not searched."""


@dataclass(frozen=True)
class Search:
    """One light curve's ESE and trend scores. t0 in Unix s, width in days, depth as a fraction
    of the mean flux (positive: a dip), trend in fraction of the mean per year."""

    n_days: int
    ese_score: float
    ese_t0_unix: float
    ese_width_days: float
    ese_depth: float
    trend_score: float
    trend_per_year: float
    ese_candidate: bool
    trend: bool

    def as_dict(self) -> dict:
        return asdict(self)


def not_searched(n_days: int = 0) -> Search:
    return Search(n_days, 0.0, float("nan"), float("nan"), 0.0, 0.0, 0.0, False, False)


def daily(t_unix, flux, err) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted means per UTC day: (mid-time of each day's epochs in days, flux, error)."""
    t, flux, err = (np.asarray(v, float) for v in (t_unix, flux, err))
    day = np.floor(t / DAY_S).astype(np.int64)
    keys, inverse = np.unique(day, return_inverse=True)
    w = 1.0 / err**2
    sw = np.bincount(inverse, w)
    return (np.bincount(inverse, w * t) / sw / DAY_S, np.bincount(inverse, w * flux) / sw, 1.0 / np.sqrt(sw))


def shape(u: np.ndarray) -> np.ndarray:
    """The template against u = |t - t0| / width: -1 in the dip (u < 1/2), a caustic peak of
    CAUSTIC at its edge, 0 beyond."""
    u = np.abs(np.asarray(u, float))
    box = 0.5 * (1.0 - np.tanh((u - 0.5) / 0.05))
    caustic = np.exp(-0.5 * ((u - 0.5) / 0.1) ** 2)
    return -box + CAUSTIC * caustic


def template(t_days: np.ndarray, t0_days: float, width_days: float) -> np.ndarray:
    """The ESE template T at times ``t_days`` (module docstring)."""
    return shape((np.asarray(t_days, float) - t0_days) / width_days)


_STEP = 1e-3
_TABLE = shape(np.arange(0.0, 2.0 + _STEP, _STEP))
"""The shape tabulated to u = 2 (beyond it is below 1e-30): the search looks it up instead of
evaluating a tanh and an exp at every epoch of every trial."""


def _templates(t_days: np.ndarray, t0_days: np.ndarray, width_days: float) -> np.ndarray:
    """Templates at many centres (rows) for one width, from the table."""
    u = np.abs(t_days[None, :] - t0_days[:, None]) / width_days
    return _TABLE[np.minimum(np.rint(u / _STEP).astype(np.int64), len(_TABLE) - 1)]


def _weighted_linear(basis: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares of y = a + b * basis for many bases at once (rows of ``basis``):
    (b, chi2) per row."""
    sw, swy, swyy = w.sum(), (w * y).sum(), (w * y * y).sum()
    swx = basis @ w
    swxx = (basis**2) @ w
    swxy = basis @ (w * y)
    det = sw * swxx - swx**2
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (sw * swxy - swx * swy) / det
        a = (swy - b * swx) / sw
    chi2 = swyy - 2 * a * swy - 2 * b * swxy + a * a * sw + 2 * a * b * swx + b * b * swxx
    bad = ~np.isfinite(b) | (det <= 1e-12 * sw * np.maximum(swxx, 1e-300))
    return np.where(bad, 0.0, b), np.where(bad, np.inf, chi2), np.where(bad, 0.0, a)


def search(t_unix, flux, err) -> Search:
    """Score one light curve (module docstring). Fewer than MIN_DAYS distinct days: not searched."""
    if len(flux) == 0:
        return not_searched()
    t, y, e = daily(t_unix, flux, err)
    n = len(t)
    if n < MIN_DAYS:
        return not_searched(n)
    w = 1.0 / e**2
    mean = float(np.sum(w * y) / np.sum(w))
    chi2_const = float(np.sum(w * (y - mean) ** 2))
    span = t[-1] - t[0]
    bases, grid = [], []
    for width in WIDTHS_DAYS:
        if width > 0.8 * span:
            continue
        centres = np.arange(t[0] + 0.5 * width, t[-1] - 0.5 * width + 1e-9, 0.25 * width)
        bases.append(_templates(t, centres, width))
        grid += [(t0, width) for t0 in centres]
    ese = (0.0, float("nan"), float("nan"), 0.0)
    if bases:
        b, chi2, a = _weighted_linear(np.concatenate(bases), y, w)
        improvement = np.where(b > 0, chi2_const - chi2, 0.0)
        k = int(np.argmax(improvement))
        scale = max(1.0, float(chi2[k]) / max(n - 2, 1))
        depth = float(b[k] / a[k]) if a[k] != 0 else 0.0
        ese = (float(improvement[k]) / scale, grid[k][0] * DAY_S, grid[k][1], depth)
    b, chi2, a = _weighted_linear((t - t.mean())[None, :], y, w)
    trend_score = float(chi2_const - chi2[0]) / max(1.0, float(chi2[0]) / max(n - 2, 1))
    per_year = float(b[0] * 365.25 / a[0]) if a[0] != 0 else 0.0
    return Search(n, ese[0], ese[1], ese[2], ese[3], trend_score, per_year, ese[0] >= ESE_THRESHOLD,
                  trend_score >= TREND_THRESHOLD)


def injected(t_unix, t0_unix: float, width_days: float, depth: float, caustic: float = CAUSTIC) -> np.ndarray:
    """The factor on a source's flux of a simulated ESE of ``depth`` (fraction) centred at
    ``t0_unix`` lasting ``width_days``, with caustic peaks of ``caustic`` times the depth: the
    template's shape, for injection into simulated light curves."""
    profile = template(np.asarray(t_unix, float) / DAY_S, t0_unix / DAY_S, width_days)
    return 1.0 + depth * np.where(profile < 0, profile, profile * caustic / CAUSTIC)
