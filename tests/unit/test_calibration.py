"""Calibrators, flagging, K/B/G solutions and their application, on simulated calibrator passes."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from casacore.tables import table

from dsa_assets import calibrators, fsutil
from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_field
from dsa_assets.stages import calibration as cal
from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
from dsa_assets.stages.flagging import FlaggingConfig, FlaggingStage
from dsa_assets.stages.gain_solutions import CALIBRATED_KEYWORD

from ..conftest import SCALED_SEFD_JY
from ..sky_fit import fit_sources

PASS_CONFIG, PASS_START = calibrator_field(
    SimConfig(n_antennas=24, n_integrations=6, channels_per_subband=4, n_sources=0, gains=True, seed=11, sefd_jy=SCALED_SEFD_JY,
              timestamp_jitter=False),
    "3C286",
    datetime(2026, 3, 2, tzinfo=UTC),
)
"""A 3C286 transit with injected gains and bandpasses. No other sources: flux that the model
lacks biases the gains by about its fraction of the calibrator's (see the README)."""


# -- the catalogue ---------------------------------------------------------------------------


def test_catalogue_parses_every_l_band_source_and_names():
    cat = calibrators.catalogue()
    assert len(cat) == 1041  # entries of the list with a 20 cm flux density
    c = calibrators.by_name("3C286")
    assert c is calibrators.by_name("1331+305") is calibrators.by_name("J1331+3030")
    assert c.code == "P" and c.flux_standard == "Perley-Butler 2017"
    assert abs(c.ra_deg - 202.78453) < 1e-4 and abs(c.dec_deg - 30.50916) < 1e-4
    with pytest.raises(KeyError):
        calibrators.by_name("NOT-A-SOURCE")


def test_perley_butler_2017_fluxes_come_from_casadata():
    # Perley & Butler (2017, ApJS 230, 7): 3C286 is 14.9 Jy at 1.465 GHz with index ~ -0.45
    s, alpha = calibrators.perley_butler_2017("3C286")
    s_1465 = s * (1.465 / 1.4) ** alpha
    assert 14.6 < s_1465 < 15.2 and -0.55 < alpha < -0.40
    assert calibrators.perley_butler_2017("NOT-A-SOURCE") is None
    # a non-primary calibrator keeps the list's 20 cm flux density
    c = calibrators.by_name("0003-174")
    assert c.flux_jy == 2.2 and c.flux_standard == "VLA calibrator list"


def test_transit_found_with_time_offset_and_attenuation():
    cfg, start = PASS_CONFIG, PASS_START
    duration = cfg.n_integrations * 12.884901888
    end = start + timedelta(seconds=duration)
    (t,) = calibrators.transits(start, end, cfg.pointing_dec_rad)
    assert t.calibrator.alt_name == "3C286"
    assert abs((t.transit_time - (start + timedelta(seconds=duration / 2))).total_seconds()) < 2.0
    assert t.offset_deg < 0.01 and t.attenuation > 0.999
    assert calibrators.best_transit([t]) is t
    # ten minutes later the calibrator has already transited: nothing in that observation
    assert calibrators.transits(end + timedelta(minutes=10), end + timedelta(minutes=15), cfg.pointing_dec_rad) == []


def test_best_transit_prefers_compact_then_bright_and_rejects_unusable():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def transit(code, flux, attenuation=1.0):
        c = calibrators.Calibrator(f"{code}{flux}", 0.0, 0.0, flux, -0.7, code)
        return calibrators.Transit(c, t0, 0.0, attenuation, attenuation)

    bright_s, faint_p, unusable = transit("S", 10.0), transit("P", 2.0), transit("X", 50.0)
    assert calibrators.best_transit([bright_s, faint_p, unusable]) is faint_p
    assert calibrators.best_transit([bright_s, transit("S", 20.0, attenuation=0.2)]) is bright_s
    assert calibrators.best_transit([unusable, transit("W", 30.0)]) is None
    assert calibrators.best_transit([transit("P", 5.0, attenuation=0.1)]) is None  # 0.5 Jy apparent


# -- solving and applying --------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrator_pass(tmp_path_factory):
    """The calibrator observation and a target observation 10 minutes later (same gains),
    both converted: (root, [group, ...], [ms_path, ...])."""
    root = tmp_path_factory.mktemp("calpass")
    sim = CorrelatorSimulator(PASS_CONFIG)
    target_cfg = replace(PASS_CONFIG, calibrator=None, n_sources=4)
    groups = [sim.write_observation(root / "in", PASS_START),
              CorrelatorSimulator(target_cfg).write_observation(root / "in", PASS_START + timedelta(minutes=10), seed=12)]
    stage = ConversionStage(ConversionConfig(output_dir=root / "out", scratch_dir=root / "scratch"))
    ms = [stage.execute(group_id=g.stamp, hdf5_files=g.files).ms_path for g in groups]
    return root, groups, ms


