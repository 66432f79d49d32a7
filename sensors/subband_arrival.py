"""The subband-arrival sensor: new files -> registered groups -> Measurement Set runs.

Each tick registers complete subband files stamped after the cursor (minus a look-back for
stragglers), then requests a run of the ``measurement_set`` partition of every group whose
subbands are all present, with run key ``"<window>:<group id>"``: repeated ticks never
duplicate work, and a second observation in the same window (after a correlator restart)
gets a run of its own. Windows skipped since the previous observation are requested too
(run key ``"<window>:empty"``), so gaps materialize as explicit empty partitions.

Groups still incomplete after the timeout are converted with the missing subbands flagged,
or failed, per ``PipelineResource.incomplete_policy``; the decision is recorded in the queue
and as an asset observation on the partition, visible in the UI.
"""


import json
import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from dsa_assets import partitions
from dsa_assets.assets.subband_files import SUBBAND_FILES
from dsa_assets.naming import format_time, parse_time
from dsa_assets.streaming.observations import DECISION_FAILED, decide_incomplete
from dsa_assets.streaming.scanner import scan_directory
from resources.pipeline import PipelineResource

LOOKBACK = timedelta(minutes=30)
"""Files stamped up to this long before the newest one seen are still looked for."""
OBSERVATION_JOB = "observation_job"


def run_request(window: str, group_id: str | None) -> dg.RunRequest:
    tags = {"dsa110/window": window, "dsa110/stage": "conversion"}
    if group_id:
        tags["dsa110/observation"] = group_id
    return dg.RunRequest(run_key=f"{window}:{group_id or 'empty'}", partition_key=window, tags=tags)


def subband_files_event(queue, group, window: str) -> dg.AssetMaterialization:
    """The external ``subband_files`` asset of a window gained a complete observation."""
    return dg.AssetMaterialization(
        asset_key=SUBBAND_FILES.key,
        partition=window,
        metadata={
            "observation": group.group_id,
            "n_subbands": group.n_subbands,
            "files": dg.MetadataValue.json([str(p) for p in queue.files(group.group_id)]),
        },
    )


def incomplete_decision_event(queue, group, window: str, decision: str) -> dg.AssetObservation:
    """The incomplete-group policy's decision, shown on the measurement_set partition."""
    missing = queue.missing_subbands(group.group_id)
    return dg.AssetObservation(
        asset_key="measurement_set",
        partition=window,
        metadata={
            "observation": group.group_id,
            "incomplete_group_decision": decision,
            "subbands_present": group.n_subbands,
            "missing_subbands": ", ".join(f"sb{s:02d}" for s in missing),
        },
    )


def window_status(window: str, now: float) -> str:
    """"ok", "future" (a window that does not exist yet: a fast correlator clock; it waits)
    or "before_start" (earlier than the first partition: can never be materialized)."""
    if window > partitions.window_key(datetime.fromtimestamp(now, UTC)):
        return "future"
    if window < partitions.OBSERVATION_PARTITIONS.start.strftime(partitions.KEY_FORMAT):
        return "before_start"
    return "ok"


def evaluate(pipeline: PipelineResource, cursor: str | None, now: float | None = None) -> dg.SensorResult:
    """One sensor tick, as a plain function of the resource and the cursor (testable)."""
    now = time.time() if now is None else now
    state = json.loads(cursor) if cursor else {}
    queue = pipeline.queue()
    since = parse_time(state["scan_from"]) if state.get("scan_from") else None
    report = scan_directory(pipeline.input_dir, queue, stable_s=pipeline.stable_s, since=since, now=now)

    disk = pipeline.disk_status()
    if disk.level == "pause":
        # files stay registered; their runs are requested once space returns
        return dg.SensorResult(
            run_requests=[], cursor=json.dumps(state, sort_keys=True), skip_reason=f"paused: {disk.message}"
        )

    requests: dict[str, dg.RunRequest] = {}
    events = []
    deferred = set()

    def usable(group, window) -> bool:
        status = window_status(window, now)
        if status == "future":
            deferred.add(window)
        elif status == "before_start":
            queue.fail(
                group.group_id,
                f"observation starts before the first partition; set {partitions.START_ENV} earlier to process it",
            )
        return status == "ok"

    arrived_now = {r.group_id for r in report.registered if r.status == "valid"}
    for group in queue.ready_groups():
        window = partitions.window_key(group.start)
        if not usable(group, window):
            continue
        requests[f"{window}:{group.group_id}"] = run_request(window, group.group_id)
        if group.group_id in arrived_now:
            events.append(subband_files_event(queue, group, window))
    for group in queue.stale_groups(pipeline.incomplete_timeout_s, now=now):
        window = partitions.window_key(group.start)
        if not usable(group, window):
            continue
        decision = decide_incomplete(queue, group, pipeline.incomplete_policy)
        events.append(incomplete_decision_event(queue, group, window, decision))
        if decision != DECISION_FAILED:
            requests[f"{window}:{group.group_id}"] = run_request(window, group.group_id)
            events.append(subband_files_event(queue, group, window))

    last_window = state.get("last_window")
    windows = sorted({r.partition_key for r in requests.values()})
    for window in windows:
        if last_window and window > last_window:
            for gap in partitions.windows_between(last_window, window):
                requests.setdefault(f"{gap}:empty", run_request(gap, None))
    if windows and (not last_window or windows[-1] > last_window):
        state["last_window"] = windows[-1]
    if report.latest_stamp:
        scan_from = format_time(parse_time(report.latest_stamp) - LOOKBACK)
        state["scan_from"] = max(scan_from, state.get("scan_from") or scan_from)

    skip = None
    if not requests:
        skip = (
            f"no complete observation; {len(report.registered)} file(s) registered, "
            f"{len(report.waiting)} still being written, {len(report.rejected)} rejected"
        )
        if deferred:
            skip += f"; waiting for windows that have not started yet: {', '.join(sorted(deferred))}"
        if disk.level == "warn":
            skip += f"; low disk space: {disk.message}"
    return dg.SensorResult(
        run_requests=sorted(requests.values(), key=lambda r: r.run_key),
        cursor=json.dumps(state, sort_keys=True),
        asset_events=events,
        skip_reason=skip,
    )


@dg.sensor(
    name="subband_arrival_sensor",
    job_name=OBSERVATION_JOB,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers new subband files and requests a Measurement Set run per complete observation.",
)
def subband_arrival_sensor(context: dg.SensorEvaluationContext, pipeline: PipelineResource):
    return evaluate(pipeline, context.cursor)
