"""Alerts: what raises one, as Dagster sensors. The wording, de-duplication and rate limit are
:mod:`dsa_assets.alerts`; the destinations and thresholds the ``alerts`` settings.

- ``run_failure_alerts``: every failed run (a failed blocking check fails its run too), with
  its partition, the failed steps' errors and a link to the run.
- ``operations_alerts`` (every minute): the arrival sensor paused for disk space, observations
  still pending or processing past ``stuck_after_s``, images that came more than
  ``slow_image_s`` after their last subband; and it sends what the rate limit held back.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from dsa_assets.alerts import Alert
from dsa_assets.products import unix_seconds
from dsa_assets.streaming.queue import PENDING, PROCESSING
from resources.alerts import AlertsResource
from resources.pipeline import PipelineResource


def failure_reasons(events) -> str:
    """The failed steps of a run, each with its error's message (the platform's own words, without
    the exception's class)."""
    reasons = []
    for event in events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            lines = (error.message if error else "").strip().splitlines()
            text = lines[-1] if lines else "failed"
            kind, _, rest = text.partition(": ")
            reasons.append(f"{event.step_key}: {rest if rest and error and kind.endswith(error.cls_name) else text}")
    return "; ".join(reasons)


def run_failure_alert(run, events, ui_url: str) -> Alert:
    partition = run.tags.get("dagster/partition")
    reason = failure_reasons(events) or f"run of {run.job_name} failed"
    return Alert("run_failed", f"run_failed:{run.job_name}:{partition or run.run_id}", reason, partition,
                 f"{ui_url}/runs/{run.run_id}")


@dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Alerts on every failed run: partition, failed steps' errors, link.")
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource, pipeline: PipelineResource):
    run = context.dagster_run
    events = [e.dagster_event for e in context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)]
    alerts.alerter(pipeline.state_dir).notify([run_failure_alert(run, events, alerts.ui_url)])


def operations(pipeline: PipelineResource, alerts: AlertsResource, cursor: str | None,
               now: float | None = None) -> tuple[list[Alert], str]:
    """The operational alerts of one tick, and the next cursor (the newest image looked at)."""
    now = time.time() if now is None else now
    state = json.loads(cursor) if cursor else {"images_after": now - 3600.0}
    found = []
    disk = pipeline.disk_status()
    if disk.level == "pause":
        found.append(Alert("disk_paused", "disk_paused", f"no new runs: {disk.message}",
                           link=f"{alerts.ui_url}/overview/automation"))
    queue = pipeline.queue()
    for state_name in (PENDING, PROCESSING):
        for group in queue.groups(state_name):
            waited = now - group.first_seen
            if waited > alerts.stuck_after_s:
                found.append(Alert("observation_stuck", f"observation_stuck:{group.group_id}",
                                   f"{group.group_id} {state_name} for {waited / 60:.0f} min "
                                   f"({group.n_subbands} subbands)", group.group_id,
                                   f"{alerts.ui_url}/assets/measurement_set"))
    newest = state["images_after"]
    for row in pipeline.products().observation_images_since(state["images_after"]):
        made = unix_seconds(row["created_at"])
        newest = max(newest, made)
        latency = made - queue.group(row["group_id"]).last_arrival
        if latency > alerts.slow_image_s:
            found.append(Alert("slow_image", f"slow_image:{row['group_id']}",
                               f"{row['group_id']} imaged {latency / 60:.1f} min after its last subband",
                               row["partition_key"],
                               f"{alerts.ui_url}/assets/image?view=partitions&partition={row['partition_key']}"))
    return found, json.dumps({"images_after": newest})


@dg.sensor(name="operations_alerts", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts on a disk pause, stuck observations and slow images; sends what the rate limit held.")
def operations_alerts(context: dg.SensorEvaluationContext, alerts: AlertsResource, pipeline: PipelineResource):
    found, cursor = operations(pipeline, alerts, context.cursor)
    sent = alerts.alerter(pipeline.state_dir).notify(found)
    return dg.SensorResult(cursor=cursor, skip_reason=f"{len(found)} alert(s) raised, {sent} message(s) sent")
