"""Processes named ``host:pid``: who holds a queue claim or ran a run, and whether it is gone."""

from __future__ import annotations

import os
import socket


def this_process() -> str:
    """``host:pid`` of the calling process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_gone(name: str | None) -> bool:
    """True if ``host:pid`` names a process of this host that no longer exists (another
    machine's process is never taken for gone: only its own host can tell)."""
    if not name or ":" not in name:
        return False
    host, pid = name.rsplit(":", 1)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
