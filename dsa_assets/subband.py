"""Reading DSA-110 subband files (UVH5) with h5py: headers cheaply, data by subband.

Two layouts are accepted: the correlator's old UVH5 header (no ``version``, ``freq_array``
of shape (1, Nfreqs), visibilities (Nblts, 1, Nfreqs, Npols)) and the current layout that
pyuvdata writes (``version`` 1.x, ``freq_array`` (Nfreqs,), visibilities (Nblts, Nfreqs,
Npols), possibly compressed flags and a compound integer visibility type).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from . import constants as C
from .exceptions import InvalidSubbandError
from .naming import parse_subband_name

REQUIRED_HEADER = (
    "ant_1_array",
    "ant_2_array",
    "time_array",
    "freq_array",
    "polarization_array",
    "Nblts",
    "Nfreqs",
    "Npols",
    "antenna_numbers",
    "antenna_positions",
    "latitude",
    "longitude",
    "altitude",
)
REQUIRED_DATA = ("visdata",)


@dataclass(frozen=True)
class SubbandHeader:
    """What the converter needs to know about one subband file, without its visibilities.

    Frequencies in Hz (file order), times as Julian dates per blt, positions in metres
    (ECEF offsets from the telescope location), location in WGS84 degrees and metres.
    """

    path: Path
    subband: int | None
    freqs_hz: np.ndarray
    channel_width_hz: float
    ant1: np.ndarray
    ant2: np.ndarray
    times_jd: np.ndarray
    polarizations: tuple[int, ...]
    antenna_numbers: np.ndarray
    antenna_names: tuple[str, ...]
    antenna_positions: np.ndarray
    antenna_diameters: np.ndarray
    """Dish diameters (m); DSA-110's 4.65 m where the file does not say."""
    latitude_deg: float
    longitude_deg: float
    altitude_m: float
    telescope_name: str
    integration_time_s: np.ndarray
    pointing_dec_rad: float | None
    old_layout: bool
    vis_shape: tuple[int, ...]

    @property
    def n_blts(self) -> int:
        return len(self.times_jd)

    @property
    def grid_channels(self) -> np.ndarray:
        """Channel positions on the instrument grid (``48 s + k``; float, integral if on grid)."""
        return C.grid_channel_index(self.freqs_hz)


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return value.tobytes().decode()
    return str(value)


