"""Association across epochs: purity and completeness against the truth, and time per image.

A field of persistent sources (N(>S) ~ S^-0.9 from 3 sigma, the brighter ones in the
reference catalogue), close pairs 1.2-2 beams apart, and transients shining for 1-4 epochs,
detected above 5 sigma in each epoch with Condon's position errors and an offset shared by
the image (moving from epoch to epoch; the errors state a tenth of the beam per axis, as the
photometry stage does, while the true offsets are that or twice it); every epoch associated
and recorded through ProductsDB as the photometry asset does (dsa_assets.sim.detections).

    python bench/association.py [--sources 2000] [--epochs 100] [--beam 50] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dsa_assets.products import ProductsDB
from dsa_assets.sim import detections as simulated


def run(n_sources: int, n_epochs: int, beam: float, systematic: float, scratch: Path, seed: int = 0):
    truth = simulated.sky(n_sources=n_sources, n_pairs=n_sources // 20, n_transients=n_sources // 40, n_epochs=n_epochs,
                          field_radius_deg=2.5, beam_arcsec=beam, seed=seed)
    epochs = simulated.epochs(truth, n_epochs=n_epochs, beam_arcsec=beam, systematic_arcsec=systematic, seed=seed + 1,
                              stated_systematic_arcsec=0.1 * beam)
    db = ProductsDB(scratch / f"association-{seed}.sqlite")
    t = time.perf_counter()
    simulated.associate_epochs(db, truth, epochs, beam_arcsec=beam)
    elapsed = time.perf_counter() - t
    return simulated.scores(db, truth, epochs), elapsed / n_epochs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--beam", type=float, default=50.0, help="restoring beam FWHM (arcsec)")
    p.add_argument("--scratch", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        print(f"{args.sources} sources (+{args.sources // 20} close companions, {args.sources // 40} transients), "
              f"{args.epochs} epochs, beam {args.beam:.0f} arcsec")
        print("true offsets (arcsec) | detections | identities | purity | completeness | transients own/detected | s per image")
        for systematic in (0.1 * args.beam, 0.2 * args.beam):
            s, per_image = run(args.sources, args.epochs, args.beam, systematic, Path(tmp))
            print(f"{systematic:21.1f} | {s.n_detections:10d} | {s.n_identities:10d} | {s.purity:6.4f} | "
                  f"{s.completeness:12.4f} | {s.transients_found:>10d}/{s.transients_detected:<12d} | {per_image:.3f}")


if __name__ == "__main__":
    main()
