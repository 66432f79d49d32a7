"""Peeling the A-team: an observation with Cas A 3.3 deg from the beam centre (its transit at
a pointing of Dec +55.5), the realistic sky around it and each dish's own sidelobes (10% rms
differences from the Airy model, ``--sidelobe-errors``), imaged with nothing subtracted, with
Cas A's model subtracted as predicted, and peeled with its own antenna gains, against the same
observation without the A-team (same sky, dishes and noise otherwise).

Prints per variant: the image's robust rms (mJy/beam), its ratio to the field without the
A-team (target: within 2x), and what is left of Cas A in the visibilities.

    python bench/peeling.py                 # 48 antennas, 8 integrations, 8 channels/subband
    python bench/peeling.py --full-scale    # 96 antennas, 24 integrations, 48 channels (long)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def casa_peel(ms: Path, source, scratch: Path) -> str:
    """CASA's way: the source's model (with beam and smearing) in MODEL_DATA, ``gaincal`` (one
    amplitude-and-phase gain per antenna, polarisation and integration over the band: CASA's
    gain solutions span its spectral window, here the whole band), the model corrupted by those
    gains (``calibrater.corrupt``) and subtracted as ``uvsub`` does."""
    import casatools
    from casacore.tables import table
    from casatasks import gaincal

    from dsa_assets.stages.gain_solutions import choose_refant
    from dsa_assets.stages.sky_model import predict_model

    predict_model(ms, [source])
    caltable = str(scratch / "casa-peel.G")
    gaincal(vis=str(ms), caltable=caltable, gaintype="G", calmode="ap", solint="int", refant=choose_refant(ms),
            minsnr=0.0)
    cb = casatools.calibrater()
    cb.open(str(ms), addcorr=False, addmodel=False)
    cb.setapply(table=caltable)
    cb.corrupt()
    cb.close()
    with table(str(ms), readonly=False, ack=False) as tb:
        tb.putcol("DATA", tb.getcol("DATA") - tb.getcol("MODEL_DATA"))
    return "gaincal + corrupt + uvsub"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full-scale", action="store_true")
    ap.add_argument("--antennas", type=int, default=48)
    ap.add_argument("--integrations", type=int, default=8)
    ap.add_argument("--channels-per-subband", type=int, default=8)
    ap.add_argument("--offset-deg", type=float, default=3.3, help="Cas A's distance from the pointing at transit")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=(), metavar="WORD",
                    help="run only the variants whose label holds one of these words (the reference always runs)")
    ap.add_argument("--sidelobe-errors", type=float, default=0.1,
                    help="rms of each dish's own response in the sidelobes (the simulator's sidelobe_errors)")
    args = ap.parse_args()

    from astropy.io import fits

    from dsa_assets import constants as C
    from dsa_assets.calibrators import A_TEAM, transit_start
    from dsa_assets.catalogue import CatalogueSource
    from dsa_assets.sim.correlator import CorrelatorSimulator, SimConfig
    from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
    from dsa_assets.stages.imaging import ImagingConfig, ImagingStage, robust_rms
    from dsa_assets.stages.peeling import PeelingConfig, bright_sources, peel, remaining_fraction

    cas_a = A_TEAM[0]
    dec = np.radians(cas_a.dec_deg - args.offset_deg)
    base = SimConfig() if args.full_scale else SimConfig(n_antennas=args.antennas, n_integrations=args.integrations,
                                                         channels_per_subband=args.channels_per_subband)
    base = replace(base, sky="realistic", gains=False, pointing_dec_rad=dec, seed=args.seed, timestamp_jitter=False,
                   sidelobe_errors=args.sidelobe_errors)
    start = transit_start(cas_a, datetime(2026, 3, 1, tzinfo=UTC), dec, base.n_integrations * C.INTEGRATION_TIME_S)
    root = Path(tempfile.mkdtemp(prefix="bench-peeling-", dir=os.environ.get("DSA110_BENCH_DIR")))
    try:
        ms = {}
        for label, a_team in (("with", True), ("without", False)):
            t = time.perf_counter()
            group = CorrelatorSimulator(replace(base, a_team=a_team)).write_observation(root / label, start)
            ms[label] = ConversionStage(ConversionConfig(output_dir=root / f"ms-{label}")).execute(
                group_id=group.stamp, hdf5_files=group.files).ms_path
            print(f"simulated and converted the field {label} the A-team: {len(group.truth.sources)} sources, "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
        # the reference catalogue the platform would pass: the simulated sky, whose sources
        # above 10 mJy apparent join the model each peeled source's gains are solved against
        sky = [CatalogueSource(s.name, s.ra_deg, s.dec_deg, s.flux_jy, s.spectral_index) for s in group.truth.sources]
        sources = bright_sources(ms["with"], (), PeelingConfig())
        print("to peel:", ", ".join(s.name for s in sources))
        variants = {"field without the A-team": (ms["without"], None),
                    "nothing subtracted": (ms["with"], None),
                    "model subtracted (unit gains)": (ms["with"], PeelingConfig(solve_gains=False)),
                    "peeled (per-antenna gains per integration over the band)": (ms["with"],
                                                                                 PeelingConfig(solution_bands=1)),
                    "peeled (per-antenna gains per integration and subband)": (ms["with"],
                                                                               PeelingConfig(solution_bands=16)),
                    "CASA: gaincal over the band, corrupt, uvsub": (ms["with"], "casa")}
        imaging = ImagingStage(ImagingConfig(output_dir=root / "images", scratch_dir=root / "scratch"))
        rows = []
        if args.only:
            variants = {k: v for i, (k, v) in enumerate(variants.items())
                        if i == 0 or any(word in k for word in args.only)}
        for k, (label, (path, cfg)) in enumerate(variants.items()):
            work = root / f"variant{k}.ms"
            shutil.copytree(path, work)
            peeled, t = [], time.perf_counter()
            left = ""
            if cfg == "casa":
                for source in sources:
                    before = remaining_fraction(work, source)
                    casa_peel(work, source, root)
                    left += f"{source.name} {before:.3f} -> {remaining_fraction(work, source):.4f}"
            elif cfg is not None:
                peeled = peel(work, sources, "DATA", cfg, sky)
            seconds = time.perf_counter() - t
            result = imaging.execute(group_id=f"2026-03-01T00:00:{k:02d}", ms_path=work)
            with fits.open(result.images["residual"]) as hdul:
                rms = robust_rms(np.squeeze(hdul[0].data))
            left = left or "; ".join(f"{p.name} {p.remaining_before:.3f} -> {p.remaining_after:.4f}" for p in peeled)
            rows.append((label, rms, seconds, left))
            shutil.rmtree(work)
        reference = rows[0][1]
        print("\n| variant | residual rms (mJy/beam) | / field without | subtraction (s) | left of each source |")
        print("|---|---|---|---|---|")
        for label, rms, seconds, left in rows:
            print(f"| {label} | {rms * 1e3:.2f} | {rms / reference:.2f} | {seconds:.1f} | {left or '-'} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
