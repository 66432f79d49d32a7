"""``dsa110-sim``: write simulated DSA-110 observations exactly as the correlator does."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime

from .. import constants as C
from ..logs import configure_logging
from .correlator import SCALED_DOWN, SimConfig, calibrator_field, default_start, simulate_observations


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dsa110-sim",
        description="Simulate DSA-110 observations (16 UVH5 subband files each, plus a truth JSON).",
    )
    p.add_argument("--output-dir", required=True, help="directory to write the subband files into")
    p.add_argument("--n-observations", type=int, default=1)
    p.add_argument("--start", help="UTC start of the first observation, YYYY-MM-DDTHH:MM:SS (default: 30 min ago)")
    p.add_argument("--cadence", type=float, default=C.OBSERVATION_CADENCE_S, help="seconds between observations")
    p.add_argument("--realtime-factor", type=float, default=None,
                   help="pace the writes at this multiple of real time (e.g. 10); default: as fast as possible")
    p.add_argument("--full-scale", action="store_true",
                   help="96 antennas, 24 integrations, 48 channels per subband (2.3 GB per observation)")
    p.add_argument("--antennas", type=int, help="active antennas (default 20 scaled down, 96 full scale)")
    p.add_argument("--integrations", type=int, help="integrations per observation")
    p.add_argument("--channels-per-subband", type=int, help="channels per subband (a divisor of 48)")
    p.add_argument("--sky", choices=("realistic", "uniform"), default="realistic",
                   help="realistic (default): the real sky's source counts (50 per square degree above 2.5 mJy, "
                        "N(>S) ~ S^-0.9) out to the far sidelobes, down to --apparent-floor-mjy, and the A-team; "
                        "uniform: --sources log-uniform 0.2-3 Jy sources within 2 deg of the beam centre, "
                        "nothing beyond (an idealised sky)")
    p.add_argument("--apparent-floor-mjy", type=float, default=1.0,
                   help="realistic sky: leave out sources that put less than this into the data anywhere in "
                        "the beam (mJy, default %(default)s)")
    p.add_argument("--no-a-team", action="store_true",
                   help="realistic sky without Cas A, Cyg A, Tau A and Vir A")
    p.add_argument("--no-smearing", action="store_true",
                   help="evaluate each visibility at its integration's middle and channel's centre "
                        "(default: averaged over both, as the correlator does)")
    p.add_argument("--sidelobe-errors", type=float, default=None, metavar="FRACTION",
                   help="rms by which each dish's response to a source differs from the Airy beam, scaled by "
                        "(1 - beam response): the sidelobes differ from dish to dish (default 0.1 with the "
                        "realistic sky, 0 with the uniform one)")
    p.add_argument("--sources", type=int, help="uniform sky: mean number of sources within 1.2 deg of the beam centre")
    p.add_argument("--no-noise", action="store_true")
    p.add_argument("--sefd-jy", type=float, default=C.SEFD_JY,
                   help="system equivalent flux density per antenna behind the noise (Jy, default %(default)s; "
                        "the platform's --sefd-jy must match for its thermal-noise expectation)")
    p.add_argument("--no-gains", action="store_true", help="no antenna gains or bandpasses")
    p.add_argument("--calibrator", metavar="NAME",
                   help="point at this VLA calibrator's declination (3C286, J1331+3030, 1331+305) and let "
                        "it transit during the observation chosen by --calibrator-observation; the start "
                        "moves to the first transit after --start")
    p.add_argument("--calibrator-observation", type=int, default=0, metavar="K",
                   help="0-based observation in which the calibrator transits (default %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("INFO")
    cfg = SimConfig() if args.full_scale else SCALED_DOWN
    overrides = {
        "n_antennas": args.antennas,
        "n_integrations": args.integrations,
        "channels_per_subband": args.channels_per_subband,
        "n_sources": args.sources,
    }
    cfg = replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    cfg = replace(cfg, noise=not args.no_noise, sefd_jy=args.sefd_jy, gains=not args.no_gains, seed=args.seed,
                  sky=args.sky, a_team=args.sky == "realistic" and not args.no_a_team,
                  apparent_floor_jy=args.apparent_floor_mjy * 1e-3, smearing=not args.no_smearing,
                  sidelobe_errors=args.sidelobe_errors if args.sidelobe_errors is not None
                  else (0.1 if args.sky == "realistic" else 0.0))
    start = (
        datetime.strptime(args.start, C.FILE_NAME_TIME_FORMAT).replace(tzinfo=UTC)
        if args.start
        else default_start()
    )
    if args.calibrator:
        cfg, start = calibrator_field(cfg, args.calibrator, start, args.calibrator_observation, args.cadence)
    for group in simulate_observations(
        args.output_dir, start, args.n_observations, cfg, cadence_s=args.cadence, realtime_factor=args.realtime_factor
    ):
        print(f"{group.stamp}\t{len(group.files)} files\t{group.truth_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
