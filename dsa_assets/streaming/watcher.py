"""StreamingWatcher: registers subband files as the correlator finishes them.

Filesystem events (watchdog's inotify observer) say which files changed; a polling scan
every ``poll_interval_s`` catches whatever events miss (NFS and FUSE mounts deliver none,
and ``force_polling`` uses only the scan). Either way a file is registered only after it
passes the checks of :mod:`dsa_assets.streaming.scanner`.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

from ..naming import parse_subband_name
from .queue import SubbandQueue
from .scanner import ScanReport, scan_directory

log = logging.getLogger(__name__)

LOOKBACK = timedelta(minutes=30)
"""How far behind the newest stamp a polling scan looks for late files."""


class StreamingWatcher:
    """Watches ``input_dir`` and registers complete subband files in ``queue``."""

    def __init__(
        self,
        input_dir: Path | str,
        queue: SubbandQueue,
        *,
        stable_s: float = 5.0,
        poll_interval_s: float = 10.0,
        force_polling: bool = False,
    ):
        self.input_dir = Path(input_dir)
        self.queue = queue
        self.stable_s = stable_s
        self.poll_interval_s = poll_interval_s
        self.force_polling = force_polling
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._observer = None
        self._thread: threading.Thread | None = None
        self._latest = None
        self.mode = "polling"

    def scan_backlog(self) -> ScanReport:
        """One-shot registration of every file in the directory (old data, backfills)."""
        return self._scan(since=None)

    def scan_recent(self) -> ScanReport:
        """Register files stamped no earlier than LOOKBACK before the newest seen so far."""
        return self._scan(since=(self._latest - LOOKBACK) if self._latest else None)

    def _scan(self, since) -> ScanReport:
        report = scan_directory(self.input_dir, self.queue, stable_s=self.stable_s, since=since)
        if report.latest_stamp:
            parsed = parse_subband_name(f"{report.latest_stamp}_sb00.hdf5")
            if parsed and (self._latest is None or parsed[0] > self._latest):
                self._latest = parsed[0]
        return report

    # -- live mode ------------------------------------------------------------------------
    def start(self) -> None:
        """Start watching in a background thread (returns at once)."""
        self.input_dir.mkdir(parents=True, exist_ok=True)
        if not self.force_polling:
            self._start_observer()
        self._thread = threading.Thread(target=self._loop, name="subband-watcher", daemon=True)
        self._thread.start()

    def _start_observer(self) -> None:
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
        except ImportError:  # pragma: no cover - watchdog is a dependency
            return
        wake = self._wake

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event):  # created, modified, moved (the final rename)
                wake.set()

        try:
            observer = Observer()
            observer.schedule(_Handler(), str(self.input_dir), recursive=False)
            observer.start()
        except OSError as exc:  # inotify limits, unsupported filesystems
            log.warning("file events unavailable (%s); polling every %.0f s", exc, self.poll_interval_s)
            return
        self._observer = observer
        self.mode = "events+polling"

    def _loop(self) -> None:
        while not self._stop.is_set():
            report = ScanReport()
            try:
                report = self.scan_recent()
                if report.registered:
                    log.info("registered %d subband file(s)", len(report.registered))
            except Exception:
                log.exception("scan of %s failed", self.input_dir)
            # A file that is still settling is re-checked after stable_s; otherwise wait for
            # an event or the polling interval, whichever comes first.
            timeout = self.poll_interval_s
            if report.waiting:
                timeout = min(timeout, max(self.stable_s / 2, 0.2))
            self._wake.wait(timeout)
            self._wake.clear()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self, duration_s: float | None = None) -> None:
        """Watch in the foreground until stopped (or for ``duration_s`` seconds)."""
        self.start()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.2)
        finally:
            self.stop()
