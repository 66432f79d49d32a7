"""Measurement Set subtables of one DSA-110 observation, written with python-casacore.

Values follow the MS v2 definition and what CASA's tasks read: antenna names, ITRF positions
and dish diameters; one spectral window (TOPO frequencies); the correlation types; one field
(the phase centre, ICRS); feeds with X/Y receptors; the pointing of every antenna at every
integration (the meridian at the pointing declination, not tracking: a transit array); the
observation's time range and telescope name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# AIPS polarisation codes (UVH5) -> casacore Stokes enum, and the receptor pair of each.
CASA_STOKES = {1: 1, 2: 2, 3: 3, 4: 4, -1: 5, -3: 6, -4: 7, -2: 8, -5: 9, -7: 10, -8: 11, -6: 12}
RECEPTORS = {-1: (0, 0), -2: (1, 1), -3: (0, 1), -4: (1, 0), -5: (0, 0), -6: (1, 1), -7: (0, 1), -8: (1, 0)}
ICRS_MEASINFO = {"type": "direction", "Ref": "ICRS"}


@dataclass(frozen=True)
class ObservationMetadata:
    """What the subtables hold. Angles in radians, times in MJD seconds (UTC), lengths in m."""

    antenna_names: list[str]
    antenna_positions_itrf: np.ndarray
    antenna_diameters: np.ndarray
    freqs_hz: np.ndarray
    channel_width_hz: float
    polarizations: tuple[int, ...]
    field_name: str
    phase_center_radec: tuple[float, float]
    times_mjd_s: np.ndarray
    """Unique integration centres."""
    integration_s: float
    pointing_radec: np.ndarray
    """ICRS (ra, dec) of the pointing at each unique time, shape (Ntimes, 2)."""
    telescope_name: str
    telescope_location_itrf: np.ndarray
    """The array's reference position (m): the site the correlator's files name."""
    history: str


def _fill(table, n_rows: int, columns: dict) -> None:
    table.addrows(n_rows)
    for name, value in columns.items():
        table.putcol(name, value)


def write_subtables(ms_path: Path | str, meta: ObservationMetadata) -> None:
    """Fill the subtables of an MS created with ``casacore.tables.default_ms``."""
    from casacore import tables

    path = str(ms_path)
    n_ant = len(meta.antenna_names)
    n_pol = len(meta.polarizations)
    n_chan = len(meta.freqs_hz)
    n_t = len(meta.times_mjd_s)
    t_mid = float(np.mean(meta.times_mjd_s))
    half = meta.integration_s / 2

    def open_(name):
        return tables.table(f"{path}/{name}", readonly=False, ack=False)

    with open_("ANTENNA") as t:
        _fill(t, n_ant, {
            "NAME": list(meta.antenna_names),
            "STATION": list(meta.antenna_names),
            "TYPE": ["GROUND-BASED"] * n_ant,
            "MOUNT": ["alt-az"] * n_ant,
            "POSITION": meta.antenna_positions_itrf,
            "OFFSET": np.zeros((n_ant, 3)),
            "DISH_DIAMETER": meta.antenna_diameters,
            "FLAG_ROW": np.zeros(n_ant, bool),
        })
    width = np.full((1, n_chan), meta.channel_width_hz)
    with open_("SPECTRAL_WINDOW") as t:
        _fill(t, 1, {
            "NUM_CHAN": np.array([n_chan]),
            "NAME": ["SPW0"],
            "CHAN_FREQ": meta.freqs_hz[None, :],
            "CHAN_WIDTH": width,
            "EFFECTIVE_BW": width,
            "RESOLUTION": width,
            "REF_FREQUENCY": meta.freqs_hz[:1],
            "TOTAL_BANDWIDTH": np.array([meta.channel_width_hz * n_chan]),
            "MEAS_FREQ_REF": np.array([5]),  # TOPO
            "NET_SIDEBAND": np.array([0]),
            "FREQ_GROUP": np.array([0]),
            "FREQ_GROUP_NAME": [""],
            "IF_CONV_CHAIN": np.array([0]),
            "FLAG_ROW": np.array([False]),
        })
    with open_("POLARIZATION") as t:
        _fill(t, 1, {
            "NUM_CORR": np.array([n_pol]),
            "CORR_TYPE": np.array([[CASA_STOKES[p] for p in meta.polarizations]], np.int32),
            "CORR_PRODUCT": np.array([[RECEPTORS[p] for p in meta.polarizations]], np.int32),
            "FLAG_ROW": np.array([False]),
        })
    with open_("DATA_DESCRIPTION") as t:
        _fill(t, 1, {"SPECTRAL_WINDOW_ID": np.array([0]), "POLARIZATION_ID": np.array([0]),
                     "FLAG_ROW": np.array([False])})
    direction = np.array([[meta.phase_center_radec]])  # (1 row, 1 poly term, 2)
    with open_("FIELD") as t:
        _fill(t, 1, {
            "NAME": [meta.field_name], "CODE": [""], "TIME": np.array([t_mid]), "NUM_POLY": np.array([0]),
            "DELAY_DIR": direction, "PHASE_DIR": direction, "REFERENCE_DIR": direction,
            "SOURCE_ID": np.array([-1]), "FLAG_ROW": np.array([False]),
        })
        for col in ("DELAY_DIR", "PHASE_DIR", "REFERENCE_DIR"):
            t.putcolkeyword(col, "MEASINFO", ICRS_MEASINFO)
    with open_("FEED") as t:
        _fill(t, n_ant, {
            "ANTENNA_ID": np.arange(n_ant, dtype=np.int32),
            "FEED_ID": np.zeros(n_ant, np.int32),
            "SPECTRAL_WINDOW_ID": np.full(n_ant, -1, np.int32),
            "TIME": np.full(n_ant, t_mid),
            "INTERVAL": np.full(n_ant, np.finfo(float).max),
            "NUM_RECEPTORS": np.full(n_ant, 2, np.int32),
            "BEAM_ID": np.full(n_ant, -1, np.int32),
            "BEAM_OFFSET": np.zeros((n_ant, 2, 2)),
            "POLARIZATION_TYPE": np.array([["X", "Y"]] * n_ant),
            "POL_RESPONSE": np.tile(np.eye(2, dtype=np.complex64), (n_ant, 1, 1)),
            "POSITION": np.zeros((n_ant, 3)),
            # dipoles: X east-west (pi/2 from north), Y north-south
            "RECEPTOR_ANGLE": np.tile([np.pi / 2, 0.0], (n_ant, 1)),
        })
    n_point = n_ant * n_t
    pointing = np.repeat(meta.pointing_radec, n_ant, axis=0)[:, None, :]
    times = np.repeat(meta.times_mjd_s, n_ant)
    with open_("POINTING") as t:
        _fill(t, n_point, {
            "ANTENNA_ID": np.tile(np.arange(n_ant, dtype=np.int32), n_t),
            "TIME": times, "TIME_ORIGIN": times,
            "INTERVAL": np.full(n_point, meta.integration_s),
            "NAME": ["meridian"] * n_point,
            "NUM_POLY": np.zeros(n_point, np.int32),
            "DIRECTION": pointing, "TARGET": pointing,
            "TRACKING": np.zeros(n_point, bool),
        })
        for col in ("DIRECTION", "TARGET"):
            t.putcolkeyword(col, "MEASINFO", ICRS_MEASINFO)
    with open_("OBSERVATION") as t:
        # not in the MS definition, but read by pyuvdata (otherwise it asks the network
        # for the site of a telescope name it knows)
        t.addcols(tables.maketabdesc(tables.makearrcoldesc("TELESCOPE_LOCATION", 0.0, shape=[3])))
        _fill(t, 1, {
            "TELESCOPE_LOCATION": np.asarray(meta.telescope_location_itrf, float)[None, :],
            "TELESCOPE_NAME": [meta.telescope_name],
            "TIME_RANGE": np.array([[meta.times_mjd_s.min() - half, meta.times_mjd_s.max() + half]]),
            "OBSERVER": [""], "PROJECT": ["DSA-110 continuum survey"], "SCHEDULE_TYPE": [""],
            "RELEASE_DATE": np.array([0.0]), "FLAG_ROW": np.array([False]),
        })
    now = (datetime.now(UTC) - datetime(1858, 11, 17, tzinfo=UTC)).total_seconds()
    with open_("HISTORY") as t:
        _fill(t, 1, {
            "TIME": np.array([now]), "OBSERVATION_ID": np.array([0]), "MESSAGE": [meta.history],
            "PRIORITY": ["INFO"], "ORIGIN": ["dsa_assets"], "OBJECT_ID": np.array([0]),
            "APPLICATION": ["dsa_assets"], "CLI_COMMAND": np.array([[""]]), "APP_PARAMS": np.array([[""]]),
        })
