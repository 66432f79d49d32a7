"""Time windows: 5-minute observation windows and hours (UTC), and their keys.

An observation belongs to the window containing its canonical start time (the earliest file
stamp of its group). Nobody else formats or parses window keys. Window arithmetic is done here
by flooring, never by listing a partitions definition's keys (a year of 5-minute keys takes
~1 s to list; see ``docs/partitioning.md``). Plain Python: the Dagster partitions built on
these windows are in :mod:`dsa_assets.partitions`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

WINDOW = timedelta(minutes=5)
HOUR = timedelta(hours=1)
KEY_FORMAT = "%Y-%m-%d-%H:%M"


def window_start(t: datetime) -> datetime:
    """Start (UTC) of the 5-minute window containing ``t``."""
    t = t.astimezone(UTC)
    return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)


def window_key(t: datetime) -> str:
    """Partition key of the 5-minute window containing ``t``."""
    return window_start(t).strftime(KEY_FORMAT)


def window_bounds(key: str) -> tuple[datetime, datetime]:
    """[start, end) of a 5-minute partition key, UTC."""
    start = datetime.strptime(key, KEY_FORMAT).replace(tzinfo=UTC)
    return start, start + WINDOW


def windows_between(first_key: str, last_key: str) -> list[str]:
    """Keys strictly after ``first_key`` and strictly before ``last_key``."""
    start, _ = window_bounds(first_key)
    end, _ = window_bounds(last_key)
    keys = []
    t = start + WINDOW
    while t < end:
        keys.append(t.strftime(KEY_FORMAT))
        t += WINDOW
    return keys


def hour_key(t: datetime) -> str:
    """Partition key of the hour containing ``t``."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0).strftime(KEY_FORMAT)


def hour_bounds(key: str) -> tuple[datetime, datetime]:
    """[start, end) of an hourly partition key, UTC."""
    start = datetime.strptime(key, KEY_FORMAT).replace(tzinfo=UTC)
    return start, start + HOUR


def windows_in(start: datetime, end: datetime) -> list[str]:
    """Keys of the 5-minute windows in [start, end)."""
    keys, t = [], window_start(start)
    while t < end:
        keys.append(t.strftime(KEY_FORMAT))
        t += WINDOW
    return keys
