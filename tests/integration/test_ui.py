"""The Dagster UI as a user sees it: a real webserver, read by headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from dsa_assets import partitions
from dsa_assets.definitions import build_definitions
from dsa_assets.streaming.worker import instance_config_template
from resources.pipeline import PipelineResource
from resources.settings import Settings

from ..conftest import SOLVING, scaled_imaging, settle

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def rendered_dom(url: str, profile: Path) -> str:
    """The page's DOM after its JavaScript ran (Chromium's virtual time budget: 20 s)."""
    assert CHROMIUM, "chromium missing: scripts/bootstrap.sh installs Debian's chromium"
    out = subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120)
    return out.stdout


def test_asset_graph_and_partition_metadata_in_the_ui(group_copy, tmp_path):
    group, incoming, _ = group_copy
    settle(incoming)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(instance_config_template(), home / "dagster.yaml")
    window = partitions.window_key(group.data_start)
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1)
    settings = Settings(pipeline=pipeline, imaging=scaled_imaging(size=512, cell_arcsec=16, niter=300),
                        calibration=SOLVING)
    defs = build_definitions(settings)
    env = {**os.environ, "DAGSTER_HOME": str(home), "DSA110_SETTINGS": str(settings.write(tmp_path / "settings.yaml"))}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert defs.resolve_job_def("observation_job").execute_in_process(instance=instance,
                                                                          partition_key=window).success
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    web = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-m", "dsa_assets.definitions", "-a", "defs",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                time.sleep(1)
        base = f"http://127.0.0.1:{port}"
        graph = rendered_dom(f"{base}/assets", tmp_path / "chrome")
        for asset in ("subband_files", "measurement_set", "image"):
            assert asset in graph, f"{asset} not shown in the asset catalog"
        page = rendered_dom(f"{base}/assets/image?view=partitions&partition={window}", tmp_path / "chrome")
        for field in ("rms_mjy", "rms_over_thermal", "dynamic_range", "beam_arcsec", "thumbnail"):
            assert field in page, f"{field} not shown for partition {window}"
        ms_page = rendered_dom(f"{base}/assets/measurement_set?view=partitions&partition={window}", tmp_path / "chrome")
        assert group.stamp in ms_page and "freq_min_mhz" in ms_page
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(30)
