"""Gain solutions with casatasks: delay (K), bandpass (B) and complex gain (G), solved against
MODEL_DATA in that order (each with the earlier tables applied), applied into CORRECTED_DATA,
and their quality as typed records.

- :func:`solve` runs gaincal (K), bandpass (B) and gaincal (G, amplitude and phase);
- :func:`apply` runs applycal into CORRECTED_DATA (flags respected, weights calibrated);
- :class:`SolutionQuality`: per-table SNR and flagged fraction, and how the calibrated data
  match the model (flux ratio, phase scatter). Plain Python.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import fsutil
from ..exceptions import CalibrationError
from .ms_inspect import casa_table, row_chunks

TABLE_KINDS = ("K", "B", "G")


@dataclass(frozen=True)
class SolveOptions:
    refant: str | None = None
    """Reference antenna NAME; None picks the least-flagged antenna near the array's centre."""
    min_snr: float = 3.0
    """Solutions below this SNR are flagged."""
    gain_solint: str = "inf"
    """G solution interval ("inf": one per observation, the interval transferred to targets)."""
    uvrange: str = ""
    """Baselines used in the solves (CASA syntax, e.g. ">50lambda"); empty: all."""
    time_average: bool = True
    """Solve on a copy averaged to one integration per baseline (DATA and MODEL_DATA alike).
    Exact when the gains are constant over the observation, which ``solint="inf"`` assumes
    anyway: avg(g_i g_j* M) = g_i g_j* avg(M). The solves then read 1/24 of the data; sources
    off the phase centre also decorrelate, which lowers their weight in the solution. Off when
    ``gain_solint`` is shorter than the observation."""


def choose_refant(ms: Path | str) -> str:
    """Name of the antenna with the least flagged cross-correlation data, ties broken by the
    distance from the array's median position (a central antenna has short baselines to all)."""
    ms = Path(ms)
    with casa_table(ms / "ANTENNA") as tb:
        names = tb.getcol("NAME")
        pos = tb.getcol("POSITION")
    with casa_table(ms) as tb:
        a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
        good = np.zeros(len(names))
        for start, n in row_chunks(tb.nrows()):
            f = tb.getcol("FLAG", startrow=start, nrow=n)
            unflagged = (~f).sum(axis=(1, 2))
            cross = a1[start : start + n] != a2[start : start + n]
            np.add.at(good, a1[start : start + n][cross], unflagged[cross])
            np.add.at(good, a2[start : start + n][cross], unflagged[cross])
    present = np.flatnonzero(good > 0)
    if not len(present):
        raise CalibrationError(f"{ms}: every cross-correlation is flagged")
    centre = np.median(pos[present], axis=0)
    distance = np.linalg.norm(pos[present] - centre, axis=1)
    best = present[np.lexsort((distance, -np.round(good[present] / good.max(), 2)))][0]
    return str(names[best])


def solve(ms: Path | str, table_prefix: Path, options: SolveOptions = SolveOptions()) -> dict[str, Path]:
    """K, B and G tables for ``ms`` against its MODEL_DATA, as ``<prefix>.K``, ``.B``, ``.G``.

    Returns {"K": path, "B": path, "G": path, "refant": name, "timings_s": {...}}.
    """
    from casatasks import bandpass, gaincal

    ms = str(ms)
    refant = options.refant or choose_refant(ms)
    tables = {k: Path(f"{table_prefix}.{k}") for k in TABLE_KINDS}
    for p in tables.values():
        fsutil.remove(p)
    timings = {}
    common = {"vis": ms, "refant": refant, "minsnr": options.min_snr, "uvrange": options.uvrange}
    t = time.perf_counter()
    gaincal(caltable=str(tables["K"]), gaintype="K", solint="inf", **common)
    timings["delay_K"] = time.perf_counter() - t
    _require(tables["K"], "delay (K)")
    t = time.perf_counter()
    bandpass(caltable=str(tables["B"]), solint="inf", combine="scan", bandtype="B", solnorm=False,
             gaintable=[str(tables["K"])], **common)
    timings["bandpass_B"] = time.perf_counter() - t
    _require(tables["B"], "bandpass (B)")
    t = time.perf_counter()
    gaincal(caltable=str(tables["G"]), gaintype="G", calmode="ap", solint=options.gain_solint,
            gaintable=[str(tables["K"]), str(tables["B"])], **common)
    timings["gain_G"] = time.perf_counter() - t
    _require(tables["G"], "gain (G)")
    return {**tables, "refant": refant, "timings_s": timings}


