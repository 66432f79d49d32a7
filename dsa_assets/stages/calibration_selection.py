"""Which calibration an observation gets: solve on it when a calibrator transits, then take the
valid solution nearest in time from the products database.

Plain Python: the ``policy`` is anything with the attributes of the calibration settings
(``resources.calibration.CalibrationResource``: solving switch, transit limits, validity
window, model builder, quality limits); ``db`` is a :class:`dsa_assets.products.ProductsDB`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..calibrators import Transit, best_transit, transits
from ..exceptions import DSA110Error
from .calibration import CalibrationStage, SolutionResult
from .ms_inspect import observation_span


@dataclass
class ObservationCalibration:
    """What happened to one observation. Times in seconds."""

    group_id: str
    transits: list[Transit] = field(default_factory=list)
    transit: Transit | None = None
    """The transit solved on (None: no usable calibrator, or solving off)."""
    solution: SolutionResult | None = None
    model_size: int = 0
    problems: list[str] = field(default_factory=list)
    """Why the solution made here is not used (empty: it is valid)."""
    solve_failure: str | None = None
    assignment: dict | None = None
    """The solution used: observation, partition, calibrator, offset (h), path, quality."""
    missing: str | None = None
    """Why no solution could be assigned."""


def calibrate_observation(stage: CalibrationStage, db, policy, group_id: str, ms_path: Path | str,
                          partition_key: str, field_sources=()) -> ObservationCalibration:
    """Solve on ``group_id`` if a calibrator transits in it (its model: the calibrator and the
    ``field_sources``, reference-catalogue sources, near it, and the sky beyond that the data
    hold), then assign it the nearest valid solution; both recorded in ``db``."""
    span = observation_span(ms_path)
    mid = span.mid.timestamp()
    out = ObservationCalibration(group_id)
    out.transits = transits(span.start, span.end, span.pointing_dec_rad, policy.max_offset_deg)
    transit = best_transit(out.transits, policy.min_calibrator_flux_jy)
    if transit and policy.enable_solving:
        model = policy.model(transit.calibrator, span, field_sources)
        out.model_size = len(model)
        try:
            out.solution = stage.execute_solve(group_id, ms_path, model, catalogue_sources=field_sources)
            out.model_size = len(out.solution.sources)
        except DSA110Error as exc:
            # a bad calibrator observation must not strand its window: record why and fall
            # through to the nearest valid solution, like any other observation
            out.solve_failure = f"solving on {transit.calibrator.label} failed: {exc}"
        else:
            out.transit = transit
            out.problems = policy.solution_problems(out.solution.quality)
            sol = out.solution
            db.record_solution(
                group_id=group_id, partition_key=partition_key, calibrator=transit.calibrator.label, mid_unix=mid,
                path=str(sol.directory), refant=sol.refant, valid=not out.problems,
                quality={**sol.quality.as_dict(), "problems": out.problems, "transit": transit.as_dict(),
                         "flags": sol.flags.as_dict(),
                         "timings_s": sol.timings_s},
            )
    chosen = db.nearest_solution(mid, policy.validity_hours * 3600.0)
    if chosen is None:
        out.missing = (f"no valid calibration solution within {policy.validity_hours} h of {group_id}"
                       + ("" if policy.enable_solving else " (solving is off: apply-only mode)"))
        return out
    db.record_assignment(group_id=group_id, partition_key=partition_key, solution_group_id=chosen["group_id"],
                         solution_partition_key=chosen["partition_key"], offset_s=mid - chosen["mid_unix"])
    out.assignment = {"observation": group_id, "solution_partition": chosen["partition_key"],
                      "solution_observation": chosen["group_id"], "calibrator": chosen["calibrator"],
                      "offset_h": round((mid - chosen["mid_unix"]) / 3600.0, 3), "path": chosen["path"],
                      "quality": chosen["quality"]}
    return out
