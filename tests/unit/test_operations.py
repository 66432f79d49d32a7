"""Operations: disk guard in the sensor, Prometheus metrics over HTTP, structured logs, CLI."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC

from dsa_assets import diskspace
from dsa_assets.logs import JsonFormatter
from dsa_assets.streaming import SubbandQueue
from resources.pipeline import PipelineResource
from sensors.subband_arrival import evaluate

from ..conftest import SOLVING, scaled_imaging, settle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_disk_levels(tmp_path):
    free_gb = diskspace.free_bytes(tmp_path) / 1e9
    assert diskspace.check_disks({"out": tmp_path}, 0.0, 0.0).level == "ok"
    warn = diskspace.check_disks({"out": tmp_path}, free_gb * 2, 0.0)
    assert warn.level == "warn" and "below the warning threshold" in warn.message
    pause = diskspace.check_disks({"out": tmp_path / "not" / "yet"}, free_gb * 3, free_gb * 2)
    assert pause.level == "pause" and "out has" in pause.message


def test_sensor_pauses_below_threshold_and_resumes(group_copy, tmp_path):
    _, incoming, _ = group_copy
    settle(incoming)
    huge = diskspace.free_bytes(tmp_path) / 1e9 * 10
    paused = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1,
                              disk_warn_gb=huge, disk_pause_gb=huge)
    result = evaluate(paused, None)
    assert result.run_requests == [] and result.skip_reason.skip_message.startswith("paused: output has")
    resumed = PipelineResource(**{**paused.model_dump(), "disk_warn_gb": 0.0, "disk_pause_gb": 0.0})
    assert len(evaluate(resumed, result.cursor).run_requests) == 1


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_metrics_endpoint_aggregates_run_processes(tmp_path):
    """A run process records samples; the exporter serves them with the live queue gauges."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    code = ("from dsa_assets import metrics; metrics.OBSERVATIONS.labels('completed').inc(3); "
            "metrics.STAGE_DURATION.labels('conversion').observe(7.5)")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    queue = SubbandQueue(tmp_path / "q.db")
    from datetime import datetime

    queue.register(tmp_path / "a_sb00.hdf5", file_time=datetime(2026, 1, 1, tzinfo=UTC), subband=0)
    port = free_port()
    script = (
        "import sys, time; from pathlib import Path; from dsa_assets import metrics; "
        "from dsa_assets.streaming import SubbandQueue; "
        f"metrics.serve({port}, SubbandQueue(Path({str(tmp_path / 'q.db')!r})), {{'output': Path({str(tmp_path)!r})}}); "
        "time.sleep(60)"
    )
    server = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            try:
                text = _scrape(port)
                break
            except OSError:
                time.sleep(0.3)
        assert 'dsa110_observations_total{outcome="completed"} 3.0' in text
        assert 'dsa110_stage_duration_seconds_count{stage="conversion"} 1.0' in text
        assert 'dsa110_queue_groups{state="pending"} 1.0' in text
        assert 'dsa110_disk_free_bytes{path="output"}' in text
    finally:
        server.kill()
        server.wait()


def test_json_logs_carry_observation_and_stage():
    record = logging.LogRecord("dsa_assets.x", logging.INFO, __file__, 1, "converted %s", ("obs",), None)
    record.observation = "2026-01-15T12:00:00"
    record.stage = "conversion"
    payload = json.loads(JsonFormatter().format(record))
    assert payload["message"] == "converted obs" and payload["level"] == "INFO"
    assert payload["observation"] == "2026-01-15T12:00:00" and payload["stage"] == "conversion"


def test_worker_commands_and_environment(tmp_path):
    from dsa_assets.streaming.worker import StreamingWorker, WorkerConfig, service_environment

    cfg = WorkerConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out", webserver=False)
    worker = StreamingWorker(cfg)
    (cmd,) = worker.command()
    assert cmd[0].endswith("dagster-daemon") and cmd[1:3] == ["run", "-m"]
    env = service_environment(cfg)
    assert env["DAGSTER_HOME"] == str(tmp_path / "out" / "dagster_home")
    assert env["DSA110_SETTINGS"] == str(tmp_path / "out" / "state" / "settings.yaml")
    assert worker.queue.db_path == tmp_path / "out" / "state" / "queue.sqlite3"
    with_ui = StreamingWorker(WorkerConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out", port=3456))
    ui, explorer = with_ui.command()
    assert "dev" in ui and "3456" in ui
    assert explorer[1:3] == ["explore", "--products-db"] and explorer[-1] == "3001"
    assert explorer[3] == str(tmp_path / "out" / "state" / "products.sqlite3")


def test_run_logs_are_json_lines_with_partition_run_and_observation(group_copy, tmp_path, monkeypatch):
    """A run's events go to the JSON log file with their context, and into Dagster's run log."""
    import dagster as dg

    from dsa_assets import partitions
    from dsa_assets.definitions import build_definitions
    from resources.settings import Settings

    group, incoming, _ = group_copy
    settle(incoming)
    log_file = tmp_path / "logs" / "dsa110.jsonl"
    monkeypatch.setenv("DSA110_LOG_FILE", str(log_file))
    defs = build_definitions(Settings(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0,
                                      imaging=scaled_imaging(size=256, cell_arcsec=30, niter=50), calibration=SOLVING))
    window = partitions.window_key(group.data_start)
    overrides = {"python_logs": {"managed_python_loggers": ["dsa_assets"], "python_log_level": "INFO"}}
    with dg.instance_for_test(overrides=overrides) as instance:
        result = defs.resolve_job_def("observation_job").execute_in_process(instance=instance, partition_key=window)
        assert result.success
        run_messages = [e.message for e in instance.all_logs(result.run_id)]
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    converted = [r for r in records if f"converted {group.stamp}" in r["message"]]
    assert converted and converted[0]["partition"] == window and converted[0]["run_id"] == result.run_id
    assert converted[0]["stage"] == "conversion" and converted[0]["observation"] == group.stamp
    assert any(r["stage"] == "imaging" and f"imaged {group.stamp}" in r["message"] for r in records)
    assert any(m and f"converted {group.stamp}" in m for m in run_messages), "visible in the run log"
