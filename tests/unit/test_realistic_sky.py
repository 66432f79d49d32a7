"""The simulator's realistic sky: the real source counts out to the sidelobes, the A-team, and
visibilities averaged over each integration and channel."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import astropy.units as u
import h5py
import numpy as np
from astropy.time import Time

from dsa_assets import calibrators, catalogue, geometry
from dsa_assets import constants as C
from dsa_assets.calibrators import transit_start
from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_source
from dsa_assets.sim.sky import A_TEAM, SKY_CATALOGUE, PointSource, SourceCounts, beam_envelope, realistic_strip


def test_counts_follow_the_real_sky_and_thin_out_with_the_beam():
    sky = realistic_strip(55.0, seed=3)
    ra = np.array([s.ra_deg for s in sky])
    dec = np.array([s.dec_deg for s in sky])
    flux = np.array([s.flux_jy for s in sky])
    assert len({s.name for s in sky}) == len(sky), "names are unique (a catalogue refuses repeats)"
    # near the pointing declination: NVSS's 50 per square degree above 2.5 mJy, N(>S) ~ S^-0.9
    area = 2 * np.pi * (np.sin(np.radians(56.0)) - np.sin(np.radians(54.0))) * (180 / np.pi) ** 2
    near = abs(dec - 55.0) < 1.0
    expected = area * SourceCounts().above(2.5e-3)
    assert abs((near & (flux > 2.5e-3)).sum() - expected) < 4 * np.sqrt(expected)
    ratio = (near & (flux > 25e-3)).sum() / (near & (flux > 2.5e-3)).sum()
    assert abs(ratio - 10**-0.9) < 0.02
    # every source puts at least the 1 mJy floor into the data at its closest approach (within
    # its 0.05 deg declination band), and far from the pointing only the bright ones remain
    assert np.all(flux * beam_envelope(np.maximum(abs(dec - 55.0) - 0.05, 0.0)) >= 1e-3 * 0.999)
    far = abs(dec - 55.0) > 10.0
    assert far.any() and flux[far].min() > 0.5 and flux[~far].min() < 1.1e-3
    assert ra.min() < 1.0 and ra.max() > 359.0, "all right ascensions"
    assert sky == realistic_strip(55.0, seed=3), "the same seed gives the same sky"


def _sim(**changes) -> CorrelatorSimulator:
    config = SimConfig(n_antennas=24, n_integrations=2, channels_per_subband=1, subbands=(7,), noise=False,
                       gains=False, timestamp_jitter=False)
    return CorrelatorSimulator(replace(config, **changes))


def test_a_team_in_the_sidelobes_and_only_above_the_horizon(tmp_path):
    cas_a = A_TEAM[0]
    dec = np.radians(cas_a.dec_deg - 3.3)
    start = transit_start(cas_a, datetime(2026, 3, 1, tzinfo=UTC), dec, 2 * C.INTEGRATION_TIME_S)
    sim = _sim(sources=(), a_team=True, pointing_dec_rad=dec)
    at_transit = sim.write_observation(tmp_path / "transit", start)
    names = {s.name for s in at_transit.truth.sources}
    assert "CasA" in names
    # Tau A (Dec +22) culminates below the horizon at OVRO (latitude +37) twelve hours later
    taua = A_TEAM[2]
    lower = transit_start(taua, datetime(2026, 3, 1, tzinfo=UTC), dec, 2 * C.INTEGRATION_TIME_S) + timedelta(hours=11.967)
    assert "TauA" not in {s.name for s in sim.write_observation(tmp_path / "lower", lower).truth.sources}
    # Cas A, 3.3 deg from the beam centre, smeared across its integration: the longest
    # baselines see less of it than its beam-weighted flux, the short ones all of it
    unsmeared = _sim(sources=(), a_team=True, pointing_dec_rad=dec, smearing=False)
    ratio = np.abs(_cross(at_transit.files[0])) / np.abs(_cross(unsmeared.write_observation(tmp_path / "plain", start).files[0]))
    assert ratio.min() < 0.95 and np.median(ratio) > 0.97


def _cross(path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        a1, a2 = f["Header/ant_1_array"][()], f["Header/ant_2_array"][()]
        return f["Data/visdata"][()][a1 != a2, 0, 0, 0]


def test_reference_catalogue_holds_every_simulated_source(tmp_path):
    sim = _sim(sky="realistic", a_team=True, apparent_floor_jy=0.02, calibrator="3C286")
    group = sim.write_observation(tmp_path, datetime(2026, 3, 1, 12, tzinfo=UTC))
    names = {s.name for s in catalogue.read(tmp_path / SKY_CATALOGUE)}
    seen = {s.name for s in group.truth.sources}
    assert len(seen) > 20 and seen <= names, "the calibrator too"
    assert {"CasA", "CygA", calibrator_source("3C286").name} <= names
    in_truth = [s.name for s in group.truth.sources]
    assert in_truth.count(calibrator_source("3C286").name) == 1, "the sky's calibrator is not added twice"
    # the observation's sources are those above the floor somewhere in the beam (the
    # calibrator is simulated wherever it is)
    field = [s for s in group.truth.sources if s.name != calibrator_source("3C286").name]
    centre = geometry.meridian_icrs(sim.config.pointing_dec_rad, Time(group.data_start), sim.location)
    offsets = catalogue.separation_deg(field, centre.ra.deg, centre.dec.deg)
    flux = np.array([s.flux_jy for s in field])
    assert np.all(flux * beam_envelope(np.maximum(offsets - 1.0, 0.0)) >= 0.02)


def test_the_sky_holds_the_vla_calibrators_where_they_are():
    sky = {s.name: s for s in realistic_strip(62.7, seed=3)}
    for name in ("2203+626", "1634+627", "0014+612"):  # 2.75, 4.8 and 3.85 Jy within 1.5 deg of +62.7
        cal = calibrators.by_name(name)
        assert sky[name] == PointSource(cal.name, cal.ra_deg, cal.dec_deg, cal.flux_jy, cal.spectral_index)
    # far from the strip only those whose sidelobes still reach the 1 mJy floor
    far = [c for c in calibrators.catalogue() if 20 < abs(c.dec_deg - 62.7) < 30]
    reaching = {c.name for c in far if c.flux_jy * beam_envelope(abs(c.dec_deg - 62.7)) >= 1e-3}
    assert {c.name for c in far if c.name in sky} == reaching
    assert any(c.name not in sky for c in far) and any(c.name in sky for c in far)
    assert all(s.name in sky for s in realistic_strip(62.7, seed=3, with_calibrators=False)), "added, nothing drawn moved"


def test_visibilities_are_averages_over_the_integration_and_the_channel(tmp_path):
    """Against brute force: one integration simulated at 32 instants across it, each
    fringe-stopped to the integration's phase centre (the correlator tracks the meridian's ICRS
    position at the integration's middle), and at 16 frequencies across each channel."""
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    dec = np.radians(50.0)
    site = geometry.default_site()
    centre = geometry.meridian_icrs(dec, Time(start) + 0.5 * C.INTEGRATION_TIME_S * u.s, site)
    sources = (PointSource("near", centre.ra.deg + 2.0, centre.dec.deg + 0.5, 1.0),
               PointSource("sidelobe", centre.ra.deg - 9.0, centre.dec.deg - 3.0, 1.0))
    sim = _sim(sources=sources, n_integrations=1, pointing_dec_rad=dec)
    model = _cross(sim.write_observation(tmp_path / "smeared", start).files[0])
    # brute force: instantaneous fringes (no smearing) about the same phase centre at shifted
    # times and frequencies, averaged
    sky = CorrelatorSimulator(replace(sim.config, smearing=False))
    times = Time(start) + 0.5 * C.INTEGRATION_TIME_S * u.s + (np.arange(32) + 0.5 - 16) / 32 * C.INTEGRATION_TIME_S * u.s
    s0 = geometry.meridian_unit_vectors(dec, times, site)
    ra = np.radians([s.ra_deg for s in sources])
    de = np.radians([s.dec_deg for s in sources])
    direction = geometry.icrs_unit_vectors(ra, de, times, site)
    phase_centre = geometry.icrs_unit_vectors(np.array([centre.ra.rad]), np.array([centre.dec.rad]), times, site)[0]
    b = geometry.baseline_vectors(sky.ecef, sky.ant1, sky.ant2) / geometry.SPEED_OF_LIGHT_M_S
    tau = np.einsum("kix,bx->kib", direction - phase_centre[None], b)  # delay about the tracked centre
    cos = np.einsum("kix,ix->ki", direction, s0)
    freq = C.subband_frequencies_hz(7, sim.channels)[0]
    f_sub = freq + (np.arange(16) + 0.5 - 8) / 16 * C.CHANNEL_WIDTH_HZ
    beam = geometry.airy_power_beam(cos, freq)  # (Nsrc, Nt)
    flux = np.array([s.flux_at(freq) for s in sources])
    fringe = np.exp(2j * np.pi * tau[..., None] * f_sub)  # (Nsrc, Nt, Nbls, Nf)
    brute = np.einsum("ki,kibf->b", beam * flux[:, None], fringe) / (32 * 16)
    cross = sky.ant1 != sky.ant2
    assert np.allclose(model, brute[cross], atol=3e-3 * abs(brute[cross]).max())
    # the sidelobe source is smeared on the long baselines, the near one much less
    plain = _cross(sky.write_observation(tmp_path / "plain", start).files[0])
    assert np.abs(model).sum() < np.abs(plain).sum()



