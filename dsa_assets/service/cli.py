"""``dsa110-stream``: run the platform on a directory the correlator writes into.

Every setting's option is generated from its declaration (:mod:`dsa_assets.service.options`);
the options that are actions, not settings, are declared here.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..logs import configure_logging
from . import preflight
from .options import add_settings_options, read_settings_file, settings_from_args

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dsa110-stream",
        usage="dsa110-stream --input-dir DIR --output-dir DIR [options]   (--help lists them)",
        description=(
            "Watch a directory of DSA-110 subband files and turn every complete observation into "
            "Measurement Sets (and downstream products) as partitioned Dagster assets. Starts the "
            "Dagster daemon (sensors, run queue, retries) and webserver; Ctrl-C or SIGTERM stops both."
        ),
    )
    actions = p.add_argument_group("actions")
    actions.add_argument("--once", action="store_true",
                         help="evaluate the sensors once, run what they request in this process, and exit "
                              "(non-zero if an observation failed)")
    actions.add_argument("--settings", type=Path, metavar="FILE",
                         help="start from this settings file (YAML, as written under <output>/state/settings.yaml); "
                              "options given override it")
    actions.add_argument("--create-input-dir", action="store_true",
                         help="create the input directory if it does not exist (otherwise a missing one is an error)")
    actions.add_argument("--write-settings", type=Path, metavar="FILE",
                         help="write the settings file these options make and exit (for a deployment whose Dagster "
                              "processes are started otherwise: point DSA110_SETTINGS at it)")
    add_settings_options(p)
    return p


def parse_settings(argv: list[str] | None = None):
    """(arguments, settings) of a command line."""
    parser = build_parser()
    args = parser.parse_args(argv)
    base = read_settings_file(args.settings, parser) if args.settings else None
    return args, settings_from_args(args, parser, base)


def main(argv: list[str] | None = None) -> int:
    args, settings = parse_settings(argv)
    if args.write_settings:
        print(settings.write(args.write_settings))
        return 0
    found = preflight.problems(settings, create_input_dir=args.create_input_dir)
    for problem in found:
        print(f"dsa110-stream: error: {problem}", file=sys.stderr)
    if found:
        return 2
    configure_logging(settings.service.log_level, settings.service.log_format)
    from .worker import StreamingWorker

    worker = StreamingWorker(settings)
    if args.once:
        return print_once_summary(worker, worker.run_once())
    return worker.run()


def print_once_summary(worker, report) -> int:
    """One line per observation run (what it reached, or why it failed), one per failed run,
    and the totals; the exit status is 1 when anything failed."""
    products = worker.settings.pipeline.catalogue()
    steps = {"converted": "measurement_set", "calibrated": "calibrated_ms", "imaged": "image"}
    counts = dict.fromkeys([*steps, "failed"], 0)
    ran = [gid for window in sorted(report.windows) for gid in report.windows[window] if gid]
    # and the groups the pass failed without a run (the incomplete-group policy, a window before the partitions)
    failed_now = [g.group_id for g in worker.queue.groups("failed") if g.updated_at >= report.started_unix]
    observations = [products.observation(gid) for gid in dict.fromkeys(ran + failed_now)]
    for obs in observations:
        reached = [word for word, product in steps.items() if obs.has(product)]
        for word in reached:
            counts[word] += 1
        if obs.state == "failed":
            counts["failed"] += 1
            print(f"{obs.group_id}  failed: {obs.error}")
        else:
            print(f"{obs.group_id}  {' '.join(reached) or obs.state}")
    for what, why in report.failures.items():
        print(f"{what}: failed: {why}")
    if not observations and report.waiting:
        print(f"nothing to process: {report.waiting}")
    print(f"{len(observations)} observation(s): " + ", ".join(f"{n} {word}" for word, n in counts.items()))
    return 1 if counts["failed"] or report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
