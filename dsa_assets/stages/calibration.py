"""The calibration stage: for one observation, a scratch copy, flagging, the calibrator's model,
K/B/G solutions and their quality, then an atomic publish (solving); or flagging and the
application of a published solution (applying). Plain Python: no Dagster import.

The pieces are modules of their own, usable on any Measurement Set with one spectral window:
:mod:`.sky_model` (components, MODEL_DATA), :mod:`.gain_solutions` (solve, apply, quality) and
:mod:`.gain_readback` (solved gains read back for comparison with known ones). Their names are
re-exported here, where they used to live.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import fsutil, naming
from ..exceptions import CalibrationError
from .flagging import FlaggingConfig, FlaggingStage, FlagReport
from .gain_readback import antenna_gains, gain_errors
from .gain_solutions import (
    TABLE_KINDS,
    SolutionQuality,
    SolveOptions,
    TableQuality,
    apply,
    choose_refant,
    keep_calibrated_only,
    solution_quality,
    solution_tables,
    solve,
    table_quality,
    time_averaged_copy,
    validate_tables,
)
from .ms_inspect import casa_table, channel_frequencies, dish_diameter_m, flag_fraction
from .peeling import (
    PeeledSource,
    PeelingConfig,
    held,
    presence,
    sky_beyond,
    subtract_sky,
)
from .sky_model import SourceModel, calibrator_model, predict_model, write_component_list

__all__ = [
    "TABLE_KINDS", "ApplyResult", "CalibrationConfig", "CalibrationError", "CalibrationStage", "SolutionQuality",
    "SolutionResult", "SolveOptions", "SourceModel", "TableQuality", "antenna_gains", "apply", "calibrator_model",
    "channel_frequencies", "choose_refant", "dish_diameter_m", "gain_errors", "predict_model", "solution_quality",
    "solution_tables", "solve", "table_quality", "time_averaged_copy", "validate_tables", "write_component_list",
]

log = logging.getLogger(__name__)


MODEL_MIN_PRESENCE = 0.25
"""A source beyond a calibrator's model joins it when the data calibrated without it hold at
least this much of it (:func:`peeling.presence`). Not peeling's 0.5: the solution made without
the source has taken part of it into the gains. Measured: a 2 Jy source 2.3 deg north of 3C286
(15 Jy) read 0.57 after the first solve, an absent one as bright 2.3 deg south -0.12
(``test_the_sky_beyond_the_model_that_the_data_hold_joins_it``)."""

FLAGGED_PREFIX = "flagged-"
"""Scratch name of a calibrator observation's flagged copy, kept from its solve for its apply."""
FLAGGED_NOTE = "dsa110-flagging.json"
STASH_MAX_AGE_S = 6 * 3600.0
"""A flagged copy its apply never took is removed after this long (s)."""


def _mtime_ns(ms_path: Path) -> int:
    return (Path(ms_path) / "table.dat").stat().st_mtime_ns


@dataclass(frozen=True)
class CalibrationConfig:
    output_dir: Path
    scratch_dir: Path | None = None
    flagging: FlaggingConfig = FlaggingConfig()
    solve: SolveOptions = SolveOptions()
    primary_beam: bool = True
    """Attenuate the model by the primary beam at each source (see predict_model)."""
    keep_raw_data: bool = False
    """The calibrated Measurement Set keeps the raw visibilities (DATA) beside the calibrated
    ones (CORRECTED_DATA). Otherwise its DATA holds the calibrated visibilities alone (CASA
    split's layout): the raw ones stay in the raw Measurement Set while retention keeps it, and
    the calibrated product takes half the bytes."""
    peeling: PeelingConfig | None = PeelingConfig()
    """Bright sources peeled from the calibrated visibilities (:mod:`dsa_assets.stages.peeling`);
    None: nothing subtracted."""
    model_sky_beyond: PeelingConfig | None = PeelingConfig()
    """The levels at which the sky beyond a calibrator's model (the A-team, bright sources and
    the fainter sky outside the image, from the reference catalogue) joins it for the solve
    (:func:`peeling.sky_beyond`); None: the model is the calibrator and its field alone."""

    def __post_init__(self):
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.scratch_dir is not None:
            object.__setattr__(self, "scratch_dir", Path(self.scratch_dir))



