"""Conversion: the subband files of one observation -> one Measurement Set.

Steps: validate the group (every problem listed at once); place each subband's channels
into one ascending-frequency spectral window (absent subbands become flagged channels
with zero weight); rephase every integration from the correlator's per-integration
meridian centre ``s0(t)`` to one phase centre, the ICRS position of the meridian at the
pointing declination at mid-observation, ``V' = V exp(+2 pi i b.(s0 - c) / lambda)``;
compute UVW for that centre on J2000 axes; write the Measurement Set into the scratch
directory and rename it into the output directory. The default writer streams row blocks of
all subbands into fixed-shape tiled columns in bounded memory (:mod:`.ms_writer`); the
reference writer holds the observation in memory and uses ``pyuvdata.UVData.write_ms``. Both
give the same Measurement Set.

Plain Python: no Dagster import. Usable from a notebook::

    stage = ConversionStage(ConversionConfig(output_dir="out"))
    result = stage.execute(group_id="2026-01-15T12:00:00", hdf5_files=files)
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.time import Time

from .. import constants as C
from .. import fsutil, geometry, naming
from ..exceptions import ConversionError, InconsistentGroupError, InvalidSubbandError
from ..subband import SubbandHeader, read_data, read_header

log = logging.getLogger(__name__)

TIME_TOLERANCE_S = 0.1
"""Largest disagreement (s) allowed between subbands' time stamps of the same integration."""
GRID_TOLERANCE = 1e-3
"""Largest offset (in channels, 244 Hz) of a channel centre from the instrument grid."""


@dataclass(frozen=True)
class ConversionConfig:
    """Where and how to convert."""

    output_dir: Path
    """Measurement Sets are published under ``<output_dir>/ms/<date>/<stamp>.ms``."""
    scratch_dir: Path | None = None
    """Where the MS is written before the rename (system temp if None). Same filesystem
    as ``output_dir`` makes the publish a rename; otherwise it is copied then renamed."""
    products_db: str | None = None
    """Products database (SQLAlchemy URL or SQLite path); None records nothing."""
    expected_subbands: int = C.N_SUBBANDS
    antenna_positions: str = "stations"
    """"stations": the packaged DSA-110 station table (as the reference pipelines do);
    "file": the positions in the files."""
    pointing_dec_rad: float | None = None
    """Override of the pointing declination (rad); default: the files' ``phase_center_dec``."""
    writer: str = "streaming"
    """"streaming": block-by-block writer, bounded memory (:mod:`.ms_writer`);
    "pyuvdata": the whole observation in memory through ``UVData.write_ms`` (the reference)."""

    def __post_init__(self):
        object.__setattr__(self, "output_dir", Path(self.output_dir))
        if self.scratch_dir is not None:
            object.__setattr__(self, "scratch_dir", Path(self.scratch_dir))
        if self.writer not in ("streaming", "pyuvdata"):
            raise ValueError(f"writer must be 'streaming' or 'pyuvdata', got {self.writer!r}")
        if self.antenna_positions not in ("stations", "file"):
            raise ValueError(f"antenna_positions must be 'stations' or 'file', got {self.antenna_positions!r}")


@dataclass
class GroupPlan:
    """A validated group: its headers by subband and the layout of the output."""

    group_id: str
    headers: dict[int, SubbandHeader]
    channel_offsets: np.ndarray
    """Channel indices k (0..47) present in every subband (all 48 at full scale)."""
    freqs_hz: np.ndarray
    """All output channels, ascending (Hz)."""
    pointing_dec_rad: float

    @property
    def reference(self) -> SubbandHeader:
        return self.headers[min(self.headers)]

    @property
    def missing(self) -> list[int]:
        return [sb for sb in range(C.N_SUBBANDS) if sb not in self.headers]

    def column_of(self, subband: int) -> np.ndarray:
        """Output column of each of a subband's channels, in file (descending) order."""
        grid = C.CHANNELS_PER_SUBBAND * subband + self.channel_offsets
        all_grid = C.grid_channel_index(self.freqs_hz)
        return np.searchsorted(-all_grid, -grid.astype(float))


