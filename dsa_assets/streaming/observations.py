"""Converting the observations of one time window: the work behind a ``measurement_set``
partition, shared by the Dagster asset and the Dagster-free ``StreamingWorker``.

For a window [start, end): register any files of the window not yet known (so backfills of
old data need no watcher), then for every group starting in the window decide:

- all subbands present -> convert;
- incomplete and past the timeout -> policy ``convert_partial`` (missing subbands flagged)
  or ``fail`` (group marked failed with the reason);
- incomplete and still inside the timeout -> left pending (a later run converts it).

Each conversion claims the group in the queue (so two runs of one window cannot convert it
at once), and ends completed with its MS path or failed with the error text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from .. import metrics
from ..constants import GROUP_TOLERANCE_S, INCOMPLETE_GROUP_TIMEOUT_S
from ..exceptions import DSA110Error
from ..logs import log_context
from ..stages.conversion import ConversionResult, ConversionStage
from .queue import FAILED, PENDING, GroupRecord, SubbandQueue
from .scanner import scan_directory

log = logging.getLogger(__name__)

POLICIES = ("convert_partial", "fail")
DECISION_PARTIAL = "convert_partial"
DECISION_FAILED = "failed_incomplete"


@dataclass
class WindowOutcome:
    """What happened to each observation of a window."""

    converted: list[ConversionResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """group id -> reason, for conversions that failed or groups failed by policy."""
    waiting: list[str] = field(default_factory=list)
    """Incomplete groups still inside their timeout."""
    busy: list[str] = field(default_factory=list)
    """Groups another worker is converting right now."""


def is_stale(group: GroupRecord, timeout_s: float, now: float, cadence_s: float = 309.0) -> bool:
    """An incomplete group has waited long enough: its first file arrived ``timeout_s`` ago,
    or (old data registered only now) its stamp is older than the timeout plus one cadence."""
    return now - group.first_seen >= timeout_s or now - group.canonical_time >= timeout_s + cadence_s


def decide_incomplete(queue: SubbandQueue, group: GroupRecord, policy: str) -> str:
    """Apply the incomplete-group policy; records and returns the decision."""
    if policy not in POLICIES:
        raise ValueError(f"incomplete-group policy must be one of {POLICIES}, got {policy!r}")
    missing = queue.missing_subbands(group.group_id)
    if policy == "fail":
        queue.decide(group.group_id, DECISION_FAILED)
        queue.fail(
            group.group_id,
            f"incomplete after timeout: {group.n_subbands}/{queue.expected_subbands} subbands "
            f"(missing {', '.join(f'sb{s:02d}' for s in missing)})",
        )
        return DECISION_FAILED
    queue.decide(group.group_id, DECISION_PARTIAL)
    return DECISION_PARTIAL


def convert_window(
    queue: SubbandQueue,
    stage: ConversionStage,
    input_dir: Path | str,
    start: datetime,
    end: datetime,
    *,
    partition_key: str | None = None,
    stable_s: float = 5.0,
    timeout_s: float = INCOMPLETE_GROUP_TIMEOUT_S,
    policy: str = "convert_partial",
    now: float | None = None,
) -> WindowOutcome:
    """Convert every observation starting in [start, end) that is ready; see module doc."""
    now = time.time() if now is None else now
    margin = timedelta(seconds=GROUP_TOLERANCE_S)
    scan_directory(input_dir, queue, stable_s=stable_s, since=start - margin, until=end + margin, now=now)
    outcome = WindowOutcome()
    for group in queue.groups_between(start, end):
        gid = group.group_id
        if group.state == FAILED and group.decision == DECISION_FAILED:
            outcome.failed[gid] = group.error or "failed by the incomplete-group policy"
            continue
        if group.state == PENDING and group.n_subbands < queue.expected_subbands and group.decision is None:
            if not is_stale(group, timeout_s, now):
                outcome.waiting.append(gid)
                continue
            if decide_incomplete(queue, group, policy) == DECISION_FAILED:
                outcome.failed[gid] = queue.group(gid).error
                continue
        if not queue.claim(gid):
            outcome.busy.append(gid)
            continue
        try:
            with log_context(observation=gid):
                result = stage.execute(group_id=gid, hdf5_files=queue.files(gid), partition_key=partition_key)
        except DSA110Error as exc:
            queue.fail(gid, str(exc))
            metrics.OBSERVATIONS.labels("failed").inc()
            outcome.failed[gid] = str(exc)
            log.error("conversion of %s failed: %s", gid, exc, extra={"observation": gid, "stage": "conversion"})
            continue
        except BaseException as exc:
            queue.fail(gid, f"{type(exc).__name__}: {exc}")
            metrics.OBSERVATIONS.labels("failed").inc()
            raise
        queue.complete(gid, str(result.ms_path))
        metrics.OBSERVATIONS.labels("completed").inc()
        metrics.STAGE_DURATION.labels("conversion").observe(result.wall_time_s)
        metrics.LATENCY.labels("measurement_set").observe(max(time.time() - group.last_arrival, 0.0))
        outcome.converted.append(result)
    return outcome
