"""calibration_tables and calibrated_ms on a real Dagster instance: a calibrator pass solved in
its own partition, carried to a later partition, and the failure modes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from dsa_assets import partitions
from dsa_assets.assets.imaging_qa import imager_cross_check
from dsa_assets.definitions import build_definitions
from dsa_assets.products import ProductsDB
from dsa_assets.sim.correlator import CorrelatorSimulator
from resources.calibration import CalibrationResource
from resources.pipeline import PipelineResource
from resources.settings import Settings

from ..conftest import scaled_imaging, settle
from ..unit.test_calibration import PASS_CONFIG, PASS_START

TABLES = dg.AssetKey("calibration_tables")
CALIBRATED = dg.AssetKey("calibrated_ms")
IMAGE = dg.AssetKey("image")


def metadata(instance, key, partition):
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def check(instance, key, name):
    ck = dg.AssetCheckKey(key, name)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([ck])[ck]


@pytest.fixture(scope="module")
def two_windows(tmp_path_factory):
    """A 3C286 transit and, ten minutes later, an ordinary observation with the same gains."""
    incoming = tmp_path_factory.mktemp("pass") / "in"
    cal = CorrelatorSimulator(PASS_CONFIG).write_observation(incoming, PASS_START)
    target = CorrelatorSimulator(replace(PASS_CONFIG, calibrator=None, n_sources=3)).write_observation(
        incoming, PASS_START + timedelta(minutes=10), seed=5)
    settle(incoming)
    return incoming, cal, target


def run(defs, instance, window):
    return defs.resolve_job_def("observation_job").execute_in_process(
        instance=instance, partition_key=window, raise_on_error=False)


def test_solution_solved_on_transit_and_carried_to_the_next_window(two_windows, tmp_path):
    incoming, cal, target = two_windows
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0, simulated=True)
    defs = build_definitions(Settings(pipeline=pipeline, imaging=scaled_imaging(size=512, cell_arcsec=16, niter=300),
                                      calibration=CalibrationResource(enable_solving=True)))
    w_cal, w_target = partitions.window_key(cal.data_start), partitions.window_key(target.data_start)
    with dg.instance_for_test() as instance:
        assert run(defs, instance, w_cal).success
        meta = metadata(instance, TABLES, w_cal)
        assert meta["solved_here"] == f"{cal.stamp} on 1331+305 (3C286)"
        assert meta["solution_partition"] == w_cal and meta["calibrator"] == "1331+305 (3C286)"
        assert meta["transit"]["offset_deg"] < 0.01
        assert abs(meta["calibrated_flux_ratio"] - 1.0) < 0.02
        assert check(instance, TABLES, "solution_quality").status.value == "SUCCEEDED"
        gains = check(instance, TABLES, "simulated_gains_recovered")
        assert gains.status.value == "SUCCEEDED"
        errors = gains.event.dagster_event.event_specific_data.metadata["errors"].value[cal.stamp]
        assert errors["amplitude_error_max"] < 0.01 and errors["phase_error_max_deg"] < 1.0

        assert run(defs, instance, w_target).success
        meta = metadata(instance, TABLES, w_target)
        assert meta["solved_here"] == "" and meta["solution_partition"] == w_cal
        assert meta["solution_offset_h"] == pytest.approx(10 / 60, abs=0.01)
        calibrated = metadata(instance, CALIBRATED, w_target)
        assert calibrated["solution_partition"] == w_cal and Path(calibrated["path"]).is_dir()
        assert check(instance, CALIBRATED, "fraction_flagged").status.value == "SUCCEEDED"
        assert instance.get_materialized_partitions(IMAGE) == {w_cal, w_target}

        # the on-demand imager cross-check: tclean on the same calibrated data agrees with WSClean
        cross = dg.materialize([imager_cross_check], instance=instance, partition_key=w_target,
                               resources=defs.resources, selection=[dg.AssetKey("imager_cross_check")])
        assert cross.success
        agree = check(instance, dg.AssetKey("imager_cross_check"), "wsclean_tclean_agree")
        assert agree.status.value == "SUCCEEDED"
        compared = agree.event.dagster_event.event_specific_data.metadata["sources_compared"].value
        assert compared >= 2

    db = ProductsDB(pipeline.products_target)
    assert db.assignment(target.stamp)["solution_group_id"] == cal.stamp
    assert db.calibrated_ms(target.stamp)["path"] == calibrated["path"]
    assert db.solution(cal.stamp)["valid"] is True


def test_apply_only_without_any_solution_fails_with_the_reason(two_windows, tmp_path):
    incoming, _, target = two_windows
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0)
    defs = build_definitions(Settings(pipeline=pipeline, calibration=CalibrationResource(enable_solving=False)))
    window = partitions.window_key(target.data_start)
    with dg.instance_for_test() as instance:
        result = run(defs, instance, window)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "calibration_tables"
        assert "no valid calibration solution within 6.0 h" in failure.event_specific_data.error.message
        assert "apply-only" in failure.event_specific_data.error.message
        assert instance.get_materialized_partitions(dg.AssetKey("measurement_set")) == {window}
        assert not instance.get_materialized_partitions(CALIBRATED)


def test_a_window_before_its_calibrator_is_calibrated_once_the_calibrator_is_solved(two_windows, tmp_path):
    """The ordinary observation's window runs before the transit's (as in streaming the
    second half of a calibrator gap runs before the next calibrator, here out of order): it
    fails for want of a solution. Once the transit is solved, the late-calibration sensor
    requests the window again from calibration on, the solution 10 minutes from it is applied,
    and the window is imaged; then nothing more is requested. A solution out of the validity's
    reach requests nothing."""
    from sensors.late_calibration import evaluate, steps_after_conversion

    incoming, cal, target = two_windows
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0, simulated=True)
    settings = Settings(pipeline=pipeline, imaging=scaled_imaging(size=256, cell_arcsec=30, niter=50),
                        calibration=CalibrationResource(enable_solving=True))
    defs = build_definitions(settings)
    steps = steps_after_conversion(defs.resolve_job_def("observation_job"))
    w_cal, w_target = partitions.window_key(cal.data_start), partitions.window_key(target.data_start)
    with dg.instance_for_test() as instance:
        assert not run(defs, instance, w_target).success
        assert not evaluate(instance, pipeline, settings.calibration, steps).run_requests
        assert run(defs, instance, w_cal).success
        short = settings.calibration.model_copy(update={"validity_hours": 0.1})
        assert not evaluate(instance, pipeline, short, steps).run_requests, "10 minutes away: out of reach"
        (request,) = evaluate(instance, pipeline, settings.calibration, steps).run_requests
        assert request.partition_key == w_target and request.run_key == f"late-calibration:{w_target}:{cal.stamp}"
        assert request.tags["dsa110/observation"] == target.stamp
        assert dg.AssetKey("measurement_set") not in request.asset_selection
        result = defs.resolve_job_def("observation_job").execute_in_process(
            instance=instance, partition_key=w_target, asset_selection=request.asset_selection, raise_on_error=False)
        assert result.success
        meta = metadata(instance, TABLES, w_target)
        assert meta["solution_partition"] == w_cal
        assert meta["solution_offset_h"] == pytest.approx(10 / 60, abs=0.01)
        assert w_target in instance.get_materialized_partitions(IMAGE)
        assert not evaluate(instance, pipeline, settings.calibration, steps).run_requests


def test_one_pass_calibrates_a_window_that_arrived_before_its_calibrator(tmp_path, capsys, monkeypatch):
    """``dsa110-stream --once`` over an observation 10 minutes before a 3C286 transit: the
    first fails for want of a solution, the transit is solved, and the same pass calibrates and
    images the first with it; the pass reports no failure."""
    from dsa_assets.service import cli as stream_cli

    incoming = tmp_path / "in"
    early = CorrelatorSimulator(replace(PASS_CONFIG, calibrator=None, n_sources=3)).write_observation(
        incoming, PASS_START - timedelta(minutes=10), seed=5)
    CorrelatorSimulator(PASS_CONFIG).write_observation(incoming, PASS_START)
    settle(incoming)
    settings = Settings(pipeline=PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0,
                                                  simulated=True),
                        imaging=scaled_imaging(size=256, cell_arcsec=30, niter=50),
                        calibration=CalibrationResource(enable_solving=True))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    status = stream_cli.main(["--settings", str(settings.write(tmp_path / "settings.yaml")), "--once"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "2 observation(s): 2 converted, 2 calibrated, 2 imaged, 0 failed" in out
    assigned = ProductsDB(settings.pipeline.products_target).assignment(early.stamp)
    assert assigned["offset_s"] == pytest.approx(-600, abs=30)


def test_wait_policy_retries_then_gives_up(two_windows, tmp_path):
    incoming, _, target = two_windows
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0)
    policy = CalibrationResource(missing_policy="wait", wait_s=0.1, wait_timeout_s=0.2)
    defs = build_definitions(Settings(pipeline=pipeline, calibration=policy))
    with dg.instance_for_test() as instance:
        result = run(defs, instance, partitions.window_key(target.data_start))
        assert not result.success
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert len(retries) == 2


def test_corrupted_solution_table_fails_the_apply_and_keeps_earlier_products(two_windows, tmp_path):
    incoming, cal, target = two_windows
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0)
    defs = build_definitions(Settings(pipeline=pipeline, imaging=scaled_imaging(size=256, cell_arcsec=30, niter=50),
                                      calibration=CalibrationResource(enable_solving=True)))
    with dg.instance_for_test() as instance:
        assert run(defs, instance, partitions.window_key(cal.data_start)).success
        solution = Path(ProductsDB(pipeline.products_target).solution(cal.stamp)["path"])
        (solution / f"{cal.stamp}.B" / "table.f0").write_bytes(b"corrupted")
        result = run(defs, instance, partitions.window_key(target.data_start))
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert failure.step_key == "calibrated_ms"
        assert f"{cal.stamp}.B" in failure.event_specific_data.error.message
    out = tmp_path / "out"
    assert not (out / "calibrated" / target.stamp[:10] / f"{target.stamp}.ms").exists(), "nothing half-written"
    assert (out / "calibrated" / cal.stamp[:10] / f"{cal.stamp}.ms").is_dir(), "earlier product intact"
    assert not list((out / "scratch").iterdir()) if (out / "scratch").exists() else True