@dataclass(frozen=True)
class ConversionResult:
    """What a conversion produced. Frequencies in Hz, durations in seconds."""

    group_id: str
    ms_path: Path
    n_rows: int
    n_channels: int
    freq_min_hz: float
    freq_max_hz: float
    subbands_present: list[int]
    subbands_missing: list[int]
    duration_s: float
    size_bytes: int
    phase_center_ra_deg: float
    phase_center_dec_deg: float
    wall_time_s: float
    timings_s: dict = field(default_factory=dict)
    n_nonfinite: int = 0
    """NaN or infinite visibility samples in the files (bad packets), written as flagged zeros."""


class ConversionStage:
    """Converts one observation's subbands into a Measurement Set."""

    name = "conversion"

    def __init__(self, config: ConversionConfig):
        self.config = config

    # -- validate --------------------------------------------------------------------------
    def validate(self, group_id: str, hdf5_files: list[Path | str]) -> GroupPlan:
        """Check that the files form one consistent observation; list every problem found.

        A missing subband is not an error (its channels are flagged). Raises
        InconsistentGroupError (inconsistent group) or InvalidSubbandError (no usable file), and
        ProductNameError for a ``group_id`` that is not an observation id.
        """
        naming.observation_id(group_id)
        problems: list[str] = []
        headers: list[SubbandHeader] = []
        for f in hdf5_files:
            try:
                headers.append(read_header(f))
            except InvalidSubbandError as exc:
                problems.append(str(exc))
        if not headers:
            raise InvalidSubbandError(f"group {group_id}: no readable subband file: " + "; ".join(problems))

        by_sb: dict[int, SubbandHeader] = {}
        offsets_seen: dict[int, tuple[int, ...]] = {}
        for h in headers:
            grid = h.grid_channels
            rounded = np.round(grid)
            if np.any(np.abs(grid - rounded) > GRID_TOLERANCE):
                problems.append(
                    f"{h.path.name}: channels off the instrument grid (found {h.freqs_hz[:3] / 1e6} MHz...; "
                    f"expected {C.TOP_CHANNEL_FREQ_HZ / 1e6:.6f} MHz - n x {C.CHANNEL_WIDTH_HZ / 1e6} MHz)"
                )
                continue
            sb_of_channels = {int(s) for s in rounded // C.CHANNELS_PER_SUBBAND}
            sb = h.subband if h.subband is not None else min(sb_of_channels)
            if sb_of_channels != {sb}:
                problems.append(
                    f"{h.path.name}: channels belong to subband(s) {sorted(sb_of_channels)}, expected sb{sb:02d}"
                )
                continue
            if np.any(np.diff(h.freqs_hz) >= 0):
                problems.append(f"{h.path.name}: frequencies not descending within the file")
                continue
            if abs(h.channel_width_hz - C.CHANNEL_WIDTH_HZ) > 1.0:
                problems.append(
                    f"{h.path.name}: channel width {h.channel_width_hz} Hz, expected {C.CHANNEL_WIDTH_HZ} Hz"
                )
            if sb in by_sb:
                problems.append(f"subband sb{sb:02d} given twice: {by_sb[sb].path.name} and {h.path.name}")
                continue
            by_sb[sb] = h
            offsets_seen[sb] = tuple((rounded - C.CHANNELS_PER_SUBBAND * sb).astype(int))

        if by_sb:
            ref_sb = min(by_sb)
            ref = by_sb[ref_sb]
            for sb, h in sorted(by_sb.items()):
                if sb == ref_sb:
                    continue
                problems.extend(_compare(ref, h, offsets_seen[ref_sb], offsets_seen[sb]))
        if len(by_sb) > self.config.expected_subbands:
            problems.append(f"{len(by_sb)} subbands, at most {self.config.expected_subbands} expected")
        if problems:
            raise InconsistentGroupError(
                f"group {group_id}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)
            )

        offsets = np.array(offsets_seen[ref_sb])
        freqs = np.sort(np.concatenate([C.subband_frequencies_hz(sb, offsets) for sb in range(C.N_SUBBANDS)]))
        dec = self.config.pointing_dec_rad if self.config.pointing_dec_rad is not None else ref.pointing_dec_rad
        if dec is None:
            raise InconsistentGroupError(
                f"group {group_id}: the files carry no extra_keywords/phase_center_dec and no "
                "pointing declination was configured"
            )
        return GroupPlan(group_id, dict(sorted(by_sb.items())), offsets, freqs, float(dec))

    # -- execute ---------------------------------------------------------------------------
    def _check_space(self, group_id: str, plan) -> None:
        """Refuse before writing when the scratch or output filesystem cannot hold the Measurement
        Set, with the reason, rather than start a write that cannot finish. A disk that fills up
        during the write makes casacore abort the writer process at its table flush; see
        :meth:`_write_isolated`."""
        # ~8.2 bytes per visibility (complex64 data, bit-packed flags, weights per row) + subtables
        need = int(1.1 * plan.reference.n_blts * len(plan.freqs_hz) * 2 * 8.2) + 4_000_000
        places = {"scratch": fsutil.scratch_root(self.config.scratch_dir), "output": self.config.output_dir}
        for what, where in places.items():
            free = fsutil.free_bytes(where)
            if free < need:
                raise ConversionError(
                    f"group {group_id}: not enough space on the {what} disk ({where}): the Measurement Set needs "
                    f"~{need / 1e6:.1f} MB, {free / 1e6:.1f} MB free (No space left on device)")

    def execute(self, *, group_id: str, hdf5_files: list[Path | str], partition_key: str | None = None):
        """Convert the group and publish its Measurement Set; returns a ConversionResult."""
        t_start = time.perf_counter()
        timings = {}
        plan = self.validate(group_id, hdf5_files)
        timings["validate"] = time.perf_counter() - t_start
        dest = naming.ms_path(self.config.output_dir, group_id)
        self._check_space(group_id, plan)
        with fsutil.scratch_directory(self.config.scratch_dir, f"convert-{group_id}-") as scratch:
            tmp_ms = scratch / dest.name
            try:
                info = self._write_isolated(plan, tmp_ms, timings)
            except (InvalidSubbandError, InconsistentGroupError):
                raise
            except Exception as exc:
                raise ConversionError(f"group {group_id}: writing the Measurement Set failed: {exc}") from exc
            t0 = time.perf_counter()
            fsutil.publish(tmp_ms, dest)
            timings["publish"] = time.perf_counter() - t0
        result = ConversionResult(
            group_id=group_id,
            ms_path=dest,
            n_rows=info["n_rows"],
            n_channels=len(plan.freqs_hz),
            freq_min_hz=float(plan.freqs_hz[0]),
            freq_max_hz=float(plan.freqs_hz[-1]),
            subbands_present=sorted(plan.headers),
            subbands_missing=plan.missing,
            duration_s=info["duration_s"],
            size_bytes=fsutil.directory_size(dest),
            phase_center_ra_deg=info["ra_deg"],
            phase_center_dec_deg=info["dec_deg"],
            wall_time_s=time.perf_counter() - t_start,
            timings_s=timings,
            n_nonfinite=info["n_nonfinite"],
        )
        if result.n_nonfinite:
            log.warning("%s: %d non-finite visibility samples (bad packets) flagged", group_id, result.n_nonfinite)
        if self.config.products_db:
            from ..products import ProductsDB

            ProductsDB(self.config.products_db).record_measurement_set(
                group_id=group_id,
                partition_key=partition_key,
                path=str(dest),
                size_bytes=result.size_bytes,
                n_rows=result.n_rows,
                n_channels=result.n_channels,
                freq_min_hz=result.freq_min_hz,
                freq_max_hz=result.freq_max_hz,
                subbands_present=",".join(map(str, result.subbands_present)),
                duration_s=result.duration_s,
                phase_center_ra_deg=result.phase_center_ra_deg,
                phase_center_dec_deg=result.phase_center_dec_deg,
            )
        log.info(
            "converted %s: %d subbands (%d missing) -> %s in %.1f s",
            group_id,
            len(plan.headers),
            len(plan.missing),
            dest,
            result.wall_time_s,
        )
        return result

    def cleanup(self) -> list[Path]:
        """Remove leftovers of interrupted runs: scratch directories of this stage and
        half-published products in the output tree. Returns what was removed."""
        return fsutil.sweep_partials(self.config.output_dir) + fsutil.sweep_scratch(self.config.scratch_dir, "convert-*")

    # -- internals -------------------------------------------------------------------------
    def _antenna_ecef(self, ref: SubbandHeader, location) -> np.ndarray:
        """Absolute ITRF positions (m) indexed like ``ref.antenna_numbers``."""
        site = np.array([location.x.to_value(u.m), location.y.to_value(u.m), location.z.to_value(u.m)])
        from_file = site + ref.antenna_positions
        if self.config.antenna_positions == "file":
            return from_file
        table = geometry.station_positions_ecef()
        out = from_file.copy()
        for i, name in enumerate(ref.antenna_names):
            digits = name.split("-")[-1]
            if digits.isdigit() and 1 <= int(digits) <= len(table):
                out[i] = table[int(digits) - 1]
        return out

    def _geometry(self, plan: GroupPlan) -> ObservationGeometry:
        """Phase centre, per-row rephasing delays and UVW (UVH5 convention) of the group."""
        ref = plan.reference
        location = geometry.site_location(ref.latitude_deg, ref.longitude_deg, ref.altitude_m)
        ecef = self._antenna_ecef(ref, location)
        index_of = {int(n): i for i, n in enumerate(ref.antenna_numbers)}
        idx1 = np.array([index_of[a] for a in ref.ant1])
        idx2 = np.array([index_of[a] for a in ref.ant2])
        b = ecef[idx2] - ecef[idx1]  # (Nblts, 3)
        utimes, tidx = np.unique(ref.times_jd, return_inverse=True)
        times = Time(utimes, format="jd", scale="utc")
        s0 = geometry.meridian_unit_vectors(plan.pointing_dec_rad, times, location)
        mid = Time(0.5 * (utimes[0] + utimes[-1]), format="jd", scale="utc")
        center = geometry.meridian_icrs(plan.pointing_dec_rad, mid, location)
        basis = geometry.uvw_basis(center, times, location)  # (Nt, 3, 3)
        uvw = np.einsum("nij,nj->ni", basis[tidx], b)
        delay = np.einsum("nj,nj->n", b, s0[tidx] - basis[tidx, 2, :]) / geometry.SPEED_OF_LIGHT_M_S
        duration = float((utimes[-1] - utimes[0]) * 86400.0 + np.median(ref.integration_time_s))
        return ObservationGeometry(location, ecef, center, uvw, delay, duration)

    def _write_isolated(self, plan: GroupPlan, ms_path: Path, timings: dict) -> dict:
        """:meth:`_write` in a forked child process, so that a writer the C++ library aborts
        (casacore calls ``terminate`` when a full disk fails its table flush) fails this
        conversion with the library's own message instead of killing the caller. The child's
        stderr comes back through a pipe (a file could sit on the full disk); its last lines
        become the error. A daemonic caller (a Celery prefork worker) may not fork: it writes
        in-process."""
        import multiprocessing as mp
        import os
        import signal
        import threading

        if mp.current_process().daemon:
            return self._write(plan, ms_path, timings)
        ctx = mp.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        err_read, err_write = os.pipe()
        child = ctx.Process(target=_write_in_child, args=(self, plan, ms_path, send, err_read, err_write),
                            name="ms-writer")
        child.start()
        send.close()
        os.close(err_write)
        stderr_tail = bytearray()

        def drain():  # keeps the child from blocking on a full pipe; remembers the end
            while chunk := os.read(err_read, 65536):
                stderr_tail.extend(chunk)
                del stderr_tail[:-4096]

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            outcome = receive.recv()
        except EOFError:  # the child died without a word
            outcome = None
        child.join()
        reader.join(timeout=5)
        os.close(err_read)
        if outcome is None:
            code = child.exitcode
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            tail = [ln.strip() for ln in stderr_tail.decode(errors="replace").splitlines() if ln.strip()][-3:]
            raise OSError(f"the writer process died ({how})" + (": " + " | ".join(tail) if tail else ""))
        kind, value, child_timings = outcome
        timings.update(child_timings)
        if kind == "error":
            raise value
        return value

    def _write(self, plan: GroupPlan, ms_path: Path, timings: dict) -> dict:
        if self.config.writer == "streaming":
            from .ms_writer import BlockReader

            # the reader process starts on the files while the geometry is computed
            with BlockReader(plan, len(plan.reference.polarizations)) as reader:
                t0 = time.perf_counter()
                geo = self._geometry(plan)
                timings["geometry"] = time.perf_counter() - t0
                n_nonfinite = self._write_streaming(plan, geo, reader, ms_path, timings)
        else:
            t0 = time.perf_counter()
            geo = self._geometry(plan)
            timings["geometry"] = time.perf_counter() - t0
            n_nonfinite = self._write_pyuvdata(plan, geo, ms_path, timings)
        return {
            "n_rows": int(plan.reference.n_blts),
            "n_nonfinite": int(n_nonfinite),
            "duration_s": geo.duration_s,
            "ra_deg": float(geo.center.ra.deg),
            "dec_deg": float(geo.center.dec.deg),
        }

    def _write_streaming(self, plan: GroupPlan, geo: ObservationGeometry, reader, ms_path: Path, timings: dict) -> int:
        """Block-by-block writer (:mod:`dsa_assets.stages.ms_writer`): bounded memory. Returns
        the number of non-finite samples flagged."""
        from . import ms_subtables, ms_writer

        ref = plan.reference
        swapped = ref.ant1 > ref.ant2
        rows = ms_writer.RowGeometry(
            delay_s=geo.delay_s,
            swapped=swapped,
            # UVH5 -> MS flips the sign; a swapped pair flips it back
            uvw_ms=np.where(swapped[:, None], geo.uvw, -geo.uvw),
            ant1=np.where(swapped, ref.ant2, ref.ant1).astype(np.int32),
            ant2=np.where(swapped, ref.ant1, ref.ant2).astype(np.int32),
            time_mjd_s=Time(ref.times_jd, format="jd", scale="utc").mjd * 86400.0,
            interval_s=ref.integration_time_s,
        )
        t0 = time.perf_counter()
        ms = ms_writer.create_main_table(
            ms_path, ref.n_blts, len(plan.freqs_hz), len(ref.polarizations), reader.block_rows
        )
        try:
            n_nonfinite = ms_writer.write_main_table(ms, reader, plan, rows, plan.freqs_hz, len(ref.polarizations),
                                                     timings)
            ms.putcolkeyword("DATA", "QuantumUnits", "uncalib")
            ms.putkeyword("pyuvdata_flip_conj", True)
        finally:
            ms.done()
        timings["write_main"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        utimes = np.unique(rows.time_mjd_s)
        pointing = geometry.meridian_icrs(
            plan.pointing_dec_rad, Time(utimes / 86400.0, format="mjd", scale="utc"), geo.location
        )
        ms_subtables.write_subtables(
            ms_path,
            ms_subtables.ObservationMetadata(
                antenna_names=[_station_name(n) for n in ref.antenna_names],
                antenna_positions_itrf=geo.ecef,
                antenna_diameters=ref.antenna_diameters,
                freqs_hz=plan.freqs_hz,
                channel_width_hz=C.CHANNEL_WIDTH_HZ,
                polarizations=ref.polarizations,
                field_name=f"meridian_{plan.group_id}",
                phase_center_radec=(float(geo.center.ra.rad), float(geo.center.dec.rad)),
                times_mjd_s=utimes,
                integration_s=float(np.median(ref.integration_time_s)),
                pointing_radec=np.stack([pointing.ra.rad, pointing.dec.rad], axis=-1),
                telescope_name=C.TELESCOPE_NAME_FILES,
                telescope_location_itrf=np.array([geo.location.x.value, geo.location.y.value, geo.location.z.value]),
                history=f"Converted from {len(plan.headers)} DSA-110 subband files by dsa_assets.",
            ),
        )
        timings["write_subtables"] = time.perf_counter() - t0
        return n_nonfinite

    def _write_pyuvdata(self, plan: GroupPlan, geo: ObservationGeometry, ms_path: Path, timings: dict) -> int:
        """Reference writer: the whole observation in memory, written by pyuvdata.write_ms.
        Returns the number of non-finite samples, written as flagged zeros."""
        ref = plan.reference
        n_blts, n_pols, n_chan = ref.n_blts, len(ref.polarizations), len(plan.freqs_hz)
        t0 = time.perf_counter()
        data = np.zeros((n_blts, n_chan, n_pols), np.complex64)
        flags = np.ones((n_blts, n_chan, n_pols), bool)
        nsamples = np.zeros((n_blts, n_chan, n_pols), np.float32)
        for sb, h in plan.headers.items():
            cols = plan.column_of(sb)
            vis, flg, nsa = read_data(h)
            data[:, cols] = vis
            flags[:, cols] = flg
            nsamples[:, cols] = nsa
        bad = ~np.isfinite(data)
        n_nonfinite = int(bad.sum())
        data[bad], flags[bad] = 0, True
        timings["read"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        freqs = plan.freqs_hz
        for start in range(0, n_blts, 4096):
            rows = slice(start, start + 4096)
            phasor = np.exp(2j * np.pi * geo.delay_s[rows, None] * freqs[None, :]).astype(np.complex64)
            data[rows] *= phasor[:, :, None]
        timings["rephase"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        uv = _build_uvdata(plan, ref, geo, data, flags, nsamples)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            uv.write_ms(str(ms_path), clobber=True, run_check=False)
        timings["write"] = time.perf_counter() - t0
        return n_nonfinite


@dataclass(frozen=True)
class ObservationGeometry:
    """Site, antenna ITRF positions (m), phase centre (ICRS), per-row UVW (m, UVH5 sign),
    per-row rephasing delay (s) and observation duration (s)."""

    location: object
    ecef: np.ndarray
    center: object
    uvw: np.ndarray
    delay_s: np.ndarray
    duration_s: float


def _compare(ref: SubbandHeader, h: SubbandHeader, ref_offsets, offsets) -> list[str]:
    """Differences between one subband's header and the reference subband's."""
    name, rname = h.path.name, ref.path.name
    out = []
    if tuple(offsets) != tuple(ref_offsets):
        out.append(f"{name}: channel pattern {list(offsets)}, expected {list(ref_offsets)} as in {rname}")
    if h.polarizations != ref.polarizations:
        out.append(f"{name}: polarizations {list(h.polarizations)}, expected {list(ref.polarizations)}")
    if h.n_blts != ref.n_blts:
        out.append(f"{name}: {h.n_blts} baseline-times, expected {ref.n_blts} as in {rname}")
        return out
    if not (np.array_equal(h.ant1, ref.ant1) and np.array_equal(h.ant2, ref.ant2)):
        found = sorted(set(h.ant1) | set(h.ant2))
        expected = sorted(set(ref.ant1) | set(ref.ant2))
        out.append(
            f"{name}: baselines differ from {rname} (antennas found {_short(found)}, expected {_short(expected)})"
        )
    dt = np.max(np.abs(h.times_jd - ref.times_jd)) * 86400.0
    if dt > TIME_TOLERANCE_S:
        out.append(
            f"{name}: integration times differ from {rname} by up to {dt:.3f} s "
            f"(found first {Time(h.times_jd[0], format='jd').isot}, expected {Time(ref.times_jd[0], format='jd').isot})"
        )
    if not np.array_equal(h.antenna_numbers, ref.antenna_numbers):
        out.append(f"{name}: antenna table differs from {rname}")
    return out


def _short(values, n=12) -> str:
    values = [int(v) for v in values]
    return str(values) if len(values) <= n else f"{values[:n]}... ({len(values)} in all)"


def _build_uvdata(plan, ref, geo: ObservationGeometry, data, flags, nsamples):
    """A pyuvdata UVData holding the converted observation (UVH5 sign conventions)."""
    from pyuvdata import Telescope, UVData

    location, ecef, center = geo.location, geo.ecef, geo.center
    site = np.array([location.x.to_value(u.m), location.y.to_value(u.m), location.z.to_value(u.m)])
    names = [_station_name(n) for n in ref.antenna_names]
    telescope = Telescope.new(
        name=C.TELESCOPE_NAME_FILES,
        location=location,
        antenna_positions=ecef - site,
        antenna_names=names,
        antenna_numbers=ref.antenna_numbers,
        antenna_diameters=ref.antenna_diameters,
        instrument=C.INSTRUMENT_NAME,
        x_orientation="east",
        mount_type="alt-az",
        feeds=["x", "y"],
        update_from_known=False,
    )
    catalog = {
        0: {
            "cat_name": f"meridian_{plan.group_id}",
            "cat_type": "sidereal",
            "cat_lon": float(center.ra.rad),
            "cat_lat": float(center.dec.rad),
            "cat_frame": "icrs",
            "cat_epoch": None,
            "cat_times": None,
            "cat_pm_ra": None,
            "cat_pm_dec": None,
            "cat_vrad": None,
            "cat_dist": None,
            "info_source": "user",
        }
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uv = UVData.new(
            freq_array=plan.freqs_hz,
            polarization_array=np.array(ref.polarizations),
            times=ref.times_jd,
            antpairs=np.stack([ref.ant1, ref.ant2], axis=1),
            do_blt_outer=False,
            telescope=telescope,
            integration_time=ref.integration_time_s,
            channel_width=np.full(len(plan.freqs_hz), C.CHANNEL_WIDTH_HZ),
            phase_center_catalog=catalog,
            data_array=data,
            flag_array=flags,
            nsample_array=nsamples,
            vis_units="uncalib",
            history=f"Converted from {len(plan.headers)} DSA-110 subband files by dsa_assets.",
            check_kw={"run_check_acceptability": False, "check_autos": False},
        )
        uv.uvw_array = geo.uvw
        uv._set_app_coords_helper()
    return uv


def _station_name(name: str) -> str:
    """Correlator antenna name "24" -> station name "DSA-024"; other names unchanged."""
    return f"DSA-{int(name):03d}" if name.isdigit() else name


def _write_in_child(stage: ConversionStage, plan: GroupPlan, ms_path: Path, send, err_read: int,
                    err_write: int) -> None:
    """Body of the forked writer: C-level stderr into the ``err_write`` pipe, then (kind,
    value, timings) through ``send``: ("ok", info) or ("error", the exception)."""
    import os

    os.close(err_read)
    os.dup2(err_write, 2)
    os.close(err_write)
    timings: dict = {}
    try:
        send.send(("ok", stage._write(plan, ms_path, timings), timings))
    except Exception as exc:
        try:
            send.send(("error", exc, timings))
        except Exception:
            send.send(("error", OSError(f"{type(exc).__name__}: {exc}"), timings))
    finally:
        send.close()
