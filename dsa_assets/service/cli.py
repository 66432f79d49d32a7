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
    configure_logging(settings.service.log_level, settings.service.log_format)
    from .worker import StreamingWorker

    worker = StreamingWorker(settings)
    if args.once:
        windows = worker.run_once()
        for window, groups in sorted(windows.items()):
            print(f"{window}\t{','.join(groups)}")
        failed = worker.queue.groups("failed")
        return 1 if failed else 0
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
