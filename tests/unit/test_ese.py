"""The ESE and trend search: a dip with caustics is found where it is, a constant source and a
flare are not ESEs, a slow trend is a trend, and a short light curve is not searched."""

from __future__ import annotations

import numpy as np
import pytest

from dsa_assets import ese

DAY = 86400.0


def a_year(seed: int, per_day: int = 5):
    rng = np.random.default_rng(seed)
    days = np.flatnonzero(rng.uniform(size=365) < 0.9)
    t = np.concatenate([1.8e9 + d * DAY + 300.0 * np.arange(per_day) for d in days])
    return rng, t


def noisy(rng, t, factor, snr=10.0, flux=0.05):
    err = np.full_like(t, flux / snr)
    return flux * factor + rng.normal(0, err), err


def test_daily_means_are_weighted_and_their_errors_shrink():
    t = np.array([0.0, 100.0, DAY + 5.0])
    days, flux, err = ese.daily(t, [1.0, 3.0, 2.0], [1.0, 1.0, 0.5])
    assert list(flux) == pytest.approx([2.0, 2.0]) and list(err) == pytest.approx([1 / np.sqrt(2), 0.5])
    assert days[0] == pytest.approx(50.0 / DAY)


def test_an_ese_is_found_at_its_time_and_duration():
    rng, t = a_year(1)
    centre = t[0] + 180 * DAY
    result = ese.search(t, *noisy(rng, t, ese.injected(t, centre, 30.0, 0.2)))
    assert result.ese_candidate and result.ese_score > 10 * ese.ESE_THRESHOLD
    assert abs(result.ese_t0_unix - centre) < 0.25 * 30 * DAY
    assert 15 <= result.ese_width_days <= 60 and 0.1 < result.ese_depth < 0.3
    assert not result.trend


def test_constant_sources_and_flares_are_not_eses():
    for seed in range(5):
        rng, t = a_year(10 + seed)
        assert not ese.search(t, *noisy(rng, t, np.ones_like(t))).ese_candidate
    rng, t = a_year(20)
    flare = 1 + 0.5 * np.exp(-0.5 * ((t - t[0] - 100 * DAY) / (5 * DAY)) ** 2)
    assert not ese.search(t, *noisy(rng, t, flare)).ese_candidate, "a brightening is no dip"


def test_understated_errors_do_not_make_eses():
    rng, t = a_year(30)
    flux, err = noisy(rng, t, np.ones_like(t))
    flux = 0.05 + 3 * (flux - 0.05)   # noise three times the stated errors
    result = ese.search(t, flux, err)
    assert not result.ese_candidate and not result.trend


def test_a_slow_trend_is_a_trend_and_a_short_curve_is_not_searched():
    rng, t = a_year(40)
    result = ese.search(t, *noisy(rng, t, 1 + 0.2 * (t - t.mean()) / (365.25 * DAY)))
    assert result.trend and result.trend_per_year == pytest.approx(0.2, abs=0.03)
    short = ese.search(t[:20], *noisy(rng, t[:20], np.ones(20)))
    assert short.n_days < ese.MIN_DAYS and short.ese_score == 0 and not short.ese_candidate