@dataclass(frozen=True)
class SolutionResult:
    """A published calibration solution. Times in seconds."""

    group_id: str
    directory: Path
    tables: dict[str, Path]
    refant: str
    sources: list[SourceModel]
    quality: SolutionQuality
    flags: FlagReport
    timings_s: dict = field(default_factory=dict)

    def table_list(self) -> list[Path]:
        return [self.tables[k] for k in TABLE_KINDS]


@dataclass(frozen=True)
class ApplyResult:
    """A published calibrated Measurement Set."""

    group_id: str
    ms_path: Path
    solution_dir: Path
    flags: FlagReport
    fraction_flagged: float
    """Fraction (0..1) of the calibrated data flagged, after applycal (which flags what a
    solution does not cover)."""
    timings_s: dict = field(default_factory=dict)
    flags_reused: bool = False
    """The flags came from the solve on this observation (a calibrator's: flagged once)."""
    peeled: tuple[PeeledSource, ...] = ()
    """The bright sources considered, brightest first, each subtracted or (not in the data) left."""
    subtracted: tuple[tuple[SourceModel, float], ...] = ()
    """The fainter sources outside the image subtracted as predicted, with their apparent flux
    (Jy), brightest first (:func:`peeling.outside_sky`)."""


class CalibrationStage:
    """Solves on a calibrator observation and applies solutions to any observation."""

    name = "calibration"

    def __init__(self, config: CalibrationConfig):
        self.config = config

    def validate(self, ms_path: Path | str, sources: list[SourceModel] | None = None) -> None:
        FlaggingStage(self.config.flagging).validate(ms_path)
        if sources is not None and not sources:
            raise CalibrationError("a calibrator model needs at least one source")

    def _scratch_copy(self, ms_path: Path, tmp: Path) -> tuple[Path, float]:
        t = time.perf_counter()
        work = tmp / Path(ms_path).name
        shutil.copytree(ms_path, work)
        return work, time.perf_counter() - t

    def execute_solve(self, group_id: str, ms_path: Path | str, sources: list[SourceModel],
                      catalogue_sources=()) -> SolutionResult:
        """Flag a scratch copy of ``ms_path``, predict ``sources`` (with ``catalogue_sources``,
        the reference catalogue, and ``model_sky_beyond``: plus the sky the data hold beyond
        them), solve K/B/G, measure the calibrated calibrator against its model, and publish
        ``<output>/caltables/<date>/<id>/``; the result's ``sources`` are the whole model."""
        self.validate(ms_path, sources)
        cfg = self.config
        dest = naming.caltable_dir(cfg.output_dir, group_id)
        with fsutil.scratch_directory(cfg.scratch_dir, f"cal-{group_id}-") as tmp:
            work, copy_s = self._scratch_copy(Path(ms_path), tmp)
            timings = {"copy": copy_s}
            flags = FlaggingStage(cfg.flagging).execute(work)
            timings["flagging"] = sum(flags.timings_s.values())
            out = tmp / "solution"
            solved, solve_on = self._solve(group_id, work, sources, out, timings)
            beyond = self._sky_beyond(work, sources, catalogue_sources, solved, timings)
            if beyond:  # solved again with the sky the first solution found in the data
                sources = [*sources, *beyond]
                solved, solve_on = self._solve(group_id, work, sources, out, timings)
            if solve_on is not work:
                self._keep_flagged(group_id, Path(ms_path), work, flags)
            tables = {k: solved[k] for k in TABLE_KINDS}
            # quality figures on the data the solutions came from
            timings["applycal"] = apply(solve_on, [tables[k] for k in TABLE_KINDS])
            quality = solution_quality(solve_on, tables)
            write_component_list(out / "model.cl", sources)
            (out / "solution.json").write_text(json.dumps({
                "group_id": group_id, "refant": solved["refant"], "sources": [asdict(s) for s in sources],
                "quality": quality.as_dict(), "flags": flags.as_dict(), "timings_s": timings,
            }, indent=1))
            fsutil.publish(out, dest)
        published = {k: dest / Path(p).name for k, p in tables.items()}
        return SolutionResult(group_id, dest, published, solved["refant"], sources, quality, flags, timings)

    def _solve(self, group_id: str, work: Path, sources: list[SourceModel], out: Path, timings: dict
               ) -> tuple[dict, Path]:
        """Predict ``sources`` into ``work``, solve K/B/G into ``out`` (emptied first) on it or
        its time-averaged copy; returns the solve's tables and refant, and the Measurement Set
        solved on. Adds to ``timings`` (s)."""
        cfg = self.config
        t = time.perf_counter()
        predict_model(work, sources, cfg.primary_beam)
        timings["model"] = timings.get("model", 0.0) + time.perf_counter() - t
        fsutil.remove(out)
        out.mkdir()
        solve_on = work
        if cfg.solve.time_average and cfg.solve.gain_solint == "inf":
            t = time.perf_counter()
            solve_on = time_averaged_copy(work, work.parent / "averaged.ms")
            timings["time_average"] = timings.get("time_average", 0.0) + time.perf_counter() - t
        solved = solve(solve_on, out / group_id, cfg.solve)
        for step, seconds in solved.pop("timings_s").items():
            timings[step] = timings.get(step, 0.0) + seconds
        return solved, solve_on

    def _sky_beyond(self, work: Path, sources: list[SourceModel], catalogue_sources, solved: dict, timings: dict
                    ) -> list[SourceModel]:
        """The sky beyond the calibrator's model (:func:`peeling.sky_beyond`) that ``work``,
        calibrated with the first solution, holds: each bright source on its own, the fainter sky
        outside the image as a whole (one by one they are too faint to tell). A source the
        data lack (a catalogue entry absent from the sky, a model in a null) would bias the
        gains as much as one missing from the model."""
        levels = self.config.model_sky_beyond
        if levels is None:
            return []
        t = time.perf_counter()
        bright, fainter = sky_beyond(work, sources, catalogue_sources, levels)
        if not bright and not fainter:
            return []
        apply(work, [solved[k] for k in TABLE_KINDS], data_only=True)
        fits = presence(work, [[s] for s in bright] + ([fainter] if fainter else []), "CORRECTED_DATA",
                        known_column="MODEL_DATA")
        found = [s for s, fit in zip(bright, fits) if held(*fit, MODEL_MIN_PRESENCE, levels.min_significance)]
        fainter_held = bool(fainter) and held(*fits[-1], MODEL_MIN_PRESENCE, levels.min_significance)
        log.info("calibrator model: %d of %d bright sources beyond it are in the data (%s); the fainter sky outside "
                 "the image (%d sources) %s", len(found), len(bright),
                 ", ".join(f"{s.name} {x:.2f} +- {e:.2f}" for s, (x, e) in zip(bright, fits)), len(fainter),
                 f"{'is' if fainter_held else 'is not'} ({fits[-1][0]:.2f} +- {fits[-1][1]:.2f})" if fainter else "")
        timings["sky_beyond"] = time.perf_counter() - t
        return found + (fainter if fainter_held else [])

    def execute_apply(self, group_id: str, ms_path: Path | str, solution: SolutionResult | Path,
                      catalogue_sources=()) -> ApplyResult:
        """Flag a scratch copy of ``ms_path``, apply the solution's tables, peel the bright
        sources (:func:`peeling.bright_sources`: the A-team, VLA calibrators and
        ``catalogue_sources``, reference-catalogue entries), subtract the fainter sky outside the
        image as predicted (:func:`peeling.outside_sky`) and publish it as
        ``<output>/calibrated/<date>/<id>.ms``: calibrated visibilities in DATA (or, with
        ``keep_raw_data``, in CORRECTED_DATA beside the raw DATA)."""
        self.validate(ms_path)
        cfg = self.config
        solution_dir = solution.directory if isinstance(solution, SolutionResult) else Path(solution)
        tables = solution_tables(solution_dir)
        validate_tables(tables)
        dest = naming.calibrated_ms_path(cfg.output_dir, group_id)
        with fsutil.scratch_directory(cfg.scratch_dir, f"apply-{group_id}-") as tmp:
            reused = self._take_flagged(group_id, Path(ms_path), tmp)
            if reused:
                work, flags = reused
                timings = {}
            else:
                work, copy_s = self._scratch_copy(Path(ms_path), tmp)
                timings = {"copy": copy_s}
                flags: FlagReport = FlaggingStage(cfg.flagging).execute(work)
                timings["flagging"] = sum(flags.timings_s.values())
            timings["applycal"] = apply(work, tables)
            if not cfg.keep_raw_data:
                keep_calibrated_only(work, solution_dir)
            peeled, subtracted = [], []
            if cfg.peeling is not None:
                column = "CORRECTED_DATA" if cfg.keep_raw_data else "DATA"
                peeled, subtracted, steps = subtract_sky(work, catalogue_sources, column, cfg.peeling)
                timings.update(steps)
            with casa_table(work) as tb:
                flagged = flag_fraction(tb)
            fsutil.publish(work, dest)
        return ApplyResult(group_id, dest, solution_dir, flags, round(flagged, 5), timings, flags_reused=bool(reused),
                           peeled=tuple(peeled), subtracted=tuple(subtracted))

    # -- one flagging pass per calibrator observation ------------------------------------------
    def _flagged_stash(self, group_id: str) -> Path:
        return fsutil.scratch_root(self.config.scratch_dir) / f"{FLAGGED_PREFIX}{naming.observation_id(group_id)}.ms"

    def _keep_flagged(self, group_id: str, ms_path: Path, work: Path, flags: FlagReport) -> None:
        """Keep the solve's flagged full-resolution copy (MODEL_DATA dropped) in scratch for
        this observation's ``execute_apply``, which then need not copy and flag it again. Its
        note records the flagging settings and the source's modification time: a stash that
        no longer matches them is not used."""
        for stale in fsutil.scratch_root(self.config.scratch_dir).glob(f"{FLAGGED_PREFIX}*"):
            if time.time() - stale.stat().st_mtime > STASH_MAX_AGE_S:
                fsutil.remove(stale)
        stash = self._flagged_stash(group_id)
        with casa_table(work, readonly=False) as tb:
            if "MODEL_DATA" in tb.colnames():
                tb.removecols(["MODEL_DATA"])
        fsutil.remove(stash)
        os.rename(work, stash)
        (stash / FLAGGED_NOTE).write_text(json.dumps(
            {"flagging": asdict(self.config.flagging), "source": str(ms_path), "source_mtime_ns": _mtime_ns(ms_path),
             "flags": flags.as_dict()}))

    def _take_flagged(self, group_id: str, ms_path: Path, tmp: Path) -> tuple[Path, FlagReport] | None:
        """The solve's flagged copy of this observation, moved into ``tmp``, if it matches."""
        stash = self._flagged_stash(group_id)
        if not stash.exists():
            return None
        try:
            note = json.loads((stash / FLAGGED_NOTE).read_text())
            current = {"flagging": json.loads(json.dumps(asdict(self.config.flagging))), "source": str(ms_path),
                       "source_mtime_ns": _mtime_ns(ms_path)}
            if any(note.get(k) != v for k, v in current.items()):
                log.info("%s: the solve's flagged copy does not match (settings or source changed); flagging again",
                         group_id)
                return None
            work = tmp / ms_path.name
            os.rename(stash, work)
            (work / FLAGGED_NOTE).unlink()
            return work, FlagReport(**note["flags"])
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: the solve's flagged copy is unusable (%s); flagging again", group_id, exc)
            return None
        finally:
            fsutil.remove(stash)

    def cleanup(self) -> list[Path]:
        """Remove scratch directories of interrupted solves and applications, and partial
        publishes of solutions and calibrated Measurement Sets (crash recovery)."""
        cfg = self.config
        removed = [path for kind in ("caltables", "calibrated")
                   for path in fsutil.sweep_partials(naming.product_root(cfg.output_dir, kind))]
        return removed + fsutil.sweep_scratch(cfg.scratch_dir, "cal-*", "apply-*", "gainprobe-*", f"{FLAGGED_PREFIX}*")

