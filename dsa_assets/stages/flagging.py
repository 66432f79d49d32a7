"""Flagging: zeros, dead antennas and RFI in a Measurement Set's FLAG column.

Works on any Measurement Set (one spectral window, any array). Three steps:

1. zeros: visibilities exactly 0 (missing subbands, dropped packets) are flagged;
2. dead antennas: an antenna whose median autocorrelation power is more than
   ``dead_antenna_factor`` times above or below the median over antennas (or that has no
   autocorrelations at all while the others do) is flagged on every baseline;
3. RFI: AOFlagger run on each baseline's time-frequency plane with the packaged DSA-110
   strategy (default), or CASA ``flagdata`` tfcrop / rflag. ``bench/flagging.py`` measures them
   on simulated RFI: AOFlagger's own default strategy, built for long observations, smooths over
   minutes of time and flags most of a bright drifting sky.

Flags are only ever added. Plain Python: no Dagster import.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..exceptions import FlaggingError
from .ms_inspect import flag_fraction, row_chunks

log = logging.getLogger(__name__)

RFI_METHODS = ("aoflagger", "tfcrop", "rflag", "none")
CHANNEL_BLOCK = 256
"""Channels read at a time, so memory stays ~(rows x 256 x pols x 8 bytes) on large sets."""


@dataclass(frozen=True)
class FlaggingConfig:
    rfi: str = "aoflagger"
    """One of ``RFI_METHODS``: "aoflagger", "tfcrop" or "rflag" (CASA flagdata), or "none"."""
    aoflagger_strategy: str = "dsa110"
    """"dsa110" (short kernels for 5-minute drift scans) or "generic" (AOFlagger's default)."""
    dead_antenna_factor: float = 5.0
    """Flag an antenna whose autocorrelation power is this factor above or below the median."""
    workers: int = 0
    """Processes AOFlagger runs in (0: the cores this process may use)."""

    def __post_init__(self):
        if self.rfi not in RFI_METHODS:
            raise ValueError(f"rfi must be one of {RFI_METHODS}, got {self.rfi!r}")


@dataclass(frozen=True)
class FlagReport:
    """Flagged fractions (0..1) of all visibilities before and after, and what each step found."""

    fraction_before: float
    fraction_after: float
    zeros_fraction: float
    dead_antennas: list[int]
    rfi_fraction: float
    timings_s: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class FlaggingStage:
    """Flags zeros, dead antennas and RFI in place."""

    name = "flagging"

    def __init__(self, config: FlaggingConfig = FlaggingConfig()):
        self.config = config

    def validate(self, ms_path: Path | str) -> None:
        from casacore.tables import table

        ms = Path(ms_path)
        if not (ms / "table.dat").exists():
            raise FlaggingError(f"{ms} is not a Measurement Set")
        with table(str(ms), ack=False) as tb:
            missing = {"DATA", "FLAG", "ANTENNA1", "ANTENNA2"} - set(tb.colnames())
        if missing:
            raise FlaggingError(f"{ms} lacks column(s) {sorted(missing)}")

    def execute(self, ms_path: Path | str) -> FlagReport:
        from casacore.tables import table

        self.validate(ms_path)
        ms = str(ms_path)
        timings = {}
        t0 = time.perf_counter()
        with table(ms, readonly=False, ack=False) as tb:
            a1, a2 = tb.getcol("ANTENNA1"), tb.getcol("ANTENNA2")
            before = flag_fraction(tb)
            zeros = _flag_zeros(tb)
            timings["zeros"] = time.perf_counter() - t0
            t = time.perf_counter()
            dead = dead_antennas(tb, a1, a2, self.config.dead_antenna_factor)
            if dead:
                _flag_rows(tb, np.isin(a1, dead) | np.isin(a2, dead))
                log.warning("flagged dead antennas %s in %s", dead, ms)
            timings["dead_antennas"] = time.perf_counter() - t
            mid = flag_fraction(tb)
            t = time.perf_counter()
            if self.config.rfi == "aoflagger":
                flag_rfi_aoflagger(tb, a1, a2, self.config.aoflagger_strategy, self.config.workers)
        if self.config.rfi in ("tfcrop", "rflag"):
            flag_rfi_casa(ms, self.config.rfi)
        timings["rfi"] = time.perf_counter() - t
        with table(ms, ack=False) as tb:
            after = flag_fraction(tb)
        return FlagReport(before, after, zeros, dead, after - mid, timings)

    def cleanup(self, ms_path: Path | str) -> None:
        """Nothing to remove: flags live in the Measurement Set they were written to."""


def _flag_zeros(tb) -> float:
    """Flag visibilities that are exactly zero; returns their fraction."""
    n_zero = total = 0
    for start, n in row_chunks(tb.nrows()):
        data = tb.getcol("DATA", startrow=start, nrow=n)
        zero = data == 0
        total += zero.size
        if zero.any():
            n_zero += int(zero.sum())
            flags = tb.getcol("FLAG", startrow=start, nrow=n)
            tb.putcol("FLAG", flags | zero, startrow=start, nrow=n)
    return n_zero / total if total else 0.0


def _flag_rows(tb, rows: np.ndarray) -> None:
    for start, n in row_chunks(tb.nrows()):
        sel = rows[start : start + n]
        if sel.any():
            flags = tb.getcol("FLAG", startrow=start, nrow=n)
            flags[sel] = True
            tb.putcol("FLAG", flags, startrow=start, nrow=n)


def dead_antennas(tb, a1: np.ndarray, a2: np.ndarray, factor: float) -> list[int]:
    """Antenna ids whose median autocorrelation power is off the array median by more than
    ``factor`` (either way), or missing/zero while other antennas have power."""
    autos = np.flatnonzero(a1 == a2)
    if len(autos) == 0:
        return []
    present = np.unique(np.concatenate([a1, a2]))
    power = {}
    for ant in present:
        rows = autos[a1[autos] == ant]
        if len(rows) == 0:
            power[int(ant)] = 0.0
            continue
        values = np.concatenate([np.abs(tb.getcell("DATA", int(r))).ravel() for r in rows])
        flags = np.concatenate([tb.getcell("FLAG", int(r)).ravel() for r in rows])
        good = values[~flags & (values > 0)]
        power[int(ant)] = float(np.median(good)) if good.size else 0.0
    positive = [p for p in power.values() if p > 0]
    if not positive:
        return []
    median = float(np.median(positive))
    return sorted(a for a, p in power.items() if p <= 0 or p > factor * median or p < median / factor)


def strategy_file(name: str) -> Path:
    """Path of an AOFlagger strategy: "dsa110" (packaged, ``data/aoflagger-dsa110.lua``) or
    "generic" (AOFlagger's default)."""
    import aoflagger

    if name == "generic":
        return Path(aoflagger.AOFlagger().find_strategy_file(aoflagger.TelescopeId.Generic))
    return Path(str(resources.files("dsa_assets").joinpath("data", f"aoflagger-{name}.lua")))


PARALLEL_MIN_SAMPLES = 10_000_000
"""Below this many cross-correlation samples per polarisation, starting worker processes costs
more than it saves."""


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def flag_rfi_aoflagger(tb, a1: np.ndarray, a2: np.ndarray, strategy_name: str = "dsa110", workers: int = 0,
                       min_parallel_samples: int = PARALLEL_MIN_SAMPLES) -> None:
    """An AOFlagger strategy on each cross-correlation's (channel x time) planes, all
    polarisations together, in blocks of ``CHANNEL_BLOCK`` channels. The baselines are shared
    among ``workers`` processes (0: :func:`usable_cores`) when the data have at least
    ``min_parallel_samples`` samples per polarisation: AOFlagger's Python binding holds the
    interpreter lock, so threads would take turns."""
    times = tb.getcol("TIME")
    _, t_index = np.unique(times, return_inverse=True)
    n_times = int(t_index.max()) + 1
    cross = np.flatnonzero(a1 != a2)
    baselines = {}
    for r in cross:
        baselines.setdefault((int(a1[r]), int(a2[r])), []).append(r)
    n_chan, n_pol = tb.getcell("DATA", 0).shape
    if n_times < 3:
        log.info("AOFlagger skipped: %d integration(s) are too few for a time-frequency fit", n_times)
        return
    workers = workers or usable_cores()
    if workers > 1 and len(cross) * n_chan < min_parallel_samples:
        workers = 1
    rows_of = [np.asarray(rows) for rows in baselines.values()]
    with _AOFlaggerPool(strategy_name, workers) as pool:
        pending = None  # the block the workers have, finished after the next block is read
        for c0 in range(0, n_chan, CHANNEL_BLOCK):
            nc = min(CHANNEL_BLOCK, n_chan - c0)
            blc, trc = [c0, 0], [c0 + nc - 1, n_pol - 1]
            data = tb.getcolslice("DATA", blc, trc)
            flags = tb.getcolslice("FLAG", blc, trc)
            todo = [rows for rows in rows_of if not flags[rows].all()]
            block = (blc, trc, flags, todo, pool.submit(data, [t_index[rows] for rows in todo], todo, n_times))
            if pending:
                _write_flags(tb, *pending, t_index)
            pending = block
        if pending:
            _write_flags(tb, *pending, t_index)


def _write_flags(tb, blc, trc, flags: np.ndarray, todo: list, job, t_index: np.ndarray) -> None:
    """Add one block's AOFlagger flags (``job``'s result, per baseline of ``todo``) to FLAG."""
    for rows, found in zip(todo, job.result()):
        flags[rows] |= found[t_index[rows]][:, :, None]
    tb.putcolslice("FLAG", flags, blc, trc)


def _baseline_flags(strategy, flagger, plane_rows: np.ndarray, times: np.ndarray, n_times: int) -> np.ndarray:
    """AOFlagger on one baseline: ``plane_rows`` (rows, channels, pols) at integration indices
    ``times``; returns the flags (n_times, channels)."""
    _, nc, n_pol = plane_rows.shape
    plane = np.zeros((n_times, nc, n_pol), dtype=np.complex64)
    plane[times] = plane_rows
    images = flagger.make_image_set(n_times, nc, 2 * n_pol)
    for p in range(n_pol):
        images.set_image_buffer(2 * p, np.ascontiguousarray(plane[:, :, p].real.T, dtype=np.float32))
        images.set_image_buffer(2 * p + 1, np.ascontiguousarray(plane[:, :, p].imag.T, dtype=np.float32))
    return strategy.run(images).get_buffer().T.astype(bool)


def _load_strategy(strategy_name: str) -> tuple:
    import aoflagger

    flagger = aoflagger.AOFlagger()
    return flagger, flagger.load_strategy_file(str(strategy_file(strategy_name)))


_WORKER: dict = {}
"""A worker process's AOFlagger and strategy, loaded once when it starts."""


def _worker_start(strategy_name: str) -> None:
    _WORKER["flagger"], _WORKER["strategy"] = _load_strategy(strategy_name)


def _worker_flags(shm_name: str, shape: tuple, dtype: str, row_sets: list, time_sets: list, n_times: int) -> list:
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=shm_name)
    data = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)
    try:
        return [_baseline_flags(_WORKER["strategy"], _WORKER["flagger"], data[rows], times, n_times)
                for rows, times in zip(row_sets, time_sets)]
    finally:
        del data  # the view must go before the mapping closes
        shm.close()


