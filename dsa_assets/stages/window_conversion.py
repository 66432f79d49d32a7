"""Converting the observations of one time window: the work behind a ``measurement_set``
partition.

For a window [start, end): register any files of the window not yet known (so backfills of
old data need no watcher), then for every group starting in the window decide:

- all subbands present -> convert;
- incomplete and past the timeout -> policy ``convert_partial`` (missing subbands flagged)
  or ``fail`` (group marked failed with the reason);
- incomplete and still inside the timeout -> left pending (a later run converts it).

Each conversion claims the group in the queue (so two runs of one window cannot convert it
at once), and ends completed with its MS path or failed with the error text. Plain Python.
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
from ..streaming.observations import DECISION_FAILED, decide_incomplete
from ..streaming.queue import FAILED, PENDING, SubbandQueue
from ..streaming.scanner import scan_directory
from .conversion import ConversionResult, ConversionStage

log = logging.getLogger(__name__)


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
            if not group.waited(timeout_s, now):
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
