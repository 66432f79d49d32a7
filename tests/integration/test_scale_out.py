"""Scale-out: run steps executed by a Celery worker process through a Redis broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from dsa_assets import partitions
from dsa_assets.streaming.worker import instance_config_template
from resources.settings import Settings

from ..conftest import settle

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

SUBMIT = """
import json, os, dagster as dg
from dsa_assets.definitions import observation_job_definition
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(dg.reconstructable(observation_job_definition), instance=instance,
                            tags={"dagster/partition": os.environ["WINDOW"]})
    print(json.dumps({"success": result.success, "run_id": result.run_id, "pid": os.getpid()}))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_celery_worker_executes_the_observation_job(group_copy, tmp_path):
    redis = shutil.which("redis-server")
    assert redis, "redis-server missing: scripts/bootstrap.sh installs Debian's redis-server"
    group, incoming, _ = group_copy
    settle(incoming)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(instance_config_template(), home / "dagster.yaml")
    port = _port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the worker runs `celery`
        "DAGSTER_HOME": str(home),
        # the deployment's one settings file, read by the submitting process and the worker alike
        "DSA110_SETTINGS": str(Settings(
            input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=0, enable_solving=True,
            executor="celery", celery_broker=f"redis://127.0.0.1:{port}/0",
            celery_backend=f"redis://127.0.0.1:{port}/1").write(tmp_path / "settings.yaml")),
        # the worker's own Celery configuration (deploy/production/celery.yaml)
        "DSA110_CELERY_BROKER": f"redis://127.0.0.1:{port}/0",
        "DSA110_CELERY_BACKEND": f"redis://127.0.0.1:{port}/1",
        "WINDOW": partitions.window_key(group.data_start),
    }
    broker = subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL, start_new_session=True)
    worker_log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [str(BIN / "dagster-celery"), "worker", "start", "-y", str(ROOT / "deploy" / "production" / "celery.yaml"),
         "-A", "dagster_celery.app", "-n", "dsa110-test@%h"],
        env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "ready" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(1)
        submit = subprocess.run([sys.executable, "-c", SUBMIT], env=env, capture_output=True, text=True, timeout=900)
        assert submit.returncode == 0, submit.stderr[-3000:]
        out = json.loads(submit.stdout.strip().splitlines()[-1])
        assert out["success"], (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        for proc in (worker, broker):
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        worker_log.close()
    assert list((tmp_path / "out" / "ms").rglob("*.ms")), "the Measurement Set was written"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.all_logs(out["run_id"], of_type=dg.DagsterEventType.STEP_START)
        step_pids = {r.dagster_event.pid for r in records}
        assert {r.step_key for r in records} == {"measurement_set", "calibration_tables", "calibrated_ms", "image"}
    assert out["pid"] not in step_pids, "steps ran in the Celery worker, not in the submitting process"
