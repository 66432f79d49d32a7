"""Instrument facts of DSA-110, in one place, with units and provenance.

Every number here is a configuration default that the simulator, the converter and the
quality checks share. Sources: the instrument's correlator file writer and calibration
package (summarised in the project's design notes) and metadata of real correlator files.
Where those disagreed, real files won.
"""

from __future__ import annotations

from importlib import resources as _resources

import numpy as np

# --- Array -----------------------------------------------------------------------------
N_STATIONS = 117
"""Stations DSA-001 ... DSA-117; real files list all of them (``Nants_telescope``)."""

DISH_DIAMETER_M = 4.65
"""Dish diameter in metres; the primary beam is the Airy pattern of this aperture."""

INACTIVE_STATIONS = (10, 21, 22, 23, *range(52, 68), 117)
"""1-based station numbers that did not correlate in early 2026 (96 stations remain)."""

# Site used by the correlator: CASA's ``OVRO_MMA`` observatory position (casacore
# ``measures.observatory('OVRO_MMA')``: longitude -2.064427799 rad, latitude 0.649845511 rad,
# height 1188.05 m), which the files carry as their latitude/longitude/altitude header values.
OVRO_MMA_LATITUDE_DEG = 37.2334051
OVRO_MMA_LONGITUDE_DEG = -118.283
OVRO_MMA_ALTITUDE_M = 1188.0519

TELESCOPE_NAME_FILES = "OVRO_MMA"
"""``telescope_name`` written by the correlator; also a name CASA recognises."""

INSTRUMENT_NAME = "DSA"

# --- One observation = 16 subband files ----------------------------------------------
N_SUBBANDS = 16
CHANNELS_PER_SUBBAND = 48
CHANNEL_WIDTH_HZ = 244_140.625
"""Channel width in Hz (real files store it negative, the writer code positive)."""

TOP_CHANNEL_FREQ_HZ = 1_498_643_188.0
"""Centre frequency (Hz) of channel 0 of subband 0, the highest channel of the band."""

INTEGRATION_TIME_S = 12.884902000427246
"""Integration length in seconds (96 x 0.134217728 s)."""

SUBINTEGRATION_S = 0.134217728
N_INTEGRATIONS = 24
OBSERVATION_CADENCE_S = 309.0
"""Seconds between consecutive observations (309-310 s measured)."""

POLARIZATIONS = (-5, -6)
"""AIPS polarisation codes in the files: XX, YY."""

DEFAULT_POINTING_DEC_RAD = 0.9525
"""Pointing declination (radians, apparent/topocentric) of the published file layout."""

SEFD_JY = 6500.0
"""System equivalent flux density per antenna (Jy) at 1.4 GHz: 2 k Tsys / A_eff for a 4.65 m
dish (17.0 m^2, aperture efficiency ~0.7, Tsys ~25-28 K), as the instrument team's utilities
use. A visibility's noise is then 2.6 Jy per channel and integration, a full-scale
observation's Stokes I image 0.2 mJy/beam (natural weighting)."""

GROUP_TOLERANCE_S = 120.0
"""Subband files of one observation open within this many seconds of the earliest one."""

INCOMPLETE_GROUP_TIMEOUT_S = 15 * 60.0
"""How long the real-time system waits for a group's stragglers."""

FILE_NAME_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


def subband_frequencies_hz(subband: int, channels: np.ndarray | None = None) -> np.ndarray:
    """Centre frequencies (Hz) of the channels of one subband, in file order (descending).

    Channel k of subband s sits at ``TOP_CHANNEL_FREQ_HZ - (48 s + k) * CHANNEL_WIDTH_HZ``.
    ``channels`` selects a subset of channel indices 0..47 (scaled-down data); default all.
    """
    k = np.arange(CHANNELS_PER_SUBBAND) if channels is None else np.asarray(channels)
    return TOP_CHANNEL_FREQ_HZ - (CHANNELS_PER_SUBBAND * subband + k) * CHANNEL_WIDTH_HZ


def grid_channel_index(freq_hz: np.ndarray) -> np.ndarray:
    """Position (float) of frequencies on the instrument's channel grid, counted from the top.

    An integral value ``48 s + k`` means channel k of subband s; anything else is off-grid.
    """
    return (TOP_CHANNEL_FREQ_HZ - np.asarray(freq_hz, dtype=float)) / CHANNEL_WIDTH_HZ


def station_table_path():
    """Path of the packaged DSA-110 station coordinate table (CSV, WGS84 degrees, metres)."""
    return _resources.files("dsa_assets") / "data" / "DSA110_Station_Coordinates.csv"