def read_header(path: Path | str) -> SubbandHeader:
    """Read and check the header of a subband file; raise InvalidSubbandError with the reason.

    Checks: opens as HDF5; has the UVH5 header fields and the visibility dataset; array
    lengths agree with Nblts/Nfreqs/Npols and the visibility shape.
    """
    path = Path(path)
    parsed = parse_subband_name(path.name)
    try:
        fh = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise InvalidSubbandError(f"{path.name}: not a readable HDF5 file ({exc})") from exc
    with fh:
        if "Header" not in fh or "Data" not in fh:
            raise InvalidSubbandError(
                f"{path.name}: HDF5 but not UVH5 (groups found: {sorted(fh.keys())}; expected Header, Data)"
            )
        h, d = fh["Header"], fh["Data"]
        missing = [k for k in REQUIRED_HEADER if k not in h] + [f"Data/{k}" for k in REQUIRED_DATA if k not in d]
        if missing:
            raise InvalidSubbandError(f"{path.name}: UVH5 header lacks {', '.join(missing)}")
        try:
            n_blts, n_freqs, n_pols = int(h["Nblts"][()]), int(h["Nfreqs"][()]), int(h["Npols"][()])
            freqs = np.asarray(h["freq_array"][()], dtype=float).reshape(-1)
            vis_shape = tuple(d["visdata"].shape)
            chan_width = np.asarray(h["channel_width"][()], dtype=float).reshape(-1) if "channel_width" in h else None
            extra = h.get("extra_keywords", {})
            dec = float(extra["phase_center_dec"][()]) if "phase_center_dec" in extra else None
            names = (
                tuple(_text(n) for n in h["antenna_names"][()])
                if "antenna_names" in h
                else tuple(str(n) for n in h["antenna_numbers"][()])
            )
            header = SubbandHeader(
                path=path,
                subband=parsed[1] if parsed else None,
                freqs_hz=freqs,
                channel_width_hz=float(np.abs(chan_width[0])) if chan_width is not None else np.nan,
                ant1=np.asarray(h["ant_1_array"][()], dtype=np.int64),
                ant2=np.asarray(h["ant_2_array"][()], dtype=np.int64),
                times_jd=np.asarray(h["time_array"][()], dtype=float),
                polarizations=tuple(int(p) for p in h["polarization_array"][()]),
                antenna_numbers=np.asarray(h["antenna_numbers"][()], dtype=np.int64),
                antenna_names=names,
                antenna_positions=np.asarray(h["antenna_positions"][()], dtype=float),
                antenna_diameters=(
                    np.asarray(h["antenna_diameters"][()], dtype=float)
                    if "antenna_diameters" in h
                    else np.full(len(h["antenna_numbers"][()]), C.DISH_DIAMETER_M)
                ),
                latitude_deg=float(h["latitude"][()]),
                longitude_deg=float(h["longitude"][()]),
                altitude_m=float(h["altitude"][()]),
                telescope_name=_text(h["telescope_name"][()]) if "telescope_name" in h else "unknown",
                integration_time_s=(
                    np.asarray(h["integration_time"][()], dtype=float)
                    if "integration_time" in h
                    else np.full(n_blts, C.INTEGRATION_TIME_S)
                ),
                pointing_dec_rad=dec,
                old_layout="version" not in h,
                vis_shape=vis_shape,
            )
        except (KeyError, OSError, ValueError, TypeError) as exc:
            raise InvalidSubbandError(f"{path.name}: unreadable UVH5 header ({exc})") from exc
    problems = []
    if len(freqs) != n_freqs:
        problems.append(f"freq_array has {len(freqs)} channels, Nfreqs={n_freqs}")
    for name, arr in (("ant_1_array", header.ant1), ("ant_2_array", header.ant2), ("time_array", header.times_jd)):
        if len(arr) != n_blts:
            problems.append(f"{name} has {len(arr)} entries, Nblts={n_blts}")
    expected = (n_blts, 1, n_freqs, n_pols) if len(vis_shape) == 4 else (n_blts, n_freqs, n_pols)
    if vis_shape != expected:
        problems.append(f"Data/visdata has shape {vis_shape}, header implies {expected}")
    if len(header.polarizations) != n_pols:
        problems.append(f"polarization_array has {len(header.polarizations)} entries, Npols={n_pols}")
    if problems:
        raise InvalidSubbandError(f"{path.name}: inconsistent UVH5 file: " + "; ".join(problems))
    return header


def _as_complex(raw: np.ndarray) -> np.ndarray:
    if raw.dtype.names:  # compound (r, i) types, e.g. pyuvdata's integer visibilities
        return raw["r"].astype(np.float32) + 1j * raw["i"].astype(np.float32)
    return raw


def read_data(header: SubbandHeader) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visibilities (complex64), flags (bool) and nsamples (float32) of one file,
    each of shape (Nblts, Nfreqs, Npols) in file channel order."""
    with h5py.File(header.path, "r") as fh:
        d = fh["Data"]
        try:
            vis = _as_complex(d["visdata"][()])
            flags = d["flags"][()] if "flags" in d else np.zeros(header.vis_shape, bool)
            nsamples = d["nsamples"][()] if "nsamples" in d else np.ones(header.vis_shape, np.float32)
        except OSError as exc:
            raise InvalidSubbandError(f"{header.path.name}: data unreadable ({exc})") from exc
    shape = (header.n_blts, len(header.freqs_hz), len(header.polarizations))
    return (
        vis.reshape(shape).astype(np.complex64, copy=False),
        flags.reshape(shape).astype(bool, copy=False),
        nsamples.reshape(shape).astype(np.float32, copy=False),
    )
