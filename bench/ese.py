"""ESE and trend search (dsa_assets.ese): false alarms on constant sources, recovery of
injected events, at the thresholds the module uses.

Light curves of a year: a source measured 7 times a day (its transit through the beam) on 90%
of days, flux density 50 mJy with per-epoch errors for a signal-to-noise of ``--snr``, and
noise as stated (or 20% larger than stated: errors a little optimistic). ESEs injected with
depths 5-30%, durations 5-90 days, caustic peaks of half the depth (the template's shape) or
none (a plain dip, unlike the template); trends of 5-20% a year.

    python bench/ese.py [--sources 2000] [--snr 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dsa_assets import ese

DAY = 86400.0


def epochs(rng, days: int = 365) -> np.ndarray:
    kept = np.flatnonzero(rng.uniform(size=days) < 0.9)
    return np.concatenate([d * DAY + 43200.0 + 309.0 * np.arange(7) for d in kept])


def light_curve(rng, t, snr: float, factor=None, noise_over_stated: float = 1.0):
    flux = 0.05 * (np.ones_like(t) if factor is None else factor)
    err = np.full_like(t, 0.05 / snr)
    return flux + rng.normal(0, err * noise_over_stated), err


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=int, default=2000)
    p.add_argument("--snr", type=float, default=10.0, help="per-epoch signal-to-noise")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    n = args.sources
    print(f"{n} light curves per case, a year of epochs (7 a day on 90% of days), per-epoch S/N {args.snr:.0f}; "
          f"thresholds: ESE {ese.ESE_THRESHOLD}, trend {ese.TREND_THRESHOLD}")
    t0 = time.perf_counter()
    for label, over in (("constant, errors right", 1.0), ("constant, noise 1.2x stated", 1.2)):
        scores = [ese.search(t, *light_curve(rng, t, args.snr, noise_over_stated=over))
                  for t in (epochs(rng) for _ in range(n))]
        e = np.array([s.ese_score for s in scores])
        tr = np.array([s.trend_score for s in scores])
        print(f"{label:30s} ESE false alarms {np.mean(e >= ese.ESE_THRESHOLD):.4f} (99.9th percentile score "
              f"{np.percentile(e, 99.9):.1f}); trend false alarms {np.mean(tr >= ese.TREND_THRESHOLD):.4f} "
              f"(99.9th {np.percentile(tr, 99.9):.1f})")
    per_curve = (time.perf_counter() - t0) / (2 * n)
    print(f"search time per light curve: {per_curve * 1e3:.1f} ms")
    print("injected ESEs: caustics | depth | duration (d) | recovered | t0 within a quarter duration")
    for caustic in (ese.CAUSTIC, 0.0):
        for depth in (0.05, 0.1, 0.3):
            for width in (5.0, 20.0, 90.0):
                found, placed = 0, 0
                for _ in range(n // 10):
                    t = epochs(rng)
                    centre = rng.uniform(t[0] + width * DAY, t[-1] - width * DAY)
                    s = ese.search(t, *light_curve(rng, t, args.snr, ese.injected(t, centre, width, depth, caustic)))
                    found += s.ese_candidate
                    placed += s.ese_candidate and abs(s.ese_t0_unix - centre) <= 0.25 * width * DAY
                print(f"  {caustic:8.1f} | {depth:5.2f} | {width:12.0f} | {found / (n // 10):9.3f} | "
                      f"{placed / max(found, 1):.3f}")
    print("injected trends: per year | recovered")
    for per_year in (0.05, 0.1, 0.2):
        found = 0
        for _ in range(n // 10):
            t = epochs(rng)
            s = ese.search(t, *light_curve(rng, t, args.snr, 1.0 + per_year * (t - t.mean()) / (365.25 * DAY)))
            found += s.trend
        print(f"  {per_year:8.2f} | {found / (n // 10):.3f}")


if __name__ == "__main__":
    main()
