"""AlertsResource: where alerts go, how often, and the thresholds that raise them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .options import option


class AlertsResource(dg.ConfigurableResource):
    """Alerts to a webhook and/or by email (both off when empty). Times in seconds."""

    webhook_url: str = option("", metavar="URL")
    """Slack-compatible incoming-webhook URL that receives alerts as JSON (empty: none)."""
    smtp_host: str = ""
    """SMTP relay that mails alerts (empty: no mail)."""
    smtp_port: int = 25
    """Port of the SMTP relay."""
    alert_from: str = option("dsa110@localhost", metavar="ADDRESS")
    """Sender address of alert mail."""
    alert_to: str = option("", metavar="ADDRESSES")
    """Comma-separated recipients of alert mail."""
    ui_url: str = option("http://127.0.0.1:3000", metavar="URL")
    """The Dagster UI as the people alerted reach it (links in alerts)."""
    alert_interval_s: float = option(600.0, metavar="SECONDS")
    """At most one message this often; alerts in between go together in the next one."""
    alert_repeat_s: float = option(3600.0, metavar="SECONDS")
    """The same alert (same kind and partition) is not sent again within this time."""
    stuck_after_s: float = option(3600.0, metavar="SECONDS")
    """Alert on an observation still pending or processing this long after its first file."""
    slow_image_s: float = option(900.0, metavar="SECONDS")
    """Alert when an image appears more than this long after its observation's last subband."""

    def alerter(self, state_dir: Path):
        """The de-duplicating, rate-limited sender, its state kept in ``state_dir``."""
        from dsa_assets.alerts import Alerter, EmailChannel, WebhookChannel

        channels = []
        if self.webhook_url:
            channels.append(WebhookChannel(self.webhook_url))
        if self.smtp_host and self.alert_to:
            recipients = [r.strip() for r in self.alert_to.split(",") if r.strip()]
            channels.append(EmailChannel(self.smtp_host, self.smtp_port, self.alert_from, recipients))
        return Alerter(channels, Path(state_dir) / "alerts.json", self.alert_interval_s, self.alert_repeat_s)
