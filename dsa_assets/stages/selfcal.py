"""Self-calibration: the observation's own CLEAN model refines its antenna gains.

Rounds of CASA ``gaincal`` against the model WSClean wrote into MODEL_DATA (phase-only per
integration first, then amplitude and phase over the observation), each applied and followed
by a new image. A round is kept only when it improves what it is meant to improve: the
residual rms falls by at least ``min_improvement`` and the dynamic range rises; otherwise the
previous image stands and self-calibration stops. The rounds run on a scratch copy: the
calibrated Measurement Set, a published product, is never changed. Plain Python.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROUNDS = {
    "phase": (("p", "int"),),
    "phase+amplitude": (("p", "int"), ("ap", "inf")),
}
"""Self-calibration choices: gaincal (calmode, solint) per round."""


@dataclass(frozen=True)
class SelfCalRound:
    """One round: gaincal's mode and interval, the image figures before and after (rms in
    Jy/beam, dynamic range = peak / rms), and whether it was kept."""

    mode: str
    solint: str
    rms_before_jy: float
    rms_after_jy: float
    dynamic_range_before: float
    dynamic_range_after: float
    accepted: bool

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def improved(before: dict, after: dict, min_improvement: float) -> bool:
    """A round helped: residual rms down by ``min_improvement`` (fraction) and dynamic range up."""
    return (after["rms_jy"] <= (1.0 - min_improvement) * before["rms_jy"]
            and after["dynamic_range"] > before["dynamic_range"])


def self_calibrate(ms_path: Path, column: str, scratch: Path, image: Callable[[Path, str, str], dict], choice: str,
                   min_improvement: float = 0.02, min_snr: float = 3.0) -> tuple[str, list[SelfCalRound]]:
    """Self-calibrate a scratch copy of ``ms_path`` whose calibrated visibilities are in
    ``column``. ``image(ms, data_column, name)`` images into ``scratch/name`` (WSClean, writing
    its model to MODEL_DATA) and returns the image's metrics (``rms_jy``, ``dynamic_range``).
    Returns the name of the image to keep and the rounds."""
    from casacore.tables import table
    from casatasks import applycal, gaincal

    from .gain_solutions import choose_refant

    work = scratch / "selfcal.ms"
    shutil.copytree(ms_path, work)
    if column != "DATA":  # gaincal solves on DATA: make it the calibrated visibilities
        with table(str(work), readonly=False, ack=False) as tb:
            tb.removecols(["DATA"])
            tb.renamecol(column, "DATA")
    best_name, best = "selfcal0", image(work, "DATA", "selfcal0")
    refant = choose_refant(work)
    tables: list[str] = []
    rounds = []
    for k, (mode, solint) in enumerate(ROUNDS[choice], start=1):
        table = str(scratch / f"selfcal{k}.G")
        gaincal(vis=str(work), caltable=table, gaintype="G", calmode=mode, solint=solint, refant=refant,
                minsnr=min_snr, gaintable=tables)
        if not Path(table).exists():
            log.warning("self-calibration round %d (%s) found no solutions; stopping", k, mode)
            break
        applycal(vis=str(work), gaintable=[*tables, table], interp=["nearest"] * (len(tables) + 1), calwt=False,
                 flagbackup=False, applymode="calonly")
        metrics = image(work, "CORRECTED_DATA", f"selfcal{k}")
        keep = improved(best, metrics, min_improvement)
        rounds.append(SelfCalRound(mode, solint, best["rms_jy"], metrics["rms_jy"], best["dynamic_range"],
                                   metrics["dynamic_range"], keep))
        log.info("self-calibration round %d (%s, %s): rms %.3g -> %.3g Jy/beam, dynamic range %.0f -> %.0f: %s",
                 k, mode, solint, best["rms_jy"], metrics["rms_jy"], best["dynamic_range"], metrics["dynamic_range"],
                 "kept" if keep else "not kept")
        if not keep:
            break
        best_name, best = f"selfcal{k}", metrics
        tables.append(table)
    shutil.rmtree(work, ignore_errors=True)
    return best_name, rounds
