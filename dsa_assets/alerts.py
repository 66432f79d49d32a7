"""Alerts to the people running the platform: a Slack-compatible webhook and/or email,
de-duplicated and rate-limited so that a flood of failures sends one summary, not hundreds.

Plain Python. What raises an alert (a failed run, a failed blocking check, a sensor paused for
disk, an observation stuck beyond its deadline, a slow image) is decided in
:mod:`sensors.alerts`; this module only words, holds back and sends. Its state (what was sent
when, what waits for the next message) is a small JSON file, so the daemon's threads and
restarts share it.
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from pathlib import Path

from . import fsutil

log = logging.getLogger(__name__)

MAX_LINES = 20
"""A summary lists at most this many alerts, then counts the rest."""


@dataclass(frozen=True)
class Alert:
    """One thing a person should look at."""

    kind: str
    """run_failed, check_failed, disk_paused, observation_stuck or slow_image."""
    key: str
    """What makes two alerts the same (the kind and its partition, observation or check)."""
    reason: str
    partition: str | None = None
    link: str | None = None
    """The UI page to open."""

    def line(self, link: bool = True) -> str:
        where = f" [{self.partition}]" if self.partition else ""
        return f"{self.kind}{where}: {self.reason}" + (f" <{self.link}>" if link and self.link else "")


class WebhookChannel:
    """POSTs ``{"text": ..., "alerts": [...]}``: Slack's incoming-webhook format, with the
    alerts as data for other receivers."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        self.url, self.timeout_s = url, timeout_s

    def send(self, subject: str, text: str, alerts: list[Alert]) -> None:
        body = json.dumps({"text": f"*{subject}*\n{text}", "alerts": [asdict(a) for a in alerts]}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()


class EmailChannel:
    """Plain-text mail through an SMTP relay."""

    def __init__(self, host: str, port: int, sender: str, recipients: list[str], timeout_s: float = 10.0):
        self.host, self.port, self.sender, self.recipients, self.timeout_s = host, port, sender, recipients, timeout_s

    def send(self, subject: str, text: str, alerts: list[Alert]) -> None:
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = subject, self.sender, ", ".join(self.recipients)
        message.set_content(text)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.send_message(message)


class Alerter:
    """Sends alerts through its channels: an alert whose key was sent within ``repeat_after_s``
    is dropped; messages go at most every ``min_interval_s``, alerts in between wait and go
    together in the next one (flushed by :meth:`notify` or :meth:`flush`)."""

    def __init__(self, channels: list, state_path: Path, min_interval_s: float = 600.0,
                 repeat_after_s: float = 3600.0):
        self.channels, self.state_path = channels, Path(state_path)
        self.min_interval_s, self.repeat_after_s = min_interval_s, repeat_after_s

    def _load(self) -> dict:
        if self.state_path.exists():
            return json.loads(self.state_path.read_text())
        return {"sent": {}, "last_message": None, "pending": []}

    def notify(self, alerts: list[Alert], now: float | None = None) -> int:
        """Queue ``alerts`` (minus repeats) and send what waits if the interval allows; returns
        the number of messages sent (0 or 1)."""
        if not self.channels:  # alerts are off: keep nothing
            return 0
        now = time.time() if now is None else now
        state = self._load()
        waiting = {a["key"] for a in state["pending"]}
        for alert in alerts:
            sent_at = state["sent"].get(alert.key)
            if alert.key in waiting or (sent_at is not None and now - sent_at < self.repeat_after_s):
                continue
            state["pending"].append(asdict(alert))
            waiting.add(alert.key)
        sent = self._send_if_due(state, now)
        fsutil.write_text_atomic(self.state_path, json.dumps(state))
        return sent

    def flush(self, now: float | None = None) -> int:
        """Send what waits, if the interval allows."""
        return self.notify([], now)

    def _send_if_due(self, state: dict, now: float) -> int:
        last = state["last_message"]
        if not state["pending"] or (last is not None and now - last < self.min_interval_s):
            return 0
        alerts = [Alert(**a) for a in state["pending"]]
        subject = (f"DSA-110: {alerts[0].line(link=False)}" if len(alerts) == 1
                   else f"DSA-110: {len(alerts)} alerts ({', '.join(sorted({a.kind for a in alerts}))})")
        lines = [a.line() for a in alerts[:MAX_LINES]]
        if len(alerts) > MAX_LINES:
            lines.append(f"... and {len(alerts) - MAX_LINES} more")
        failures = []
        for channel in self.channels:
            try:
                channel.send(subject, "\n".join(lines), alerts)
            except OSError as exc:  # a receiver down must not stop the platform; say so and retry later
                failures.append(f"{type(channel).__name__}: {exc}")
        if failures and len(failures) == len(self.channels):
            log.error("alerts not delivered (kept for the next try): %s", "; ".join(failures))
            return 0
        for failure in failures:
            log.error("alert channel failed: %s", failure)
        state["sent"].update({a.key: now for a in alerts})
        state["sent"] = {k: t for k, t in state["sent"].items() if now - t < self.repeat_after_s}
        state["pending"], state["last_message"] = [], now
        return 1