@pytest.fixture(scope="module")
def solved(calibrator_pass):
    root, groups, ms = calibrator_pass
    stage = cal.CalibrationStage(cal.CalibrationConfig(output_dir=root / "out", scratch_dir=root / "scratch"))
    model = [cal.SourceModel.from_calibrator(calibrators.by_name("3C286"))]
    return stage, stage.execute_solve(groups[0].stamp, ms[0], model)


def test_solutions_recover_injected_gains_and_bandpasses(calibrator_pass, solved):
    root, groups, ms = calibrator_pass
    _, sol = solved
    assert sorted(p.name for p in sol.directory.iterdir()) == sorted(
        [f"{groups[0].stamp}.K", f"{groups[0].stamp}.B", f"{groups[0].stamp}.G", "model.cl", "solution.json"])
    assert not list((root / "scratch").glob("cal-*")), "scratch cleaned"
    measured = cal.antenna_gains(ms[0], sol.table_list(), root / "scratch")
    # the MS holds conjugated UVH5 visibilities, so CASA's gains are the conjugate of the injected
    expected = np.conj(groups[0].truth.total_gains(cal.channel_frequencies(ms[0])))
    err = cal.gain_errors(measured, expected)
    assert err["antennas_compared"] == 24 and err["solutions_missing"] == 0
    assert err["amplitude_error_max"] < 0.01 and err["phase_error_max_deg"] < 1.0, err
    # and the injected gains are far from unity, so this is not trivially true
    assert np.abs(np.abs(expected[measured["antennas"]]) - 1).max() > 0.1


def test_gain_errors_the_solutions_own_noise_explains_are_not_held_against_them(calibrator_pass, solved):
    from dsa_assets import qa
    from dsa_assets.stages.gain_readback import solution_noise

    root, groups, ms = calibrator_pass
    _, sol = solved
    measured = cal.antenna_gains(ms[0], sol.table_list(), root / "scratch")
    expected = np.conj(groups[0].truth.total_gains(cal.channel_frequencies(ms[0])))
    noise = solution_noise(sol.table_list(), expected.shape)
    ants = measured["antennas"]
    assert np.all(np.isfinite(noise[ants])) and np.all(noise[ants] > 0)
    err = cal.gain_errors(measured, expected, noise)
    # the solutions scatter about the truth as their SNR says (the median of |N(0, 1)| is 0.67)
    assert 0.2 * err["noise_median"] < err["amplitude_error_median"] < 2 * err["noise_median"], err
    assert not qa.gains_miss_truth(err)
    off = expected.copy()
    off[ants[3]] *= 1.05
    wrong = cal.gain_errors(measured, off, noise)
    assert qa.gains_miss_truth(wrong) and wrong["amplitude_unexplained_max"] == pytest.approx(0.048, abs=0.005)
    # the same error within five sigma of a noisier solution is explained
    loud = cal.gain_errors(measured, off, np.full(noise.shape, 0.02))
    assert loud["amplitude_unexplained_max"] == 0.0 and not qa.gains_miss_truth(loud)


def test_calibrator_flux_and_solution_quality(solved):
    _, sol = solved
    assert abs(sol.quality.flux_ratio - 1.0) < 0.02
    assert sol.quality.phase_scatter_deg < 5.0
    assert sol.quality.tables["G"].median_snr > 50 and sol.quality.tables["G"].flagged_fraction == 0.0
    assert set(sol.timings_s) >= {"flagging", "model", "delay_K", "bandpass_B", "gain_G", "applycal"}


def test_solution_transfers_to_a_target_observation(calibrator_pass, solved, tmp_path):
    root, groups, ms = calibrator_pass
    stage, sol = solved
    out = stage.execute_apply(groups[1].stamp, ms[1], sol)
    assert out.ms_path == root / "out" / "calibrated" / groups[1].stamp[:10] / f"{groups[1].stamp}.ms"
    fitted, _, _ = fit_sources(out.ms_path, groups[1].truth, column="DATA")
    truth = np.array([s.flux_jy for s in groups[1].truth.sources])
    np.testing.assert_allclose(fitted, truth, rtol=0.02, atol=0.01)
    uncalibrated, _, _ = fit_sources(ms[1], groups[1].truth)
    assert np.max(np.abs(uncalibrated / truth - 1)) > 0.05, "the raw data are visibly corrupted"
    assert ms[1].exists(), "the uncalibrated Measurement Set is kept"
    # one set of visibilities: the calibrated product is no bigger than the raw one
    with table(str(out.ms_path), ack=False) as tb:
        assert "CORRECTED_DATA" not in tb.colnames() and tb.getkeyword(CALIBRATED_KEYWORD) == str(sol.directory)
    assert fsutil.directory_size(out.ms_path) < 1.02 * fsutil.directory_size(ms[1])