class _AOFlaggerPool:
    """AOFlagger in this process (one worker) or in ``workers`` forked processes that read each
    channel block from shared memory. Forked as the conversion's reader is: a spawned process
    would run the caller's script again (one without a ``__main__`` guard would redo its work).
    A daemonic process (a Celery prefork worker) may not start children: it flags alone."""

    def __init__(self, strategy_name: str, workers: int):
        self.strategy_name, self.workers = strategy_name, workers
        self.executor = None
        self.flagger = self.strategy = None

    def __enter__(self):
        import multiprocessing

        if self.workers > 1 and not multiprocessing.current_process().daemon:
            from concurrent.futures import ProcessPoolExecutor

            self.executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"),
                                                initializer=_worker_start, initargs=(self.strategy_name,))
        return self

    def __exit__(self, *exc):
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)

    def submit(self, data: np.ndarray, time_sets: list, row_sets: list, n_times: int) -> _Job:
        """Start flagging each baseline (its rows of ``data``, its integration indices); the
        job's ``result()`` is the flags (n_times, channels) of each. With workers, the caller
        reads the next block meanwhile."""
        if self.executor is None:
            return _Job(done=self._serial(data, time_sets, row_sets, n_times))
        from concurrent.futures.process import BrokenProcessPool
        from multiprocessing import shared_memory

        shm = shared_memory.SharedMemory(create=True, size=max(data.nbytes, 1))
        np.ndarray(data.shape, dtype=data.dtype, buffer=shm.buf)[...] = data
        n_chunks = 4 * self.workers  # several per worker: even load
        bounds = np.linspace(0, len(row_sets), n_chunks + 1).astype(int)
        job = _Job(shm=shm, retry=lambda: self._serial(data, time_sets, row_sets, n_times))
        try:
            job.futures = [self.executor.submit(_worker_flags, shm.name, data.shape, data.dtype.str,
                                                row_sets[a:b], time_sets[a:b], n_times)
                           for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        except BrokenProcessPool:
            self.executor.shutdown(cancel_futures=True)
            self.executor = None  # the rest in this process
            job.futures = []
            job.result()  # the retry, and the shared memory released
        return job

    def _serial(self, data, time_sets, row_sets, n_times) -> list[np.ndarray]:
        if self.strategy is None:
            self.flagger, self.strategy = _load_strategy(self.strategy_name)
        return [_baseline_flags(self.strategy, self.flagger, data[rows], times, n_times)
                for rows, times in zip(row_sets, time_sets)]


class _Job:
    """One block's flags: computed already, or coming from the workers. Workers that die leave
    the block to this process, with a warning, not a failed flagging."""

    def __init__(self, done=None, futures=(), shm=None, retry=None):
        self.done, self.futures, self.shm, self.retry = done, futures, shm, retry

    def result(self) -> list[np.ndarray]:
        if self.done is None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                if not self.futures:
                    raise BrokenProcessPool("the pool broke before this block")
                self.done = [found for f in self.futures for found in f.result()]
            except BrokenProcessPool as exc:
                log.warning("AOFlagger workers failed (%s); flagging this block in this process", exc)
                self.done = self.retry()
            finally:
                self.shm.close()
                self.shm.unlink()
        return self.done


def flag_rfi_casa(ms: str, mode: str) -> None:
    """CASA flagdata ``tfcrop`` (time-frequency cropping) or ``rflag`` on the cross-correlations."""
    from casatasks import flagdata

    flagdata(vis=ms, mode=mode, antenna="*&*", datacolumn="data", action="apply", flagbackup=False)
