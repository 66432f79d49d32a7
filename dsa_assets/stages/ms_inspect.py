"""Reading a Measurement Set back with casatools (used by checks and tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..exceptions import CalibrationError

_UTC = UTC


ROW_CHUNK = 20000
"""Rows read at a time when a whole column would not fit comfortably in memory."""


def row_chunks(nrows: int, size: int = ROW_CHUNK):
    """(start row, number of rows) covering ``nrows`` in chunks of ``size``."""
    for start in range(0, nrows, size):
        yield start, min(size, nrows - start)


def flag_fraction(tb) -> float:
    """Fraction (0..1) of the visibilities of an open main table that are flagged."""
    total = flagged = 0
    for start, n in row_chunks(tb.nrows()):
        f = tb.getcol("FLAG", startrow=start, nrow=n)
        total += f.size
        flagged += int(f.sum())
    return flagged / total if total else 0.0


def inspect_ms(ms_path: Path | str) -> dict:
    """Shape and content summary of a Measurement Set, read with casatools' table tool.

    Returns rows, channels, polarizations, antennas, the frequency range (Hz), the telescope
    name, the phase centre (deg) and the fraction of channels flagged in every row.
    """
    import casatools

    tb = casatools.table()
    path = str(ms_path)
    try:
        tb.open(path)
        rows = tb.nrows()
        flags = tb.getcol("FLAG")  # (npol, nchan, nrow)
        tb.close()
        tb.open(f"{path}/SPECTRAL_WINDOW")
        freqs = tb.getcol("CHAN_FREQ")[:, 0]
        tb.close()
        tb.open(f"{path}/ANTENNA")
        n_ant = tb.nrows()
        tb.close()
        tb.open(f"{path}/OBSERVATION")
        telescope = tb.getcol("TELESCOPE_NAME")[0]
        tb.close()
        tb.open(f"{path}/FIELD")
        phase_dir = tb.getcol("PHASE_DIR")[:, 0, 0]
        tb.close()
    finally:
        tb.done()
    return {
        "rows": int(rows),
        "channels": int(len(freqs)),
        "polarizations": int(flags.shape[0]),
        "antennas": int(n_ant),
        "freq_min_hz": float(freqs.min()),
        "freq_max_hz": float(freqs.max()),
        "telescope": str(telescope),
        "phase_center_deg": [float(np.degrees(phase_dir[0]) % 360), float(np.degrees(phase_dir[1]))],
        "flagged_channel_fraction": float(np.mean(np.all(flags, axis=(0, 2)))),
    }


def radec_unit(ra_rad, dec_rad) -> np.ndarray:
    """Unit vectors of (ra, dec) in radians on the equatorial axes, shape (..., 3)."""
    ra, dec = np.asarray(ra_rad, float), np.asarray(dec_rad, float)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def pointing_directions(ms: Path | str, times: np.ndarray) -> np.ndarray:
    """Unit vectors (ICRS axes) of the pointing at each of ``times`` (MJD seconds), shape
    (Ntimes, 3): the POINTING table's DIRECTION nearest in time (first antenna), or the FIELD's
    PHASE_DIR when the table is empty (a tracking array)."""
    from casacore.tables import table

    ms = Path(ms)
    ptg = ms / "POINTING"
    if (ptg / "table.dat").exists():
        with table(str(ptg), ack=False) as tb:
            if tb.nrows():
                t = tb.getcol("TIME")
                d = tb.getcol("DIRECTION")[:, 0, :]  # (nrow, 2) ra, dec
                first = tb.getcol("ANTENNA_ID") == tb.getcol("ANTENNA_ID")[0]
                t, d = t[first], d[first]
                order = np.argsort(t)
                t, d = t[order], d[order]
                idx = np.clip(np.searchsorted(t, times), 0, len(t) - 1)
                prev = np.clip(idx - 1, 0, len(t) - 1)
                idx = np.where(np.abs(t[prev] - times) < np.abs(t[idx] - times), prev, idx)
                return radec_unit(d[idx, 0], d[idx, 1])
    with table(str(ms / "FIELD"), ack=False) as tb:
        ra, dec = tb.getcol("PHASE_DIR")[0, 0]
    return np.repeat(radec_unit(ra, dec)[None], len(times), axis=0)


@dataclass(frozen=True)
class ObservationSpan:
    """When and where an observation looked: UTC edges of its first and last integrations, the
    apparent (HADec-frame) pointing declination in rad, as the correlator records it, and the
    ICRS position (deg) of the beam centre at mid-observation."""

    start: datetime
    end: datetime
    pointing_dec_rad: float
    centre_ra_deg: float
    centre_dec_deg: float

    @property
    def mid(self) -> datetime:
        return self.start + (self.end - self.start) / 2


def observation_span(ms_path: Path | str) -> ObservationSpan:
    """The :class:`ObservationSpan` of a Measurement Set, from its TIME column and POINTING
    table (the FIELD phase centre without one)."""
    from astropy.time import Time
    from casacore.tables import table

    from .. import geometry

    with table(str(ms_path), ack=False) as tb:
        times = np.unique(tb.getcol("TIME"))
        half = float(tb.getcell("INTERVAL", 0)) / 2.0
    start = Time((times[0] - half) / 86400.0, format="mjd", scale="utc").to_datetime(timezone=_UTC)
    end = Time((times[-1] + half) / 86400.0, format="mjd", scale="utc").to_datetime(timezone=_UTC)
    mid = times[0] + (times[-1] - times[0]) / 2.0
    x, y, z = pointing_directions(ms_path, np.array([mid]))[0]
    ra, dec = float(np.degrees(np.arctan2(y, x)) % 360.0), float(np.degrees(np.arcsin(z)))
    mid_time = Time(mid / 86400.0, format="mjd", scale="utc")
    return ObservationSpan(start, end, geometry.apparent_dec_rad(ra, dec, mid_time, geometry.default_site()), ra, dec)


def casa_table(path, readonly=True):
    """A casacore table, read-only unless asked (close it: use ``with``)."""
    from casacore.tables import table

    return table(str(path), readonly=readonly, ack=False)


def dish_diameter_m(ms: Path | str) -> float:
    """Median dish diameter (m) in the ANTENNA table."""
    with casa_table(Path(ms) / "ANTENNA") as tb:
        return float(np.median(tb.getcol("DISH_DIAMETER")))


def channel_frequencies(ms: Path | str) -> np.ndarray:
    """Channel frequencies (Hz) of the one spectral window; CalibrationError if there are more."""
    with casa_table(Path(ms) / "SPECTRAL_WINDOW") as tb:
        if tb.nrows() != 1:
            raise CalibrationError(f"{ms}: {tb.nrows()} spectral windows; one is supported")
        return tb.getcol("CHAN_FREQ")[0]

