"""The compiled sum of point sources' visibilities, against the formula written out directly."""

from __future__ import annotations

import numpy as np
import pytest

from dsa_assets import constants as C
from dsa_assets.geometry import SPEED_OF_LIGHT_M_S
from dsa_assets.stages.point_sources import add_point_sources, channel_runs

FULL_BAND = C.TOP_CHANNEL_FREQ_HZ - np.arange(768) * C.CHANNEL_WIDTH_HZ
SUBBAND_RUNS = np.concatenate([C.subband_frequencies_hz(s, np.arange(0, 48, 12)) for s in range(16)])
UNEVEN = np.array([1.30e9, 1.31e9, 1.35e9, 1.36e9, 1.37e9, 1.45e9])


def direct(tau, dtau, gain, amp, t_index, freqs, smearing):
    """sum_k A g exp(2 pi i nu tau) sinc(nu dtau), one complex exponential per visibility."""
    phase = np.exp(2j * np.pi * tau[:, :, None] * freqs[None, None, :])  # (rows, src, chan)
    smear = np.sinc(dtau[:, :, None] * freqs[None, None, :]) if smearing else 1.0
    a = np.moveaxis(amp[t_index], -1, 1)  # (rows, src, chan)
    return np.sum(a * gain[:, :, None] * phase * smear, axis=1)


@pytest.mark.parametrize("freqs", [FULL_BAND, SUBBAND_RUNS, UNEVEN, FULL_BAND[:1]], ids=["band", "runs", "uneven", "one"])
@pytest.mark.parametrize("smearing", [True, False])
def test_the_compiled_sum_equals_the_formula(freqs, smearing):
    """Evenly spaced channels (a full band), runs of them (a scaled-down band's subbands),
    uneven ones and a single channel; delays of the longest baselines (3 km), time smearing from
    none to a turn of phase per channel's worth of delay."""
    rng = np.random.default_rng(3)
    rows, sources, times = 40, 5, 3
    tau = rng.uniform(-3000.0, 3000.0, (rows, sources)) / SPEED_OF_LIGHT_M_S
    dtau = rng.uniform(-3.0, 3.0, (rows, sources)) / SPEED_OF_LIGHT_M_S
    dtau[0] = 0.0  # no drift: the sinc is 1
    gain = rng.normal(size=(rows, sources)) + 1j * rng.normal(size=(rows, sources))
    amp = rng.uniform(0.1, 10.0, (times, len(freqs), sources))
    t_index = rng.integers(0, times, rows)
    vis = np.full((rows, len(freqs)), 1.0 + 2.0j)  # added to, not overwritten
    add_point_sources(vis, tau, dtau, gain, amp, t_index, freqs, smearing)
    expected = 1.0 + 2.0j + direct(tau, dtau, gain, amp, t_index, freqs, smearing)
    assert np.abs(vis - expected).max() < 1e-9 * np.abs(expected).max()


def test_channel_runs_end_where_the_spacing_changes():
    start, step = channel_runs(UNEVEN)
    assert start.tolist() == [True, False, True, True, False, True]
    assert step.tolist() == pytest.approx([1e7, 1e7, 0.0, 1e7, 1e7, 0.0])
    start, step = channel_runs(FULL_BAND)
    assert start.sum() == 1 and np.allclose(step, -C.CHANNEL_WIDTH_HZ)
