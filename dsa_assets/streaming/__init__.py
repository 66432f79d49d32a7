"""Streaming ingest: the subband queue, the directory scanner and watcher, and the
incomplete-group policy (Dagster-free). ``worker`` and ``cli`` re-export the service, which
moved to :mod:`dsa_assets.service`."""

from .queue import SubbandQueue
from .watcher import StreamingWatcher

__all__ = ["StreamingWatcher", "SubbandQueue"]