def time_averaged_copy(ms: Path | str, dest: Path) -> Path:
    """``ms`` with DATA and MODEL_DATA averaged over all its integrations (flagged data left out
    of the averages), written to ``dest`` with CASA split."""
    from casatasks import split

    fsutil.remove(dest)
    split(vis=str(ms), outputvis=str(dest), datacolumn="all", timebin="1e9s", combine="scan,state",
          keepflags=True)
    if not (Path(dest) / "table.dat").exists():
        raise CalibrationError(f"time averaging {ms} produced nothing (see the CASA log)")
    return Path(dest)


def _require(table_path: Path, what: str) -> None:
    if not (Path(table_path) / "table.dat").exists():
        raise CalibrationError(f"{what} solve produced no table (see the CASA log in $CASA_LOGDIR)")
    with casa_table(table_path) as tb:
        if tb.nrows() == 0:
            raise CalibrationError(f"{what} solve produced an empty table")
        if tb.getcol("FLAG").all():
            raise CalibrationError(f"every {what} solution is flagged (SNR below the threshold?)")


def apply(ms: Path | str, tables: list[Path | str], interp: str = "nearest", data_only: bool = False) -> float:
    """applycal ``tables`` (in K, B, G order) to ``ms`` into CORRECTED_DATA, flagging data whose
    solutions are flagged and calibrating the weights; ``data_only``: CORRECTED_DATA alone,
    flags and weights untouched (a look at calibrated data that leaves the Measurement Set as it
    was for another solve). Returns the wall time (s).

    ``interp`` "nearest" carries one observation's solutions to another observation (no
    extrapolation in time)."""
    from casatasks import applycal

    validate_tables(tables)
    t = time.perf_counter()
    applycal(vis=str(ms), gaintable=[str(p) for p in tables], interp=[interp] * len(tables),
             calwt=not data_only, flagbackup=False, applymode="calonly" if data_only else "calflag")
    with casa_table(ms) as tb:
        if "CORRECTED_DATA" not in tb.colnames():
            raise CalibrationError(f"applycal wrote no CORRECTED_DATA to {ms} (see the CASA log)")
    return time.perf_counter() - t


CALIBRATED_KEYWORD = "DSA110_CALIBRATED_WITH"
"""Main-table keyword of a Measurement Set whose DATA are calibrated: the solution applied."""


def keep_calibrated_only(ms: Path | str, solution_dir: Path | str) -> None:
    """Replace DATA by CORRECTED_DATA (after :func:`apply`), as CASA's split does: each column
    has its own storage manager, so dropping DATA deletes its files (no copy), and the
    Measurement Set keeps one set of visibilities. The main table's ``DSA110_CALIBRATED_WITH``
    keyword names the solution."""
    from casacore.tables import table

    with table(str(ms), readonly=False, ack=False) as tb:
        tb.removecols(["DATA"])
        tb.renamecol("CORRECTED_DATA", "DATA")
        tb.putkeyword(CALIBRATED_KEYWORD, str(solution_dir))


def validate_tables(tables: list[Path | str]) -> None:
    """Each table opens and has the columns of a CASA calibration table, else CalibrationError
    naming the table: a corrupted table fails here, not deep inside applycal."""
    for p in tables:
        p = Path(p)
        try:
            with casa_table(p) as tb:
                cols = set(tb.colnames())
                n = tb.nrows()
                if n:
                    tb.getcol("FLAG")
                    tb.getcol("CPARAM" if "CPARAM" in cols else "FPARAM")
        except CalibrationError:
            raise
        except Exception as exc:
            raise CalibrationError(f"calibration table {p} is unreadable: {exc}") from exc
        if not {"TIME", "ANTENNA1", "FLAG"} <= cols or not ({"CPARAM", "FPARAM"} & cols):
            raise CalibrationError(f"{p} is not a CASA calibration table (columns {sorted(cols)})")
        if n == 0:
            raise CalibrationError(f"calibration table {p} has no solutions")


