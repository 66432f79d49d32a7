"""Alerts reach a real HTTP receiver and a real SMTP server on this machine: each with its
partition, reason and link; repeats dropped; a flood sent as one summary."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import pytest

from dsa_assets.alerts import Alert
from resources.alerts import AlertsResource
from resources.pipeline import PipelineResource
from sensors.alerts import operations, run_failure_alert, run_failure_alerts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def webhook():
    """A local HTTP receiver; yields (url, list of received JSON bodies)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def smtp():
    """A local SMTP server (aiosmtpd); yields (port, list of received messages)."""
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, received
    controller.stop()


def settings(webhook_url, smtp_port, **kw) -> AlertsResource:
    return AlertsResource(webhook_url=webhook_url, smtp_host="127.0.0.1", smtp_port=smtp_port,
                          alert_to="ops@example.org, night@example.org", ui_url="http://ui:3000", **kw)


def wait_for(received, n, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while len(received) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return received


def test_one_alert_reaches_both_channels_with_partition_reason_and_link(webhook, smtp, tmp_path):
    url, posts = webhook
    port, mails = smtp
    alerter = settings(url, port).alerter(tmp_path)
    alert = Alert("run_failed", "run_failed:observation_job:2026-01-15-12:00", "image: wsclean exited 1",
                  "2026-01-15-12:00", "http://ui:3000/runs/abc")
    assert alerter.notify([alert], now=1000.0) == 1
    (post,) = posts
    assert post["alerts"] == [{"kind": "run_failed", "key": alert.key, "reason": "image: wsclean exited 1",
                               "partition": "2026-01-15-12:00", "link": "http://ui:3000/runs/abc"}]
    assert "run_failed [2026-01-15-12:00]: image: wsclean exited 1 <http://ui:3000/runs/abc>" in post["text"]
    (mail,) = wait_for(mails, 1)
    assert mail["To"] == "ops@example.org, night@example.org"
    assert mail["Subject"] == "DSA-110: run_failed [2026-01-15-12:00]: image: wsclean exited 1"
    assert "<http://ui:3000/runs/abc>" in mail.get_payload(decode=True).decode()
    # the same alert again within the repeat time: nothing sent
    assert alerter.notify([alert], now=3000.0) == 0 and len(posts) == 1
    assert alerter.notify([alert], now=1000.0 + 3601.0) == 1, "again after the repeat time"


def test_a_flood_sends_one_summary(webhook, smtp, tmp_path):
    url, posts = webhook
    port, mails = smtp
    alerter = settings(url, port, alert_interval_s=600.0).alerter(tmp_path)
    alerter.notify([Alert("run_failed", "first", "first failure", "w0")], now=0.0)
    flood = [Alert("run_failed", f"run_failed:{i}", f"failure {i}", f"w{i}") for i in range(300)]
    for i, alert in enumerate(flood):  # one at a time, as sensors raise them, within the interval
        assert alerter.notify([alert], now=1.0 + i) == 0
    assert alerter.flush(now=300.0) == 0, "still inside the interval"
    assert alerter.flush(now=700.0) == 1
    assert len(posts) == 2
    summary = posts[1]
    assert len(summary["alerts"]) == 300 and "300 alerts (run_failed)" in summary["text"]
    assert "... and 280 more" in summary["text"]
    assert len(wait_for(mails, 2)) == 2
    assert alerter.flush(now=2000.0) == 0, "nothing left"


def test_an_unreachable_receiver_keeps_the_alerts_for_later(tmp_path):
    dead = AlertsResource(webhook_url=f"http://127.0.0.1:{free_port()}/hook").alerter(tmp_path)
    assert dead.notify([Alert("disk_paused", "disk_paused", "output has 1 GB free")], now=0.0) == 0
    assert json.loads((tmp_path / "alerts.json").read_text())["pending"][0]["kind"] == "disk_paused"


def test_operations_raise_disk_stuck_and_slow_image_alerts(tmp_path):
    out = tmp_path / "out"
    huge = 1e9
    pipeline = PipelineResource(input_dir=str(tmp_path), output_dir=str(out), disk_warn_gb=huge, disk_pause_gb=huge)
    queue = pipeline.queue()
    t_file = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    queue.register(tmp_path / "2026-01-15T12:00:00_sb00.hdf5", file_time=t_file, subband=0, now=1000.0)
    queue.register(tmp_path / "2026-01-15T12:10:00_sb00.hdf5", file_time=t_file.replace(minute=10), subband=0,
                   now=1000.0)
    queue.claim("2026-01-15T12:10:00")
    queue.complete("2026-01-15T12:10:00", str(out / "x.ms"))
    pipeline.products().record_observation_image(group_id="2026-01-15T12:10:00", partition_key="2026-01-15-12:10",
                                                 directory=str(out), created_at=datetime.fromtimestamp(3000.0, UTC))
    alerts = AlertsResource(stuck_after_s=1800.0, slow_image_s=900.0)
    found, cursor = operations(pipeline, alerts, json.dumps({"images_after": 0.0}), now=4000.0)
    kinds = {a.kind: a for a in found}
    assert set(kinds) == {"disk_paused", "observation_stuck", "slow_image"}
    assert "2026-01-15T12:00:00 pending for 50 min" in kinds["observation_stuck"].reason
    assert "imaged 33.3 min after its last subband" in kinds["slow_image"].reason
    assert kinds["slow_image"].partition == "2026-01-15-12:10"
    again, _ = operations(pipeline, alerts, cursor, now=4000.0)
    assert "slow_image" not in {a.kind for a in again}, "an image is looked at once"


def test_a_failed_run_raises_an_alert_with_its_steps_error(webhook, tmp_path):
    url, posts = webhook

    @dg.asset(partitions_def=dg.StaticPartitionsDefinition(["2026-01-15-12:00"]))
    def image():
        raise dg.Failure("wsclean exited 1")

    pipeline = PipelineResource(input_dir=str(tmp_path), output_dir=str(tmp_path / "out"))
    alerts = AlertsResource(webhook_url=url, ui_url="http://ui:3000")
    with dg.instance_for_test() as instance:
        result = dg.materialize([image], instance=instance, partition_key="2026-01-15-12:00", raise_on_error=False)
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alerts", dagster_event=result.get_run_failure_event(), dagster_instance=instance,
            dagster_run=result.dagster_run, resources={"alerts": alerts, "pipeline": pipeline}).for_run_failure()
        run_failure_alerts(context)
    (post,) = posts
    (alert,) = post["alerts"]
    assert alert["kind"] == "run_failed" and alert["partition"] == "2026-01-15-12:00"
    assert alert["reason"] == "image: wsclean exited 1"
    assert alert["link"] == f"http://ui:3000/runs/{result.run_id}"
    assert run_failure_alert(result.dagster_run, [], "http://ui").reason.startswith("run of ")


def test_alerts_off_keep_nothing(tmp_path):
    off = AlertsResource().alerter(tmp_path)
    assert off.notify([Alert("run_failed", "k", "r")], now=0.0) == 0
    assert not (tmp_path / "alerts.json").exists()
