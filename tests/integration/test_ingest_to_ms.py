"""Simulated observation -> sensor -> Dagster run -> Measurement Set, on a real instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np

from dsa_assets import partitions
from dsa_assets.definitions import build_definitions
from dsa_assets.products import ProductsDB
from resources.pipeline import PipelineResource
from resources.settings import Settings
from sensors.subband_arrival import subband_arrival_sensor

from ..conftest import SOLVING, scaled_imaging, settle
from ..sky_fit import fit_sources

MS = dg.AssetKey("measurement_set")
FILES = dg.AssetKey("subband_files")
IMAGE = dg.AssetKey("image")


def test_sensor_to_materialized_partition_with_lineage(group_copy, tmp_path):
    group, incoming, _ = group_copy
    settle(incoming)
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1, simulated=True)
    defs = build_definitions(Settings(pipeline=pipeline, imaging=scaled_imaging(size=512, cell_arcsec=16, niter=500),
                                      calibration=SOLVING))
    job = defs.resolve_job_def("observation_job")
    window = partitions.window_key(group.data_start)

    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline}, cursor=None)
        tick = subband_arrival_sensor(ctx)
        for event in tick.asset_events:  # what the daemon does with a tick's events
            instance.report_runless_asset_event(event)
        (request,) = tick.run_requests
        assert request.partition_key == window
        run = job.execute_in_process(instance=instance, partition_key=request.partition_key, tags=request.tags)
        assert run.success

        assert instance.get_materialized_partitions(MS) == {window}
        assert instance.get_materialized_partitions(FILES) == {window}
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=MS, asset_partitions=[window]), limit=1
        ).records[0]
        meta = record.asset_materialization.metadata
        assert meta["n_observations"].value == 1
        assert meta["observations"].value == group.stamp
        ms_path = Path(meta["path"].value)
        assert record.run_id == run.run_id
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(MS, "ms_matches_inputs")]
        )[dg.AssetCheckKey(MS, "ms_matches_inputs")]
        assert check.status.value == "SUCCEEDED"

        # the same run imaged the observation: image partition with QA metadata and thumbnail
        assert instance.get_materialized_partitions(IMAGE) == {window}
        image_meta = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=IMAGE, asset_partitions=[window]), limit=1
        ).records[0].asset_materialization.metadata
        assert image_meta["n_images"].value == 1 and image_meta["rms_mjy"].value > 0
        assert "data:image/png;base64," in image_meta["thumbnail"].value
        assert Path(image_meta["pbcor_path"].value).exists()
        recovery = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(IMAGE, "simulated_sources_recovered")]
        )[dg.AssetCheckKey(IMAGE, "simulated_sources_recovered")]
        evaluation = recovery.event.dagster_event.event_specific_data
        assert evaluation.metadata["simulated_observations"].value == 1
        assert evaluation.metadata["sources_measured"].value >= 1
        # 16" pixels are too coarse for this array: the sampling check warns, with the numbers
        sampling = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(IMAGE, "pixels_sample_the_beam")]
        )[dg.AssetCheckKey(IMAGE, "pixels_sample_the_beam")]
        evaluation = sampling.event.dagster_event.event_specific_data
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["largest_fraction_of_baselines_beyond_grid"].value > 0
        assert evaluation.metadata["fewest_pixels_per_beam"].value == image_meta["pixels_per_beam"].value < 5

    # lineage in the asset graph: subband_files -> measurement_set -> calibration -> image
    graph = defs.resolve_asset_graph()
    assert graph.get(MS).parent_keys == {FILES}
    assert graph.get(dg.AssetKey("calibration_tables")).parent_keys == {MS}
    assert graph.get(dg.AssetKey("calibrated_ms")).parent_keys == {MS, dg.AssetKey("calibration_tables")}
    assert graph.get(IMAGE).parent_keys == {dg.AssetKey("calibrated_ms")}

    # the product itself
    assert ms_path.is_dir() and ms_path.parent.parent.parent == tmp_path / "out"
    fitted, _, _ = fit_sources(ms_path, group.truth)
    np.testing.assert_allclose(fitted, [s.flux_jy for s in group.truth.sources], rtol=0.01)
    queue = pipeline.queue()
    assert queue.group(group.stamp).state == "completed"
    row = ProductsDB(pipeline.products_target).measurement_set(group.stamp)
    assert row["path"] == str(ms_path) and row["partition_key"] == window


def test_empty_window_materializes_explicitly(tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    defs = build_definitions(Settings(pipeline=PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out")),
                                      calibration=SOLVING))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("observation_job").execute_in_process(
            instance=instance, partition_key="2026-01-15-12:05"
        )
        assert result.success
        (mat,) = result.asset_materializations_for_node("measurement_set")
        assert mat.metadata["n_observations"].value == 0
        assert instance.get_materialized_partitions(MS) == {"2026-01-15-12:05"}


def test_backfill_of_unregistered_old_files(group_copy, tmp_path):
    """A partition run registers the window's files itself: backfills need no watcher."""
    group, incoming, _ = group_copy
    settle(incoming)
    defs = build_definitions(Settings(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1,
                                      calibration=SOLVING))
    window = partitions.window_key(group.data_start)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("observation_job").execute_in_process(
            instance=instance, partition_key=window
        )
        (mat,) = result.asset_materializations_for_node("measurement_set")
        assert mat.metadata["observations"].value == group.stamp


def test_two_observations_in_one_window_give_two_measurement_sets(simulated_group, tmp_path):
    """After a correlator restart two observations can start in one window: both convert."""
    from datetime import timedelta

    from dsa_assets.naming import format_time, parse_subband_name, subband_file_name

    incoming = tmp_path / "in"
    incoming.mkdir()
    start = partitions.window_start(simulated_group.data_start)
    for delay in (0, 150):
        for f in simulated_group.files:
            t, sb = parse_subband_name(f.name)
            t = start + (t - simulated_group.data_start) + timedelta(seconds=delay + 5)
            (incoming / subband_file_name(format_time(t), sb)).symlink_to(f)
    settle(incoming)
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1)
    defs = build_definitions(Settings(pipeline=pipeline, calibration=SOLVING))
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("observation_job").execute_in_process(
            instance=instance, partition_key=partitions.window_key(start), asset_selection=[MS]
        )
    (mat,) = result.asset_materializations_for_node("measurement_set")
    assert mat.metadata["n_observations"].value == 2
    assert len(mat.metadata["ms_paths"].value) == 2
    assert all(Path(p).is_dir() for p in mat.metadata["ms_paths"].value)
