"""Calibration: a sky model, delay (K) / bandpass (B) / complex gain (G) solutions with
casatasks, and their application.

The functions take any Measurement Set (one spectral window, J2000/ICRS field directions) and a
list of point sources, so they serve other arrays' data as well as DSA-110's:

- :func:`predict_model` writes MODEL_DATA = sum_k S_k(nu) A_k(t, nu) exp(+2 pi i (u l + v m +
  w (n - 1)) nu / c) with the MS's UVW and the FIELD's PHASE_DIR (CASA's convention, see
  ``docs/conventions.md``). A_k is the primary-beam power response at the source: an Airy
  pattern of the ANTENNA table's dish diameter centred on the POINTING direction at each time,
  so a calibrator drifting through a transit array's fixed beam is modelled as it is observed.
- :func:`solve` runs gaincal (K), bandpass (B) and gaincal (G, amplitude and phase) in that
  order, each with the earlier tables applied.
- :func:`apply` runs applycal into CORRECTED_DATA (flags respected, weights calibrated).
- :func:`antenna_gains` reads back the total gain K.B.G per antenna, channel and polarisation
  through CASA's own applycal (no re-implementation of CASA's table conventions).

:class:`CalibrationStage` wraps these for one observation: scratch copy, flagging, model,
solutions, quality figures, then an atomic publish. Plain Python: no Dagster import.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import fsutil, naming
from ..exceptions import CalibrationError
from ..geometry import SPEED_OF_LIGHT_M_S, airy_power_beam
from .flagging import FlaggingConfig, FlaggingStage, FlagReport
from .ms_inspect import flag_fraction, pointing_directions, radec_unit, row_chunks

log = logging.getLogger(__name__)

TABLE_KINDS = ("K", "B", "G")


@dataclass(frozen=True)
class SourceModel:
    """One component of a calibrator model: ICRS position (deg), flux density (Jy) at
    ``ref_freq_hz`` and spectral index (S ~ nu^index)."""

    name: str
    ra_deg: float
    dec_deg: float
    flux_jy: float
    ref_freq_hz: float = 1.4e9
    spectral_index: float = 0.0

    def flux_at(self, freq_hz) -> np.ndarray:
        return self.flux_jy * (np.asarray(freq_hz, dtype=float) / self.ref_freq_hz) ** self.spectral_index

    @classmethod
    def from_catalogue(cls, source) -> SourceModel:
        """From a :class:`dsa_assets.catalogue.CatalogueSource` (flux at 1.4 GHz)."""
        return cls(source.name, source.ra_deg, source.dec_deg, source.flux_jy, 1.4e9, source.spectral_index)

    @classmethod
    def from_calibrator(cls, cal) -> SourceModel:
        """From a :class:`dsa_assets.calibrators.Calibrator`."""
        from ..calibrators import REFERENCE_FREQ_HZ

        return cls(cal.label, cal.ra_deg, cal.dec_deg, cal.flux_jy, REFERENCE_FREQ_HZ, cal.spectral_index)


def calibrator_model(calibrator: SourceModel, field_sources=(), centre_ra_deg: float = 0.0,
                     centre_dec_deg: float = 0.0, radius_deg: float = 2.0, min_flux_jy: float = 0.0,
                     ) -> list[SourceModel]:
    """The calibrator plus the catalogue's ``field_sources`` (:mod:`dsa_assets.catalogue`) within
    ``radius_deg`` of the beam centre and above ``min_flux_jy``; catalogue entries within 1 arcmin
    of the calibrator are the calibrator itself and are dropped. Flux the model lacks biases the
    gain amplitudes by about its fraction of the calibrator's apparent flux."""
    from .. import catalogue

    near = catalogue.within(list(field_sources), centre_ra_deg, centre_dec_deg, radius_deg)
    others = [s for s, d in zip(near, catalogue.separation_deg(near, calibrator.ra_deg, calibrator.dec_deg))
              if d > 1 / 60 and s.flux_jy >= min_flux_jy]
    return [calibrator] + [SourceModel.from_catalogue(s) for s in others]


