"""Simulating one observation of the realistic sky: the time and memory of the correlator
simulator (``dsa_assets.sim``), full scale by default.

Prints the sources put into the observation, the wall time and the peak memory, for the
compiled prediction (``dsa_assets/stages/point_sources.py``) and, with ``--reference``, for one source
at a time in numpy (the prediction before it), on one subband scaled to sixteen.

    python bench/simulator.py                  # 96 antennas, 24 integrations, 48 channels
    python bench/simulator.py --antennas 24 --integrations 4 --channels-per-subband 4
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def numpy_seconds_per_subband(sim, sources, times, s0) -> float:
    """One subband predicted one source at a time in numpy: exp per visibility (the old way)."""
    from dsa_assets import constants as C
    from dsa_assets import geometry

    freqs = C.subband_frequencies_hz(0, sim.channels)
    b = geometry.baseline_vectors(sim.ecef, sim.ant1, sim.ant2).T / geometry.SPEED_OF_LIGHT_M_S
    ra = np.radians([s.ra_deg for s in sources])
    dec = np.radians([s.dec_deg for s in sources])
    unit = geometry.icrs_unit_vectors(ra, dec, times, sim.location)
    vis = np.zeros((len(times) * b.shape[1], len(freqs)), dtype=np.complex128)
    t = time.perf_counter()
    for k, src in enumerate(sources):
        tau = ((unit[k] - s0) @ b).reshape(-1)
        amp = np.repeat(geometry.airy_power_beam((unit[k] @ s0.T).diagonal()[:, None], freqs[None, :])
                        * src.flux_at(freqs)[None, :], b.shape[1], axis=0)
        vis += amp * np.exp(2j * np.pi * tau[:, None] * freqs[None, :])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--antennas", type=int, default=96)
    ap.add_argument("--integrations", type=int, default=24)
    ap.add_argument("--channels-per-subband", type=int, default=48)
    ap.add_argument("--reference", action="store_true", help="also time the numpy prediction (slow at full scale)")
    args = ap.parse_args()

    import astropy.units as u
    from astropy.time import Time

    from dsa_assets import constants as C
    from dsa_assets import geometry
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig

    config = replace(SimConfig(n_antennas=args.antennas, n_integrations=args.integrations,
                               channels_per_subband=args.channels_per_subband),
                     sky="realistic", a_team=True, sidelobe_errors=0.1, timestamp_jitter=False)
    sim = CorrelatorSimulator(config)
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    t = time.perf_counter()
    sky = sim.sky()
    sky_s = time.perf_counter() - t
    root = Path(tempfile.mkdtemp(prefix="bench-sim-", dir=os.environ.get("DSA110_BENCH_DIR")))
    try:
        t = time.perf_counter()
        group = sim.write_observation(root, start)
        wall = time.perf_counter() - t
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        size_gb = sum(f.stat().st_size for f in group.files) / 1e9
        print(f"sky strip: {len(sky)} sources in {sky_s:.1f} s; observation: {len(group.truth.sources)} sources, "
              f"{args.antennas} antennas x {args.integrations} integrations x {16 * args.channels_per_subband} channels")
        print(f"compiled prediction, all subbands written: {wall:.0f} s ({wall / C.OBSERVATION_CADENCE_S:.2f} of the "
              f"cadence), peak memory {peak_gb:.2f} GB, {size_gb:.2f} GB of files")
        if args.reference:
            times = Time(start) + (np.arange(args.integrations) + 0.5) * C.INTEGRATION_TIME_S * u.s
            s0 = geometry.meridian_unit_vectors(config.pointing_dec_rad, times, sim.location)
            ref = 16 * numpy_seconds_per_subband(sim, group.truth.sources, times, s0)
            print(f"numpy, one source at a time (no smearing): {ref:.0f} s for the sixteen subbands' sky "
                  f"= {ref / wall:.1f} x the compiled observation")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
