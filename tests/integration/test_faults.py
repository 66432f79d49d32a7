"""Faults a telescope produces: each gets a recorded reason, and nothing written is lost."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from dsa_assets import partitions
from dsa_assets.stages.imaging import ImagingConfig, ImagingError, ImagingStage
from dsa_assets.stages.window_conversion import convert_window
from resources.pipeline import PipelineResource

from ..conftest import settle


def _convert(input_dir, output_dir, key, results):
    pipeline = PipelineResource(input_dir=input_dir, output_dir=output_dir, stable_s=0)
    start, end = partitions.window_bounds(key)
    outcome = convert_window(pipeline.queue(), pipeline.conversion_stage(), input_dir, start, end)
    results.put((len(outcome.converted), list(outcome.busy)))


def test_two_runs_of_one_partition_at_once_convert_it_once(group_copy, tmp_path):
    group, incoming, _ = group_copy
    settle(incoming)
    key = partitions.window_key(group.data_start)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_convert, args=(str(incoming), str(tmp_path / "out"), key, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    outcomes = sorted(results.get() for _ in procs)
    converted = sum(n for n, _ in outcomes)
    busy = [b for _, bs in outcomes for b in bs]
    # either the runs overlapped (one converts, the other finds it busy) or they ran one after
    # the other (the second re-materializes, replacing the product atomically)
    assert (converted, busy) in ((1, [group.stamp]), (2, []))
    (ms,) = list((tmp_path / "out" / "ms").rglob("*.ms"))
    assert not [p for p in ms.parent.iterdir() if p.name.startswith(".")], "no partial or retired copies"


def test_imager_crash_is_a_clear_error_and_publishes_nothing(converted_ms, tmp_path):
    group, result = converted_ms
    stage = ImagingStage(ImagingConfig(output_dir=tmp_path / "out", scratch_dir=tmp_path / "scratch", size=-5))
    with pytest.raises(ImagingError, match="wsclean exited with status"):
        stage.execute(group_id=group.stamp, ms_path=result.ms_path)
    assert not (tmp_path / "out" / "images").exists()
    assert not list((tmp_path / "scratch").iterdir())


def test_subband_arriving_after_its_group_was_processed_is_recorded_late(group_copy, tmp_path):
    from dsa_assets.streaming.scanner import scan_directory

    group, incoming, files = group_copy
    straggler = files[-1]
    hidden = tmp_path / straggler.name
    straggler.rename(hidden)
    settle(incoming)
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0,
                                incomplete_timeout_s=60)
    start, end = partitions.window_bounds(partitions.window_key(group.data_start))
    outcome = convert_window(pipeline.queue(), pipeline.conversion_stage(), incoming, start, end)
    assert [r.subbands_missing for r in outcome.converted] == [[15]]
    hidden.rename(straggler)
    settle(incoming)
    report = scan_directory(incoming, pipeline.queue(), stable_s=0)
    (reg,) = report.registered
    assert reg.status == "late" and "left pending" in reg.reason
    assert Path(straggler).exists()
