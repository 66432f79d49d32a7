"""Structured logging: JSON lines (or plain text) with observation, partition, stage and run ids.

Configured once by the entry points (``dsa110-stream``, ``dsa110-sim``), never at import.
Extra context travels in ``extra={"observation": ..., "partition": ..., "stage": ..., "run_id": ...}``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

CONTEXT_FIELDS = ("observation", "partition", "stage", "run_id")
LOG_FILE_ENV = "DSA110_LOG_FILE"
"""JSON-lines file that every process of a deployment (runs included) appends to."""

# read-only default: log_context always sets a new mapping, never changes one in place
_context: contextvars.ContextVar[Mapping] = contextvars.ContextVar("dsa110_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**fields):
    """Attach ``partition``/``run_id``/``stage``/``observation`` to every record logged inside."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current log context onto records (without overriding explicit ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO), level, logger, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    """Route the platform's loggers to ``stream`` (stderr) as ``json`` lines or ``text``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(ContextFilter())
    root = logging.getLogger("dsa_assets")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def attach_log_file() -> None:
    """In a run process: also append JSON lines to ``$DSA110_LOG_FILE`` (idempotent). The
    records still propagate, so Dagster's managed loggers show them in the run's log."""
    path = os.environ.get(LOG_FILE_ENV)
    logger = logging.getLogger("dsa_assets")
    if not path or any(getattr(h, "dsa110_file", None) == path for h in logger.handlers):
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.dsa110_file = path
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
