"""The late-calibration sensor's choice of windows, on a real products database and Dagster
instance (the end-to-end run is in ``tests/integration/test_calibration_assets.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg

from dsa_assets import naming, partitions
from dsa_assets.definitions import build_definitions
from dsa_assets.products import ProductsDB
from resources.calibration import CalibrationResource
from resources.pipeline import PipelineResource
from resources.science import ScienceResource
from resources.settings import Settings
from sensors.late_calibration import evaluate, steps_after_conversion

T0 = datetime(2026, 9, 1, 15, 30, 2, tzinfo=UTC)


def test_requests_the_uncalibrated_windows_a_valid_solution_reaches_and_no_run_holds(tmp_path):
    pipeline = PipelineResource(input_dir=str(tmp_path), output_dir=str(tmp_path / "out"))
    db = ProductsDB(pipeline.products_target)
    stamps = {name: naming.format_time(T0 + timedelta(hours=h))
              for name, h in (("waiting", 0), ("running", 1), ("assigned", 2), ("far", 9))}
    window = {name: partitions.window_key(T0 + timedelta(hours=h)) for name, h in (("waiting", 0), ("running", 1))}
    for stamp in stamps.values():
        db.record_measurement_set(group_id=stamp, partition_key=partitions.window_key(naming.parse_time(stamp)),
                                  path=f"/ms/{stamp}.ms", duration_s=309.0)
    db.record_assignment(group_id=stamps["assigned"], partition_key="x", solution_group_id="s")
    solved = naming.format_time(T0 + timedelta(hours=3))
    db.record_solution(group_id=solved, partition_key="y", calibrator="1206+642", mid_unix=naming.parse_time(solved).timestamp(),
                       path="/caltables/s", valid=True, quality={})
    # a solution that failed its quality limits reaches the far observation, but is never used
    rejected = naming.format_time(T0 + timedelta(hours=10))
    db.record_solution(group_id=rejected, partition_key="z", calibrator="1400+621",
                       mid_unix=naming.parse_time(rejected).timestamp(), path="/caltables/r", valid=False, quality={})
    calibration = CalibrationResource()
    settings = Settings(pipeline=pipeline, science=ScienceResource(enable_photometry=True))
    steps = steps_after_conversion(build_definitions(settings).resolve_job_def("observation_job"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_run(dg.DagsterRun(job_name="observation_job", run_id="a" * 36, status=dg.DagsterRunStatus.STARTED,
                                       tags={"dagster/partition": window["running"]}))
        (request,) = evaluate(instance, pipeline, calibration, steps).run_requests
        assert request.partition_key == window["waiting"]
        assert request.run_key == f"late-calibration:{window['waiting']}:{solved}"
        assert request.tags["dsa110/observation"] == stamps["waiting"]
        assert [k.to_user_string() for k in request.asset_selection] == [
            "calibrated_ms", "calibration_tables", "image", "photometry"]
        # 3 h away: out of reach of a 2 h validity
        assert not evaluate(instance, pipeline, calibration.model_copy(update={"validity_hours": 2.0}),
                            steps).run_requests
        db.record_assignment(group_id=stamps["waiting"], partition_key=window["waiting"], solution_group_id=solved)
        result = evaluate(instance, pipeline, calibration, steps)
        assert not result.run_requests and "no uncalibrated observation" in result.skip_reason.skip_message