def solution_tables(directory: Path) -> list[Path]:
    """The K, B, G tables of a published solution directory, in application order."""
    directory = Path(directory)
    found = []
    for kind in TABLE_KINDS:
        matches = sorted(directory.glob(f"*.{kind}"))
        if not matches:
            raise CalibrationError(f"{directory} holds no {kind} table")
        found.append(matches[0])
    return found



# -- quality -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableQuality:
    """One table's solutions over the antennas with data."""

    median_snr: float | None
    """Median SNR of the unflagged solutions (None where CASA records none, as for delays)."""
    flagged_fraction: float
    """Fraction (0..1) of its solutions flagged."""


@dataclass(frozen=True)
class SolutionQuality:
    """How good a solution is: its tables, and the calibrated calibrator against its model."""

    tables: dict[str, TableQuality]
    flux_ratio: float
    """sum(w Re(C M*)) / sum(w |M|^2) over the calibrated data C and model M: 1 when the
    calibrated flux equals the model's."""
    phase_scatter_deg: float
    """Scatter (deg) of the phase of C/M, weighted by |M|."""

    def as_dict(self) -> dict:
        """The JSON form stored with the solution (products database, solution.json)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SolutionQuality:
        return cls({k: TableQuality(**v) for k, v in d["tables"].items()}, d["flux_ratio"], d["phase_scatter_deg"])


def table_quality(tables: dict[str, Path], antennas: np.ndarray) -> dict[str, TableQuality]:
    """Per table, over the ``antennas`` that have data: the median SNR of the unflagged solutions
    (None where CASA records none, as for delays) and the fraction of solutions flagged."""
    out = {}
    for kind in TABLE_KINDS:
        with casa_table(tables[kind]) as tb:
            rows = np.isin(tb.getcol("ANTENNA1"), antennas)
            snr, flag = tb.getcol("SNR")[rows], tb.getcol("FLAG")[rows]
        good = snr[~flag]
        out[kind] = TableQuality(float(np.median(good)) if good.size and good.any() else None,
                                 float(flag.mean()) if flag.size else 1.0)
    return out


def antennas_with_data(ms: Path | str) -> np.ndarray:
    """Ids of the antennas that appear in the main table."""
    with casa_table(ms) as tb:
        return np.unique(np.concatenate([tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")]))


def model_agreement(ms: Path | str) -> dict:
    """How well CORRECTED_DATA matches MODEL_DATA on the cross-correlations: the flux ratio
    sum(w Re(C M*)) / sum(w |M|^2) (1 = calibrated flux equals the model), and the phase scatter
    (deg) of C/M, weighted by |M|, over unflagged data."""
    num = den = 0.0
    phase_sum = phase_w = 0.0
    with casa_table(ms) as tb:
        for start, n in row_chunks(tb.nrows()):
            a1 = tb.getcol("ANTENNA1", startrow=start, nrow=n)
            a2 = tb.getcol("ANTENNA2", startrow=start, nrow=n)
            cross = a1 != a2
            c = tb.getcol("CORRECTED_DATA", startrow=start, nrow=n)[cross]
            m = tb.getcol("MODEL_DATA", startrow=start, nrow=n)[cross]
            ok = ~tb.getcol("FLAG", startrow=start, nrow=n)[cross] & (np.abs(m) > 0)
            w = np.broadcast_to(tb.getcol("WEIGHT", startrow=start, nrow=n)[cross][:, None, :], c.shape)[ok]
            c, m = c[ok], m[ok]
            num += float(np.sum(w * (c * np.conj(m)).real))
            den += float(np.sum(w * np.abs(m) ** 2))
            ang = np.angle(c / m)
            phase_sum += float(np.sum(np.abs(m) * ang**2))
            phase_w += float(np.sum(np.abs(m)))
    if den == 0:
        raise CalibrationError(f"{ms}: no unflagged data with a model to compare")
    return {"flux_ratio": num / den, "phase_scatter_deg": float(np.degrees(np.sqrt(phase_sum / phase_w)))}



def solution_quality(ms: Path | str, tables: dict[str, Path]) -> SolutionQuality:
    """The quality of ``tables`` applied to ``ms`` (CORRECTED_DATA written) against its model."""
    agreement = model_agreement(ms)
    return SolutionQuality(table_quality(tables, antennas_with_data(ms)), agreement["flux_ratio"],
                           agreement["phase_scatter_deg"])