def test_a_calibrator_observation_is_flagged_once(calibrator_pass, solved):
    """The solve's flagged copy becomes the calibrator observation's calibrated copy: the same
    flags and data as flagging it again, without the copy and the flagging."""
    root, groups, ms = calibrator_pass
    stage, sol = solved
    assert len(list((root / "scratch").glob("flagged-*"))) == 1, "kept by the solve"
    once = stage.execute_apply(groups[0].stamp, ms[0], sol)
    assert once.flags_reused and not {"copy", "flagging"} & set(once.timings_s)
    assert once.flags.rfi_fraction == pytest.approx(sol.flags.rfi_fraction, abs=1e-5)
    assert not list((root / "scratch").glob("flagged-*")), "taken"
    with table(str(once.ms_path), ack=False) as tb:
        flags, data, columns = tb.getcol("FLAG"), tb.getcol("DATA"), set(tb.colnames())
    assert "MODEL_DATA" not in columns and not (once.ms_path / cal.FLAGGED_NOTE).exists()
    again = stage.execute_apply(groups[0].stamp, ms[0], sol)
    assert not again.flags_reused and {"copy", "flagging"} <= set(again.timings_s)
    with table(str(again.ms_path), ack=False) as tb:
        np.testing.assert_array_equal(tb.getcol("FLAG"), flags)
        np.testing.assert_array_equal(tb.getcol("DATA"), data)


def test_the_calibrated_copy_can_keep_the_raw_visibilities(calibrator_pass, solved):
    root, groups, ms = calibrator_pass
    _, sol = solved
    stage = cal.CalibrationStage(cal.CalibrationConfig(output_dir=root / "out2", scratch_dir=root / "scratch",
                                                       keep_raw_data=True))
    out = stage.execute_apply(groups[1].stamp, ms[1], sol)
    with table(str(out.ms_path), ack=False) as tb, table(str(ms[1]), ack=False) as raw:
        assert {"DATA", "CORRECTED_DATA"} <= set(tb.colnames())
        np.testing.assert_array_equal(tb.getcol("DATA"), raw.getcol("DATA"))
    corrected, _, _ = fit_sources(out.ms_path, groups[1].truth, column="CORRECTED_DATA")
    np.testing.assert_allclose(corrected, [s.flux_jy for s in groups[1].truth.sources], rtol=0.02, atol=0.01)
    assert fsutil.directory_size(out.ms_path) > 1.4 * fsutil.directory_size(ms[1])


def test_field_sources_from_the_catalogue_keep_the_gains_within_one_percent(tmp_path):
    """With the sky around the calibrator (the simulator's catalogue), the solutions stay within
    1% / 1 deg; with the calibrator alone, the field's unmodelled flux biases them."""
    from dsa_assets import catalogue
    from dsa_assets.sim.sky import SKY_CATALOGUE
    from dsa_assets.stages.ms_inspect import observation_span

    group = CorrelatorSimulator(replace(PASS_CONFIG, n_sources=6)).write_observation(tmp_path / "in", PASS_START)
    ms = ConversionStage(ConversionConfig(output_dir=tmp_path / "out", scratch_dir=tmp_path / "s")).execute(
        group_id=group.stamp, hdf5_files=group.files).ms_path
    assert len(group.truth.sources) > 5
    span = observation_span(ms)
    calibrator = cal.SourceModel.from_calibrator(calibrators.by_name("3C286"))
    field = catalogue.read(tmp_path / "in" / SKY_CATALOGUE)
    errors = {}
    for name, model in (("alone", [calibrator]),
                        ("with field", cal.calibrator_model(calibrator, field, span.centre_ra_deg, span.centre_dec_deg))):
        stage = cal.CalibrationStage(cal.CalibrationConfig(output_dir=tmp_path / name, scratch_dir=tmp_path / "s"))
        sol = stage.execute_solve(group.stamp, ms, model)
        measured = cal.antenna_gains(ms, sol.table_list(), tmp_path / "s")
        errors[name] = cal.gain_errors(measured, np.conj(group.truth.total_gains(cal.channel_frequencies(ms))))
    assert errors["with field"]["amplitude_error_max"] < 0.01, errors
    assert errors["with field"]["phase_error_max_deg"] < 1.0, errors
    assert errors["alone"]["amplitude_error_max"] > 2 * errors["with field"]["amplitude_error_max"], errors


