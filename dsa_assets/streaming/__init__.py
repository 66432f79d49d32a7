"""Streaming ingest: the subband queue, the directory watcher, the worker and the CLI."""

from .queue import SubbandQueue
from .watcher import StreamingWatcher

__all__ = ["StreamingWatcher", "SubbandQueue"]