# -- reading a Measurement Set ----------------------------------------------------------------


def _table(path, readonly=True):
    from casacore.tables import table

    return table(str(path), readonly=readonly, ack=False)


def dish_diameter_m(ms: Path | str) -> float:
    with _table(Path(ms) / "ANTENNA") as tb:
        return float(np.median(tb.getcol("DISH_DIAMETER")))


def channel_frequencies(ms: Path | str) -> np.ndarray:
    with _table(Path(ms) / "SPECTRAL_WINDOW") as tb:
        if tb.nrows() != 1:
            raise CalibrationError(f"{ms}: {tb.nrows()} spectral windows; one is supported")
        return tb.getcol("CHAN_FREQ")[0]


# -- model -------------------------------------------------------------------------------------


def predict_model(ms: Path | str, sources: list[SourceModel], primary_beam: bool = True) -> None:
    """Write MODEL_DATA of ``ms`` (created if absent) for ``sources`` (see module docstring).

    With ``primary_beam`` off, the flux densities are taken as apparent (already attenuated).
    """
    from casacore.tables import makearrcoldesc, maketabdesc

    ms = Path(ms)
    freqs = channel_frequencies(ms)
    with _table(ms / "FIELD") as tb:
        phase_dirs = tb.getcol("PHASE_DIR")[:, 0, :]  # (nfield, 2)
    diameter = dish_diameter_m(ms)
    src_unit = radec_unit(np.radians([s.ra_deg for s in sources]), np.radians([s.dec_deg for s in sources]))
    fluxes = np.array([s.flux_at(freqs) for s in sources])  # (nsrc, nchan)
    with _table(ms, readonly=False) as tb:
        n_pol = tb.getcell("DATA", 0).shape[1]
        if "MODEL_DATA" not in tb.colnames():
            dm = dict(tb.getdminfo("DATA"), NAME="TiledModelData")
            tb.addcols(maketabdesc(makearrcoldesc("MODEL_DATA", 0j, valuetype="complex", ndim=2,
                                                  shape=[len(freqs), n_pol], options=4)), dm)
        all_times = tb.getcol("TIME")
        unique_t, t_index = np.unique(all_times, return_inverse=True)
        attenuation = np.ones((len(sources), len(unique_t), len(freqs)))
        if primary_beam:
            pointing = pointing_directions(ms, unique_t)  # (nt, 3)
            cos = np.clip(src_unit @ pointing.T, -1.0, 1.0)  # (nsrc, nt)
            attenuation = airy_power_beam(cos[..., None], freqs, diameter)
        for start, n in row_chunks(tb.nrows()):
            uvw = tb.getcol("UVW", startrow=start, nrow=n)
            field_id = tb.getcol("FIELD_ID", startrow=start, nrow=n)
            ti = t_index[start : start + n]
            model = np.zeros((n, len(freqs)), dtype=np.complex128)
            for f in np.unique(field_id):
                rows = field_id == f
                ra0, dec0 = phase_dirs[f]
                for k, s in enumerate(sources):
                    l, m, nn = _lmn(np.radians(s.ra_deg), np.radians(s.dec_deg), ra0, dec0)
                    delay = uvw[rows] @ np.array([l, m, nn - 1.0])  # metres
                    phase = np.exp(2j * np.pi * delay[:, None] * freqs[None, :] / SPEED_OF_LIGHT_M_S)
                    model[rows] += fluxes[k][None, :] * attenuation[k][ti[rows]] * phase
            tb.putcol("MODEL_DATA", np.repeat(model[:, :, None], n_pol, axis=2).astype(np.complex64),
                      startrow=start, nrow=n)


def _lmn(ra, dec, ra0, dec0) -> tuple[float, float, float]:
    dra = ra - ra0
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    n = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(dra)
    return float(l), float(m), float(n)