def test_model_prediction_holds_the_smearing_of_the_data(tmp_path):
    """Cas A 3.3 deg from the beam centre, through conversion: the platform's model
    (``predict_model``) reproduces the smeared data; without smearing it misses on the long
    baselines by several percent of Cas A."""
    from casacore.tables import table

    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.sky_model import SourceModel, predict_model

    cas_a = A_TEAM[0]
    dec = np.radians(cas_a.dec_deg - 3.3)
    start = transit_start(cas_a, datetime(2026, 3, 1, tzinfo=UTC), dec, 4 * C.INTEGRATION_TIME_S)
    config = SimConfig(n_antennas=24, n_integrations=4, channels_per_subband=2, noise=False, gains=False,
                       timestamp_jitter=False, sources=(cas_a,), pointing_dec_rad=dec)
    group = CorrelatorSimulator(config).write_observation(tmp_path / "in", start)
    ms = ConversionStage(ConversionConfig(output_dir=tmp_path / "out")).execute(
        group_id=group.stamp, hdf5_files=group.files).ms_path
    model = [SourceModel(cas_a.name, cas_a.ra_deg, cas_a.dec_deg, cas_a.flux_jy, 1.4e9, cas_a.spectral_index)]

    def amplitude_ratio(smearing: bool) -> np.ndarray:
        # amplitudes, per channel relative to the short baselines': Cas A sits by the beam's
        # first null, where its differential aberration (~1 arcsec over 3.3 deg: the data hold
        # apparent directions, the model ICRS offsets) changes the response by ~1% on every
        # baseline alike, and moves its phases; peeling's per-antenna gains absorb both
        predict_model(ms, model, smearing=smearing)
        with table(str(ms), ack=False) as tb:
            cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
            data, predicted = tb.getcol("DATA")[cross], tb.getcol("MODEL_DATA")[cross]
            length = np.hypot(*tb.getcol("UVW")[cross, :2].T)
        ratio = np.abs(predicted) / np.abs(data)
        return ratio / np.median(ratio[length < np.percentile(length, 10)], axis=0)

    assert np.abs(amplitude_ratio(True) - 1).max() < 0.01
    assert amplitude_ratio(False).max() > 1.03
