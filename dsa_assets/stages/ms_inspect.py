"""Reading a Measurement Set back with casatools (used by checks and tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