def write_component_list(path: Path, sources: list[SourceModel]) -> Path:
    """The model as a CASA component list (point components with spectral index), for the
    record and for users who predict with ``ft``."""
    import casatools

    cl = casatools.componentlist()
    try:
        for s in sources:
            cl.addcomponent(
                flux=[s.flux_jy, 0.0, 0.0, 0.0], fluxunit="Jy", polarization="Stokes",
                dir=f"ICRS {s.ra_deg}deg {s.dec_deg}deg", shape="point",
                freq=f"{s.ref_freq_hz}Hz", spectrumtype="spectral index", index=s.spectral_index,
                label=s.name,
            )
        fsutil.remove(path)
        cl.rename(str(path))
    finally:
        cl.close()
        cl.done()
    return path


# -- solving and applying ----------------------------------------------------------------------


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
    with _table(ms / "ANTENNA") as tb:
        names = tb.getcol("NAME")
        pos = tb.getcol("POSITION")
    with _table(ms) as tb:
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
    with _table(table_path) as tb:
        if tb.nrows() == 0:
            raise CalibrationError(f"{what} solve produced an empty table")
        if tb.getcol("FLAG").all():
            raise CalibrationError(f"every {what} solution is flagged (SNR below the threshold?)")


def apply(ms: Path | str, tables: list[Path | str], interp: str = "nearest") -> float:
    """applycal ``tables`` (in K, B, G order) to ``ms`` into CORRECTED_DATA, flagging data whose
    solutions are flagged and calibrating the weights. Returns the wall time (s).

    ``interp`` "nearest" carries one observation's solutions to another observation (no
    extrapolation in time)."""
    from casatasks import applycal

    validate_tables(tables)
    t = time.perf_counter()
    applycal(vis=str(ms), gaintable=[str(p) for p in tables], interp=[interp] * len(tables),
             calwt=True, flagbackup=False, applymode="calflag")
    with _table(ms) as tb:
        if "CORRECTED_DATA" not in tb.colnames():
            raise CalibrationError(f"applycal wrote no CORRECTED_DATA to {ms} (see the CASA log)")
    return time.perf_counter() - t


def validate_tables(tables: list[Path | str]) -> None:
    """Each table opens and has the columns of a CASA calibration table, else CalibrationError
    naming the table: a corrupted table fails here, not deep inside applycal."""
    for p in tables:
        p = Path(p)
        try:
            with _table(p) as tb:
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


# -- quality -----------------------------------------------------------------------------------


def table_quality(tables: dict[str, Path], antennas: np.ndarray) -> dict:
    """Per table, over the ``antennas`` that have data: the median SNR of the unflagged solutions
    (None where CASA records none, as for delays) and the fraction of solutions flagged."""
    out = {}
    for kind in TABLE_KINDS:
        with _table(tables[kind]) as tb:
            rows = np.isin(tb.getcol("ANTENNA1"), antennas)
            snr, flag = tb.getcol("SNR")[rows], tb.getcol("FLAG")[rows]
        good = snr[~flag]
        out[kind] = {"median_snr": float(np.median(good)) if good.size and good.any() else None,
                     "flagged_fraction": float(flag.mean()) if flag.size else 1.0}
    return out