def test_model_prediction_matches_casa_ft(calibrator_pass, tmp_path):
    """Our MODEL_DATA (no beam) equals CASA ft of the same component list (both ICRS)."""
    from casacore.tables import table
    from casatasks import ft

    _, _, ms = calibrator_pass
    work = tmp_path / "ft.ms"
    shutil.copytree(ms[1], work)
    sources = [cal.SourceModel("a", 202.2, 30.9, 2.0, 1.4e9, -0.7), cal.SourceModel("b", 203.5, 30.1, 1.0, 1.4e9, 0.3)]
    cal.predict_model(work, sources, primary_beam=False, smearing=False)  # ft evaluates at the middles
    with table(str(work), ack=False) as tb:
        ours = tb.getcol("MODEL_DATA")
    ft(vis=str(work), complist=str(cal.write_component_list(tmp_path / "m.cl", sources)), usescratch=True)
    with table(str(work), ack=False) as tb:
        casa = tb.getcol("MODEL_DATA")
    assert np.max(np.abs(ours - casa)) < 1e-5 * np.max(np.abs(casa))


def test_corrupted_table_is_refused_with_its_name(calibrator_pass, solved, tmp_path):
    root, groups, ms = calibrator_pass
    stage, sol = solved
    broken = tmp_path / "broken"
    shutil.copytree(sol.directory, broken)
    (broken / f"{groups[0].stamp}.G" / "table.f0").write_bytes(b"\0" * 64)
    with pytest.raises(cal.CalibrationError, match=r"\.G"):
        stage.execute_apply(groups[1].stamp, ms[1], broken)
    with pytest.raises(cal.CalibrationError, match="holds no K table"):
        cal.solution_tables(tmp_path)


# -- flagging -------------------------------------------------------------------------------------


def with_faults(ms: Path, work: Path):
    """A copy of ``ms`` with a dead antenna (its 4th), a dropped channel (5) and RFI in channels
    40-41 of every cross-correlation: (work, data, ANTENNA1, ANTENNA2, dead antenna)."""
    shutil.copytree(ms, work)
    with table(str(work), readonly=False, ack=False) as tb:
        data = tb.getcol("DATA")
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        dead = int(np.unique(a1)[3])
        data[(a1 == dead) & (a2 == dead)] *= 100.0  # an oscillating receiver: 100 x the power
        data[:, 5, :] = 0.0  # a dropped channel
        rfi = np.zeros(data.shape, bool)
        rfi[a1 != a2, 40:42, :] = True
        data[rfi] += 50.0 * np.exp(2j * np.pi * np.random.default_rng(1).uniform(size=rfi.sum()))
        tb.putcol("DATA", data)
    return work, data, a1, a2, dead


def test_flagging_finds_zeros_dead_antenna_and_rfi(calibrator_pass, tmp_path):
    _, _, ms = calibrator_pass
    work, data, a1, a2, dead = with_faults(ms[1], tmp_path / "rfi.ms")
    cross = a1 != a2
    report = FlaggingStage(FlaggingConfig(rfi="aoflagger")).execute(work)
    with table(str(work), ack=False) as tb:
        flags = tb.getcol("FLAG")
    assert report.dead_antennas == [dead]
    assert flags[:, 5, :].all() and report.zeros_fraction > 0
    alive = cross & (a1 != dead) & (a2 != dead)
    assert flags[alive][:, 40:42].mean() > 0.9, "RFI channels flagged"
    clean = np.ones(data.shape[1], bool)
    clean[[5, 40, 41]] = False
    assert flags[alive][:, clean].mean() < 0.05, "clean data mostly kept"
    assert report.fraction_after > report.fraction_before


def test_aoflagger_in_worker_processes_flags_exactly_as_in_one(calibrator_pass, tmp_path):
    from dsa_assets.stages.flagging import flag_rfi_aoflagger

    _, _, ms = calibrator_pass
    found = []
    for workers in (1, 2):
        work, *_ = with_faults(ms[1], tmp_path / f"rfi-{workers}.ms")
        with table(str(work), readonly=False, ack=False) as tb:
            flag_rfi_aoflagger(tb, tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2"), workers=workers,
                               min_parallel_samples=0)
            found.append(tb.getcol("FLAG"))
    assert found[0][:, 40:42].mean() > 0.5 and found[0][:, 20].mean() < 0.1
    np.testing.assert_array_equal(found[1], found[0])


