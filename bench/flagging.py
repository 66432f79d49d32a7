"""RFI flaggers compared on a simulated observation with injected RFI: recall, false positives
and time, for AOFlagger (packaged DSA-110 strategy and AOFlagger's default) and CASA flagdata
(tfcrop, rflag). Results are in the README.

The observation has every channel (48 per subband, 768 in all) and 24 integrations, like the
real ones, and a bright sky (random sources plus 3C286 transiting, unless ``--no-calibrator``). Into its
cross-correlations go: three channels of persistent narrowband RFI, two channels of
intermittent RFI (a third of the integrations), and one broadband burst (one integration, all
channels), each at ``--snr`` times the per-visibility noise, with random phases. Times are
scaled to the full 96-antenna array by the number of baselines.

    python bench/flagging.py [--antennas 32] [--snr 5 20 100] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

METHODS = (("aoflagger", "dsa110"), ("aoflagger", "generic"), ("tfcrop", ""), ("rflag", ""))


def inject_rfi(ms: Path, snr: float, rng: np.random.Generator) -> np.ndarray:
    """Add RFI to the cross-correlations of ``ms``; returns the (row, channel, pol) truth mask."""
    from casacore.tables import table

    from dsa_assets import constants as C

    sigma = C.SEFD_JY / np.sqrt(2 * C.CHANNEL_WIDTH_HZ * C.INTEGRATION_TIME_S)
    with table(str(ms), readonly=False, ack=False) as tb:
        data = tb.getcol("DATA")
        cross = tb.getcol("ANTENNA1") != tb.getcol("ANTENNA2")
        t_index = np.unique(tb.getcol("TIME"), return_inverse=True)[1]
        n_t, n_chan = t_index.max() + 1, data.shape[1]
        mask = np.zeros(data.shape, bool)
        mask[cross, n_chan // 3 : n_chan // 3 + 3] = True  # persistent narrowband
        intermittent = np.isin(t_index, rng.choice(n_t, n_t // 3, replace=False)) & cross
        mask[intermittent, 2 * n_chan // 3 : 2 * n_chan // 3 + 2] = True
        mask[cross & (t_index == n_t // 2)] = True  # broadband burst
        data[mask] += snr * sigma * np.exp(2j * np.pi * rng.uniform(size=mask.sum()))
        tb.putcol("DATA", data)
    return mask


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--antennas", type=int, default=32)
    p.add_argument("--snr", type=float, nargs="+", default=[5.0, 20.0, 100.0])
    p.add_argument("--no-calibrator", action="store_true", help="an ordinary field: no 15 Jy calibrator")
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    args = p.parse_args()

    from casacore.tables import table

    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig, calibrator_field
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.flagging import FlaggingConfig, FlaggingStage

    root = Path(tempfile.mkdtemp(prefix="dsa110-flagging-", dir=args.scratch))
    try:
        config, start = calibrator_field(SimConfig(n_antennas=args.antennas, n_sources=8, seed=4),
                                         "3C286", datetime(2026, 2, 1, tzinfo=UTC))
        config = replace(config, timestamp_jitter=False, calibrator=None if args.no_calibrator else config.calibrator)
        group = CorrelatorSimulator(config).write_observation(root / "in", start)
        ms = ConversionStage(ConversionConfig(output_dir=root / "out", scratch_dir=root / "scratch")).execute(
            group_id=group.stamp, hdf5_files=group.files).ms_path
        n_bl = args.antennas * (args.antennas - 1) / 2
        scale = 96 * 95 / 2 / n_bl
        print(f"{args.antennas} antennas, 768 channels, 24 integrations, {'no calibrator' if args.no_calibrator else '3C286'}"
              f" in the field; times scaled x{scale:.1f} to 96 antennas\n")
        print(f"{'snr':>5s} {'method':18s} {'recall':>7s} {'false+':>7s} {'time_s':>7s} {'full_s':>7s}")
        for snr in args.snr:
            for mode, strategy in METHODS:
                work = root / "work.ms"
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(ms, work)
                truth = inject_rfi(work, snr, np.random.default_rng(int(snr)))
                cfg = FlaggingConfig(rfi=mode, aoflagger_strategy=strategy or "dsa110")
                t = time.perf_counter()
                FlaggingStage(cfg).execute(work)
                seconds = time.perf_counter() - t
                with table(str(work), ack=False) as tb:
                    flags = tb.getcol("FLAG")
                recall = flags[truth].mean()
                false_positive = flags[~truth].mean()
                name = mode + (f"/{strategy}" if strategy else "")
                print(f"{snr:5.0f} {name:18s} {recall:7.3f} {false_positive:7.3f} {seconds:7.1f} {seconds * scale:7.0f}",
                      flush=True)
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
