"""False variables and false new sources over a stretch of simulated sky with constant sources,
through the whole platform (``dsa110-sim``, then ``dsa110-stream --once``: calibration solved
on the calibrator transit and carried to the others, flagging, peeling, imaging, forced
photometry, association, mosaics, variability).

The array points at the declination of the calibrator 2203+626 (+62.7 deg, 2.75 Jy); its
transit is observed first and solved, and the stretch (``--hours``) is centred on Cas A's
transit 80 minutes later, when Cas A (1,600 Jy) passes 3.9 deg from the beam centre, in the
first sidelobe. The array is the demo's scaled-down one (20 antennas, 64 channels) over whole
observations (24 integrations: each source drifts 0.6 deg through the beam), at the SEFD that
gives it the full array's image noise (``--sefd-jy``). The sky is the realistic one
(``dsa110-sim --sky realistic``: counts to the sidelobes, the VLA calibrators where they are,
each dish's own sidelobes) and every source in it is constant: every source flagged variable is
a false variable, every new source a false one. Over a day (``--hours 24 --first 1``) the
platform solves on each calibrator that transits, as it would on the real sky; at +62.7 deg the
VLA list holds none usable (compact, 1 Jy apparent) from 0014+612 to 1206+642, 11.8 h of right
ascension, so with the default 6 h validity the gap's second half arrives before a solution
reaches it: those windows fail at first, and at the end of the pass the late-calibration
sensor runs them again with the solution of the calibrator after them. Variants: with
and without the A-team in the sky, with and without peeling (and peeling only outside the
image, leaving the image's bright sources to CLEAN).

Prints per variant: the observations, how many failed and why, how many were calibrated by a
calibrator that transited after them; the images' rms over the thermal expectation (by hour
too, over more than three hours), the number of sources with a light curve, the variables (their fraction, and the
nearest source brighter than 1 Jy to each) and the new sources (confirmed by a second look, and
the candidates seen once).

    python bench/false_variables.py [--hours 1] [--variants "a-team+peeling,a-team+no peeling"]
    python bench/false_variables.py --hours 24 --first 1 --root /scratch/day   # a whole day (280
                                                    # observations per variant), resumable
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

VARIANTS = {
    "a-team+peeling": ([], []),
    "a-team+peeling outside the image only": ([], ["--peel-in-field-above-jy", "inf"]),
    "a-team+no peeling": ([], ["--no-peeling"]),
    "no a-team+peeling": (["--no-a-team"], []),
    "no a-team+no peeling": (["--no-a-team"], ["--no-peeling"]),
}
CALIBRATOR = "2203+626"
CHANNELS_PER_SUBBAND = 4


def full_array_sefd_jy(antennas: int, channels: int = 16 * CHANNELS_PER_SUBBAND, integrations: int | None = None
                       ) -> float:
    """The SEFD (Jy) at which ``antennas`` dishes with ``channels`` channels over
    ``integrations`` (default: an observation's) have the image noise of the full array (96
    dishes, 768 channels, a whole observation) at the real 6,500 Jy."""
    from dsa_assets import constants as C

    def visibilities(n, channels, integrations):
        return n * (n - 1) / 2 * channels * integrations

    full = visibilities(96, 16 * C.CHANNELS_PER_SUBBAND, C.N_INTEGRATIONS)
    return C.SEFD_JY * (visibilities(antennas, channels, integrations or C.N_INTEGRATIONS) / full) ** 0.5


def pick_variants(parser: argparse.ArgumentParser, text: str, variants: dict) -> list[str]:
    """The comma-separated variant names of ``text``, each one of ``variants`` (else a usage error)."""
    chosen = [v.strip() for v in text.split(",")]
    if unknown := set(chosen) - set(variants):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {list(variants)}")
    return chosen


def simulate(directory: Path, hours: float, antennas: int, sefd_jy: float, sim_flags: list[str],
             first: int | None = None) -> None:
    """The calibrator's transit, then ``hours`` of observations centred on Cas A's transit (or
    beginning ``first`` observations after the calibrator's)."""
    from astropy.time import Time

    from dsa_assets import constants as C
    from dsa_assets.calibrators import A_TEAM, by_name, transit_start
    from dsa_assets.geometry import apparent_dec_rad, default_site

    cal = by_name(CALIBRATOR)
    near = datetime(2026, 9, 1, tzinfo=UTC)
    dec = apparent_dec_rad(cal.ra_deg, cal.dec_deg, Time(near), default_site())
    duration = C.N_INTEGRATIONS * C.INTEGRATION_TIME_S
    cal_start = transit_start(cal, near, dec, duration)
    n = max(2, round(hours * 3600 / C.OBSERVATION_CADENCE_S))
    cas_a = transit_start(A_TEAM[0], cal_start, dec, duration)
    if first is None:
        first = round((cas_a - cal_start).total_seconds() / C.OBSERVATION_CADENCE_S) - n // 2
    common = ["--output-dir", str(directory), "--start", cal_start.strftime("%Y-%m-%dT%H:%M:%S"),
              "--calibrator", CALIBRATOR, "--antennas", str(antennas), "--integrations", str(C.N_INTEGRATIONS),
              "--channels-per-subband", str(CHANNELS_PER_SUBBAND), "--sefd-jy", f"{sefd_jy:.1f}", *sim_flags]
    for count, transit_observation in ((1, 0), (n, -first)):
        subprocess.run([sys.executable, "-m", "dsa_assets.sim.cli", *common, "--n-observations", str(count),
                        "--calibrator-observation", str(transit_observation)], check=True, stdout=subprocess.DEVNULL)


def run_platform(incoming: Path, output: Path, stream_flags: list[str], log: Path, sefd_jy: float,
                 append: bool = False) -> int:
    """``dsa110-stream --once`` over ``incoming``; its thermal-noise expectation at the
    simulated ``sefd_jy``. Its exit status: not 0 when some windows failed (their reasons are
    in ``log``), whose images are then missing from the report."""
    with log.open("a" if append else "w") as out:
        return subprocess.run([sys.executable, "-m", "dsa_assets.service.cli", "--input-dir", str(incoming),
                               "--output-dir", str(output), "--sefd-jy", f"{sefd_jy:.1f}", "--stable-seconds", "0",
                               "--enable-calibration-solving",
                               "--enable-photometry", "--enable-mosaic-creation", "--mosaic-timeout", "0",
                               "--reference-catalogue", str(incoming / "sky_catalogue.csv"), "--simulated", "--once",
                               *stream_flags], stdout=out, stderr=subprocess.STDOUT).returncode


def report(name: str, incoming: Path, output: Path) -> None:
    import numpy as np

    from dsa_assets import catalogue
    from dsa_assets.products import ProductsDB, calibration_assignments, observation_images
    from dsa_assets.streaming.queue import SubbandQueue

    db = ProductsDB(output / "state" / "products.sqlite3", read_only=True)
    images = db.rows(observation_images)
    rot = np.array([r["rms_over_thermal"] for r in images])
    stats = db.source_statistics()
    variables = [r for r in stats if r["variable"]]
    new = db.new_sources()
    candidates = db.new_source_candidates()
    sky = catalogue.read(incoming / "sky_catalogue.csv")
    bright = [s for s in sky if s.flux_jy > 1.0]
    where = {s.name: (s.ra_deg, s.dec_deg) for s in sky}
    where.update({s["name"]: (s["ra_deg"], s["dec_deg"]) for s in db.uncatalogued_sources()})
    print(f"{name}: {len(images)} images, rms / thermal median {np.median(rot):.2f} (max {rot.max():.2f}); "
          f"{len(stats)} light curves, {len(variables)} variable ({len(variables) / max(len(stats), 1):.2%}), "
          f"{len(new)} new sources ({len(candidates)} candidates seen once)")
    observations = SubbandQueue(output / "state" / "queue.sqlite3").groups()
    failed = Counter(g.error.splitlines()[0][:150] if g.error else "no reason" for g in observations
                     if g.state == "failed")
    # a negative offset: the window was calibrated by a calibrator that transited after it
    late = [-a["offset_s"] / 3600 for a in db.rows(calibration_assignments) if (a["offset_s"] or 0) < 0]
    print(f"    {len(observations)} observations, {sum(failed.values())} failed; {len(late)} calibrated by a "
          f"later calibrator's solution" + (f" (up to {max(late):.1f} h before its transit)" if late else ""))
    for reason, count in failed.most_common(5):
        print(f"    failed x{count}: {reason}")
    hours = sorted({r["group_id"][:13] for r in images})
    if len(hours) > 3:  # a long run: where in the sky the images were worse
        by_hour = [np.array([r["rms_over_thermal"] for r in images if r["group_id"].startswith(h)]) for h in hours]
        print("    rms / thermal by hour, median (max): " + "; ".join(
            f"{h[11:]}h {np.median(x):.1f} ({x.max():.1f})" for h, x in zip(hours, by_hour)))
    for s in new[:12]:
        d = catalogue.separation_deg(bright, s["ra_deg"], s["dec_deg"])
        near = f"; {d.min():.2f} deg from {bright[int(np.argmin(d))].name}" if len(d) else ""
        print(f"    new {s['name']}{near}")
    for r in variables[:12]:
        d = catalogue.separation_deg(bright, *where[r["name"]]) if r["name"] in where else []
        near = f"; {d.min():.2f} deg from {bright[int(np.argmin(d))].name}" if len(d) else ""
        print(f"    {r['name']}: {r['n']} epochs, mean {r['mean_flux_jy'] * 1e3:.1f} mJy, eta {r['eta']:.1f}, "
              f"V {r['v']:.3f}{near}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scratch", default=os.environ.get("DSA110_BENCH_DIR"))
    p.add_argument("--hours", type=float, default=1.0)
    p.add_argument("--first", type=int, help="begin this many observations after the calibrator's (default: the "
                   "stretch centred on Cas A's transit)")
    p.add_argument("--antennas", type=int, default=20, help="the demo's scaled-down array")
    p.add_argument("--sefd-jy", type=float, help="default: the full array's image noise (see full_array_sefd_jy)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--root", help="work in this directory and keep it: the same command again continues a run "
                   "that stopped (the simulation is kept; the platform resumes from its queue and Dagster's storage)")
    p.add_argument("--stream-flags", default="", help="more dsa110-stream options for every variant, e.g. "
                   "'--peel-in-field-above-jy 0.5' (shown after the variant's name)")
    args = p.parse_args()
    extra = shlex.split(args.stream_flags)
    chosen = pick_variants(p, args.variants, VARIANTS)
    sefd = args.sefd_jy or full_array_sefd_jy(args.antennas)
    where = "centred on Cas A's transit" if args.first is None else f"from observation {args.first} after the calibrator's"
    print(f"{args.hours:g} h {where}, {args.antennas} antennas, SEFD {sefd:.0f} Jy")
    resumable = args.root is not None
    root = Path(args.root) if resumable else Path(tempfile.mkdtemp(prefix="dsa110-false-variables-", dir=args.scratch))
    failed = 0
    try:
        skies = {}
        for name in chosen:
            sim_flags, stream_flags = VARIANTS[name]
            key = " ".join(sim_flags) or "a-team"
            if key not in skies:
                skies[key] = root / ("sky-" + key.replace("--", "").replace(" ", "-"))
                once(skies[key], partial(simulate, hours=args.hours, antennas=args.antennas, sefd_jy=sefd,
                                          sim_flags=sim_flags, first=args.first))
            work = root / "-".join(name.replace("+", " ").split())
            once(work / "in", partial(shutil.copytree, skies[key]))
            # a resumed run appends to its log: what the stopped one did stays readable
            if run_platform(work / "in", work / "out", [*stream_flags, *extra], work / "stream.log", sefd,
                            append=resumable):
                failed = 1
                print(f"{name}: some windows failed (reasons in {work / 'stream.log'}); the report covers the rest")
            report(" ".join([name, *extra]), work / "in", work / "out")
            if not resumable:
                shutil.rmtree(work / "in")
        return failed
    finally:
        if not (args.keep or resumable):
            shutil.rmtree(root, ignore_errors=True)


def once(directory: Path, make) -> None:
    """``make(directory)`` unless an earlier run completed it; a directory it left unfinished
    (no ``.complete`` marker) is made again from scratch."""
    if (directory / ".complete").exists():
        return
    shutil.rmtree(directory, ignore_errors=True)
    make(directory)
    (directory / ".complete").touch()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