def test_flagging_refuses_what_is_not_a_measurement_set(tmp_path):
    from dsa_assets.stages.flagging import FlaggingError

    with pytest.raises(FlaggingError, match="not a Measurement Set"):
        FlaggingStage().execute(tmp_path)
    with pytest.raises(ValueError, match="rfi must be one of"):
        FlaggingConfig(rfi="magic")


def test_failed_solve_falls_back_to_the_nearest_valid_solution(calibrator_pass, solved, tmp_path):
    from dsa_assets.products import ProductsDB
    from dsa_assets.stages.calibration_selection import calibrate_observation
    from dsa_assets.stages.ms_inspect import observation_span
    from resources.calibration import CalibrationResource

    _, groups, ms = calibrator_pass
    stage, sol = solved
    db = ProductsDB(tmp_path / "products.sqlite3")
    mid = observation_span(ms[0]).mid.timestamp()
    db.record_solution(group_id="earlier", partition_key="2026-03-02-09:40", calibrator="0542+498 (3C147)",
                       mid_unix=mid - 3600, path=str(sol.directory), refant="1", valid=True, quality={})

    class FailingStage(cal.CalibrationStage):
        def execute_solve(self, *args, **kwargs):
            raise cal.CalibrationError("delay (K) solve produced no table")

    policy = CalibrationResource(enable_solving=True)
    out = calibrate_observation(FailingStage(stage.config), db, policy, groups[0].stamp, ms[0], "2026-03-02-10:40")
    assert out.transits and out.transit is None and out.solution is None
    assert "solving on 1331+305 (3C286) failed: delay (K)" in out.solve_failure
    assert out.assignment["solution_observation"] == "earlier" and out.assignment["offset_h"] == pytest.approx(1.0)
    assert db.assignment(groups[0].stamp)["solution_group_id"] == "earlier"
    # nothing valid within a 30-minute window: the reason, and no assignment
    short = calibrate_observation(FailingStage(stage.config), db, CalibrationResource(enable_solving=True,
                                  validity_hours=0.5), groups[0].stamp, ms[0], "2026-03-02-10:40")
    assert short.assignment is None and "no valid calibration solution within 0.5 h" in short.missing


def test_the_sky_beyond_the_model_that_the_data_hold_joins_it(tmp_path):
    """A 20 Jy source 2.3 deg north of the pointing (2 Jy apparent, outside the model's radius
    and the image) is in the data; a catalogue entry as bright 2.3 deg south is not. The first
    solve finds the one and not the other in the calibrated data, and the solve with the
    northern source in the model recovers the gains several times better than without it."""
    from dsa_assets import catalogue
    from dsa_assets.stages.peeling import PeelingConfig
    from dsa_assets.truth import PointSource

    c = calibrators.by_name("3C286")
    dec = np.degrees(PASS_CONFIG.pointing_dec_rad)
    beyond = PointSource("BEYOND", c.ra_deg, dec + 2.3, 20.0, -0.7)
    ghost = catalogue.CatalogueSource("GHOST", c.ra_deg, dec - 2.3, 20.0, -0.7)
    group = CorrelatorSimulator(replace(PASS_CONFIG, sources=(beyond,))).write_observation(tmp_path / "in", PASS_START)
    ms = ConversionStage(ConversionConfig(output_dir=tmp_path / "out", scratch_dir=tmp_path / "s")).execute(
        group_id=group.stamp, hdf5_files=group.files).ms_path
    sky = [catalogue.CatalogueSource(beyond.name, beyond.ra_deg, beyond.dec_deg, beyond.flux_jy, -0.7), ghost]
    model = [cal.SourceModel.from_calibrator(c)]
    errors, sources = {}, {}
    for name, levels in (("field only", None), ("with the sky beyond", PeelingConfig())):
        stage = cal.CalibrationStage(cal.CalibrationConfig(output_dir=tmp_path / name, scratch_dir=tmp_path / "s",
                                                           model_sky_beyond=levels))
        sol = stage.execute_solve(group.stamp, ms, model, catalogue_sources=sky)
        sources[name] = [s.name for s in sol.sources]
        measured = cal.antenna_gains(ms, sol.table_list(), tmp_path / "s")
        errors[name] = cal.gain_errors(measured, np.conj(group.truth.total_gains(cal.channel_frequencies(ms))))
    assert sources["field only"] == [model[0].name]
    assert sources["with the sky beyond"] == [model[0].name, "BEYOND"]
    assert errors["with the sky beyond"]["amplitude_error_max"] < 0.02, errors
    assert errors["with the sky beyond"]["phase_error_max_deg"] < 1.0, errors
    assert errors["field only"]["amplitude_error_max"] > 5 * errors["with the sky beyond"]["amplitude_error_max"], errors
