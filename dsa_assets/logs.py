"""Structured logging: JSON lines (or plain text) with observation, partition, stage and run ids.

Configured once by the entry points (``dsa110-stream``, ``dsa110-sim``), never at import.
Extra context travels in ``extra={"observation": ..., "partition": ..., "stage": ..., "run_id": ...}``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

CONTEXT_FIELDS = ("observation", "partition", "stage", "run_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC ISO), level, logger, message and context fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
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
    root = logging.getLogger("dsa_assets")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
