"""``dsa110-stream`` moved to :mod:`dsa_assets.service.cli`; ``python -m
dsa_assets.streaming.cli`` still runs it."""

import sys

from ..service.cli import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
