"""The arrival sensor: run requests, run keys, incomplete-group policy, gap windows."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import dagster as dg
import pytest

from dsa_assets import partitions
from dsa_assets.naming import format_time, parse_subband_name, subband_file_name
from resources.pipeline import PipelineResource
from sensors.subband_arrival import evaluate, subband_arrival_sensor

OLD = time.time() - 3600


def pipeline_for(tmp_path, incoming, **kw):
    return PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1, **kw)


def settle(directory, t=OLD):
    for f in directory.iterdir():
        os.utime(f, (t, t), follow_symlinks=False)


def test_complete_group_requests_one_run_with_stable_run_key(group_copy, tmp_path):
    group, incoming, _ = group_copy
    settle(incoming)
    pipeline = pipeline_for(tmp_path, incoming)
    result = evaluate(pipeline, None)
    window = partitions.window_key(group.data_start)
    (req,) = result.run_requests
    assert req.partition_key == window
    assert req.run_key == f"{window}:{group.stamp}"
    assert req.tags["dsa110/observation"] == group.stamp
    (event,) = result.asset_events
    assert event.asset_key == dg.AssetKey("subband_files") and event.partition == window
    assert len(event.metadata["files"].value) == 16
    # a later tick asks again with the same run key (Dagster de-duplicates) and no new event
    again = evaluate(pipeline, result.cursor)
    assert [r.run_key for r in again.run_requests] == [req.run_key]
    assert again.asset_events == []


def test_sensor_definition_runs_against_an_instance(group_copy, tmp_path):
    _, incoming, _ = group_copy
    settle(incoming)
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={"pipeline": pipeline_for(tmp_path, incoming)})
        result = subband_arrival_sensor(ctx)
        assert len(result.run_requests) == 1


def test_nothing_to_do_gives_a_skip_reason(tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    result = evaluate(pipeline_for(tmp_path, incoming), None)
    assert result.run_requests == [] and "no complete observation" in result.skip_reason.skip_message


@pytest.mark.parametrize("policy", ["convert_partial", "fail"])
def test_incomplete_group_after_timeout_follows_policy(group_copy, tmp_path, policy):
    group, incoming, files = group_copy
    for f in files[12:]:
        f.unlink()
    settle(incoming)
    pipeline = pipeline_for(tmp_path, incoming, incomplete_timeout_s=600, incomplete_policy=policy)
    first = evaluate(pipeline, None)
    assert first.run_requests == [] or policy == "convert_partial"  # stamp is old: already stale
    queue = pipeline.queue()
    g = queue.group(group.stamp)
    obs = [e for e in first.asset_events if isinstance(e, dg.AssetObservation)]
    assert obs and obs[0].metadata["missing_subbands"].value == "sb12, sb13, sb14, sb15"
    if policy == "fail":
        assert g.state == "failed" and g.decision == "failed_incomplete"
        assert "12/16 subbands" in g.error and "sb12" in g.error
        assert first.run_requests == []
    else:
        assert g.decision == "convert_partial" and g.state == "pending"
        assert [r.partition_key for r in first.run_requests] == [partitions.window_key(group.data_start)]


def test_fresh_incomplete_group_waits(group_copy, tmp_path):
    group, incoming, files = group_copy
    for f in files[8:]:
        f.unlink()
    # "now" = just after the files were written: inside the timeout
    now = group.data_start.timestamp() + 400
    settle(incoming, now - 60)
    pipeline = pipeline_for(tmp_path, incoming, incomplete_timeout_s=900)
    result = evaluate(pipeline, None, now=now)
    assert result.run_requests == []
    assert pipeline.queue().group(group.stamp).decision is None


def test_gap_windows_are_requested_as_empty(simulated_group, tmp_path):
    """Observations 20 minutes apart: the three windows between them are requested too."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    for delay in (0, 20 * 60):
        for f in simulated_group.files:
            t, sb = parse_subband_name(f.name)
            (incoming / subband_file_name(format_time(t + timedelta(seconds=delay)), sb)).symlink_to(f)
    settle(incoming)
    pipeline = pipeline_for(tmp_path, incoming)
    first_window = partitions.window_key(simulated_group.data_start)
    cursor = json.dumps({"last_window": first_window})
    keys = sorted(r.run_key for r in evaluate(pipeline, cursor).run_requests)
    start = partitions.window_bounds(first_window)[0]
    gaps = [(start + timedelta(minutes=m)).strftime(partitions.KEY_FORMAT) for m in (5, 10, 15)]
    assert [k for k in keys if k.endswith(":empty")] == [f"{g}:empty" for g in gaps]
    assert len(keys) == 5


def test_observation_from_the_future_waits_for_its_window(group_copy, tmp_path):
    group, incoming, _ = group_copy
    # a correlator clock ahead of ours: the observation's window has not started yet
    before = group.data_start.timestamp() - 600
    settle(incoming, before - 60)
    pipeline = pipeline_for(tmp_path, incoming)
    early = evaluate(pipeline, None, now=before)
    assert early.run_requests == [] and early.asset_events == []
    assert "have not started yet" in early.skip_reason.skip_message
    # once the window exists, the run is requested
    later = evaluate(pipeline, early.cursor, now=group.data_start.timestamp() + 3600)
    assert len(later.run_requests) == 1


def test_observation_before_first_partition_is_failed_with_reason(simulated_group, tmp_path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    for f in simulated_group.files:
        t, sb = parse_subband_name(f.name)
        (incoming / subband_file_name(format_time(t.replace(year=2020)), sb)).symlink_to(f)
    settle(incoming)
    pipeline = pipeline_for(tmp_path, incoming)
    result = evaluate(pipeline, None)
    assert result.run_requests == []
    (g,) = pipeline.queue().groups()
    assert g.state == "failed" and "before the first partition" in g.error
