"""Disk-space guard: below the warning threshold the platform says so; below the pause
threshold it requests no new work until space returns (checked again at every sensor tick)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

OK, WARN, PAUSE = "ok", "warn", "pause"


@dataclass(frozen=True)
class DiskStatus:
    """Worst state over the checked paths, with free bytes per path and a readable message."""

    level: str
    free_bytes: dict[str, int]
    message: str


def free_bytes(path: Path | str) -> int:
    """Free bytes (for unprivileged users) on the filesystem holding ``path`` (or its nearest
    existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def check_disks(paths: dict[str, Path | str], warn_gb: float, pause_gb: float) -> DiskStatus:
    """Compare free space of each named path with the thresholds (GB = 1e9 bytes)."""
    free = {name: free_bytes(p) for name, p in paths.items()}
    level, notes = OK, []
    for name, value in free.items():
        if value < pause_gb * 1e9:
            level = PAUSE
            notes.append(f"{name} has {value / 1e9:.1f} GB free, below the pause threshold {pause_gb} GB")
        elif value < warn_gb * 1e9:
            level = WARN if level == OK else level
            notes.append(f"{name} has {value / 1e9:.1f} GB free, below the warning threshold {warn_gb} GB")
    return DiskStatus(level, free, "; ".join(notes) or "enough free space")
