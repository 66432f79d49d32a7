"""Incomplete observations: the policy that decides what becomes of a group still lacking
subbands once it has waited (``GroupRecord.waited``): convert with the missing subbands
flagged, or fail; recorded in the queue. Used by the arrival sensor and by the conversion of
a window."""

from __future__ import annotations

from .queue import GroupRecord, SubbandQueue

POLICIES = ("convert_partial", "fail")
DECISION_PARTIAL = "convert_partial"
DECISION_FAILED = "failed_incomplete"


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