def antennas_with_data(ms: Path | str) -> np.ndarray:
    """Ids of the antennas that appear in the main table."""
    with _table(ms) as tb:
        return np.unique(np.concatenate([tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")]))


def model_agreement(ms: Path | str) -> dict:
    """How well CORRECTED_DATA matches MODEL_DATA on the cross-correlations: the flux ratio
    sum(w Re(C M*)) / sum(w |M|^2) (1 = calibrated flux equals the model), and the phase scatter
    (deg) of C/M, weighted by |M|, over unflagged data."""
    num = den = 0.0
    phase_sum = phase_w = 0.0
    with _table(ms) as tb:
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


def antenna_gains(ms: Path | str, tables: list[Path | str], scratch_dir: Path | None = None) -> dict:
    """The total antenna gains K.B.G that ``tables`` apply to ``ms``, read through CASA's applycal
    on a probe copy whose data are all 1: CORRECTED(i, j) = 1 / (G_i G_j*).

    Returns {"antennas": ids, "gains": complex (Nant, Nchan, Npol) with each polarisation's phase
    referred to the reference antenna (the table's), "refant": id}; antennas without solutions are
    NaN. Times are averaged (the tables hold one solution per observation).
    """
    with fsutil.scratch_directory(scratch_dir, "gainprobe-") as tmp:
        probe = tmp / "probe.ms"
        shutil.copytree(ms, probe)
        with _table(probe, readonly=False) as tb:
            for start, n in row_chunks(tb.nrows()):
                d = tb.getcol("DATA", startrow=start, nrow=n)
                tb.putcol("DATA", np.ones_like(d), startrow=start, nrow=n)
                tb.putcol("FLAG", np.zeros(d.shape, bool), startrow=start, nrow=n)
        apply(probe, tables)
        with _table(Path(tables[-1])) as tb:
            refant = int(np.bincount(tb.getcol("ANTENNA2")).argmax())
        with _table(probe) as tb:
            a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
            corr = tb.getcol("CORRECTED_DATA")
            flag = tb.getcol("FLAG")
    corr = np.where(flag, np.nan, corr)
    ants = np.unique(np.concatenate([a1, a2]))
    gains = np.full((ants.max() + 1,) + corr.shape[1:], np.nan + 0j)
    for ant in ants:
        auto = (a1 == ant) & (a2 == ant)
        amp = 1.0 / np.sqrt(np.nanmean(np.abs(corr[auto]), axis=0)) if auto.any() else np.nan
        # 1 / (G_ref G_j*) on (ref, j), 1 / (G_j G_ref*) on (j, ref); G_ref is real
        if ant == refant:
            phase = np.ones(corr.shape[1:])
        else:
            as2 = (a1 == refant) & (a2 == ant)
            as1 = (a1 == ant) & (a2 == refant)
            p = np.concatenate([np.conj(1.0 / corr[as2]), 1.0 / corr[as1]])
            phase = np.exp(1j * np.angle(np.nanmean(p, axis=0))) if len(p) else np.nan
        gains[ant] = amp * phase
    return {"antennas": ants, "gains": gains, "refant": refant}


def gain_errors(measured: dict, expected: np.ndarray) -> dict:
    """Compare gains from :func:`antenna_gains` with ``expected`` gains (Nants, Nchan, Npol, in
    CASA's convention) on the measured antennas, after referring both to the reference
    antenna's phase. Returns the worst and median amplitude error (fraction) and phase error
    (deg) over antennas, channels and polarisations."""
    ants, ref = measured["antennas"], measured["refant"]
    exp = expected / (expected[ref] / np.abs(expected[ref]))[None]
    ratio = measured["gains"][ants] / exp[ants]
    ok = np.isfinite(ratio)
    amp = np.abs(np.abs(ratio[ok]) - 1.0)
    phase = np.abs(np.degrees(np.angle(ratio[ok])))
    return {"amplitude_error_max": float(amp.max()), "amplitude_error_median": float(np.median(amp)),
            "phase_error_max_deg": float(phase.max()), "phase_error_median_deg": float(np.median(phase)),
            "antennas_compared": int(len(ants)), "solutions_missing": int((~ok).sum())}


# -- the stage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationConfig:
    output_dir: Path
    scratch_dir: Path | None = None
    flagging: FlaggingConfig = FlaggingConfig()
    solve: SolveOptions = SolveOptions()
    primary_beam: bool = True
    """Attenuate the model by the primary beam at each source (see predict_model)."""

    def __post_init__(self):
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.scratch_dir is not None:
            object.__setattr__(self, "scratch_dir", Path(self.scratch_dir))


@dataclass
class SolutionResult:
    """A published calibration solution. Times in seconds."""

    group_id: str
    directory: Path
    tables: dict[str, Path]
    refant: str
    sources: list[SourceModel]
    quality: dict
    flags: dict
    timings_s: dict = field(default_factory=dict)

    def table_list(self) -> list[Path]:
        return [self.tables[k] for k in TABLE_KINDS]


@dataclass
class ApplyResult:
    """A published calibrated Measurement Set."""

    group_id: str
    ms_path: Path
    solution_dir: Path
    flags: dict
    timings_s: dict = field(default_factory=dict)


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

    def execute_solve(self, group_id: str, ms_path: Path | str, sources: list[SourceModel]) -> SolutionResult:
        """Flag a scratch copy of ``ms_path``, predict ``sources``, solve K/B/G, measure the
        calibrated calibrator against its model, and publish ``<output>/caltables/<date>/<id>/``."""
        self.validate(ms_path, sources)
        cfg = self.config
        dest = naming.caltable_dir(cfg.output_dir, group_id)
        with fsutil.scratch_directory(cfg.scratch_dir, f"cal-{group_id}-") as tmp:
            work, copy_s = self._scratch_copy(Path(ms_path), tmp)
            timings = {"copy": copy_s}
            flags = FlaggingStage(cfg.flagging).execute(work)
            timings["flagging"] = sum(flags.timings_s.values())
            t = time.perf_counter()
            predict_model(work, sources, cfg.primary_beam)
            timings["model"] = time.perf_counter() - t
            out = tmp / "solution"
            out.mkdir()
            solve_on = work
            if cfg.solve.time_average and cfg.solve.gain_solint == "inf":
                t = time.perf_counter()
                solve_on = time_averaged_copy(work, tmp / "averaged.ms")
                timings["time_average"] = time.perf_counter() - t
            solved = solve(solve_on, out / group_id, cfg.solve)
            timings.update(solved.pop("timings_s"))
            tables = {k: solved[k] for k in TABLE_KINDS}
            # quality figures on the data the solutions came from
            timings["applycal"] = apply(solve_on, [tables[k] for k in TABLE_KINDS])
            quality = {"tables": table_quality(tables, antennas_with_data(solve_on)), **model_agreement(solve_on)}
            write_component_list(out / "model.cl", sources)
            (out / "solution.json").write_text(json.dumps({
                "group_id": group_id, "refant": solved["refant"], "sources": [asdict(s) for s in sources],
                "quality": quality, "flags": flags.as_dict(), "timings_s": timings,
            }, indent=1))
            fsutil.publish(out, dest)
        published = {k: dest / Path(p).name for k, p in tables.items()}
        return SolutionResult(group_id, dest, published, solved["refant"], sources, quality, flags.as_dict(), timings)

    def execute_apply(self, group_id: str, ms_path: Path | str, solution: SolutionResult | Path) -> ApplyResult:
        """Flag a scratch copy of ``ms_path``, apply the solution's tables, and publish it as
        ``<output>/calibrated/<date>/<id>.ms`` (calibrated data in CORRECTED_DATA)."""
        self.validate(ms_path)
        cfg = self.config
        solution_dir = solution.directory if isinstance(solution, SolutionResult) else Path(solution)
        tables = solution_tables(solution_dir)
        validate_tables(tables)
        dest = naming.calibrated_ms_path(cfg.output_dir, group_id)
        with fsutil.scratch_directory(cfg.scratch_dir, f"apply-{group_id}-") as tmp:
            work, copy_s = self._scratch_copy(Path(ms_path), tmp)
            timings = {"copy": copy_s}
            flags: FlagReport = FlaggingStage(cfg.flagging).execute(work)
            timings["flagging"] = sum(flags.timings_s.values())
            timings["applycal"] = apply(work, tables)
            with _table(work) as tb:
                flagged = flag_fraction(tb)
            report = {**flags.as_dict(), "fraction_after_applycal": round(flagged, 5)}
            fsutil.publish(work, dest)
        return ApplyResult(group_id, dest, solution_dir, report, timings)

    def cleanup(self) -> list[Path]:
        """Remove scratch directories of interrupted solves and applications, and partial
        publishes of solutions and calibrated Measurement Sets (crash recovery)."""
        cfg = self.config
        removed = fsutil.sweep_partials(cfg.output_dir / "caltables") + fsutil.sweep_partials(cfg.output_dir / "calibrated")
        return removed + fsutil.sweep_scratch(cfg.scratch_dir, "cal-*", "apply-*", "gainprobe-*")


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
