"""RetentionResource: how long each class of product is kept, and the disk budget.

A policy is ``forever``, ``until_downstream`` (removed once everything made from it exists), a
duration (``36h``, ``7d``: removed that long after it was made) or ``budget`` (removed only
when the products exceed the disk budget, oldest first). Nothing still needed by unfinished
work is removed under any policy (:mod:`dsa_assets.retention`).

The defaults keep a 10 TB disk from filling at 288 observations a day (the README's table):
the correlator's files two days after conversion (time to convert again), the raw
Measurement Set until it is calibrated, the calibrated one a week, images and mosaics within
the budget, calibration solutions for good.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
from pydantic import field_validator

from .options import option

DEFAULT_BUDGET_FRACTION = 0.85
"""With no budget set, the products may take this fraction of the output disk."""


class RetentionResource(dg.ConfigurableResource):
    """Retention of each class of product (policies: forever, until_downstream, budget, or a
    duration such as 36h or 7d). Sizes in GB (1e9 bytes), times in seconds."""

    keep_subbands: str = option("2d", metavar="POLICY")
    """The correlator's subband files of a converted observation."""
    keep_raw_ms: str = option("until_downstream", metavar="POLICY")
    """An observation's Measurement Set as converted (its calibrated copy holds the data)."""
    keep_calibrated_ms: str = option("7d", metavar="POLICY")
    """An observation's calibrated Measurement Set, once imaged."""
    keep_images: str = option("budget", metavar="POLICY")
    """An observation's published image set, once measured and mosaicked (where those run)."""
    keep_mosaics: str = option("budget", metavar="POLICY")
    """An hour's published mosaic, once measured (where photometry runs)."""
    keep_caltables: str = option("forever", metavar="POLICY")
    """A calibration solution, once past its validity and every observation assigned it is calibrated."""
    products_budget_gb: float = option(0.0, metavar="GB")
    """The most all products may take; beyond it the oldest removable products of the budget
    classes go, then those kept for a duration (0: 85% of the output disk's size)."""
    retention_interval_s: float = option(900.0, metavar="SECONDS")
    """How often the retention job runs."""

    @field_validator("keep_subbands", "keep_raw_ms", "keep_calibrated_ms", "keep_images", "keep_mosaics",
                     "keep_caltables")
    @classmethod
    def _policy(cls, value: str) -> str:
        from dsa_assets.retention import Policy

        return str(Policy.parse(value))

    def policies(self) -> dict:
        """Product class -> :class:`dsa_assets.retention.Policy`."""
        from dsa_assets.retention import PRODUCT_CLASSES, Policy

        return {c: Policy.parse(getattr(self, f"keep_{c}")) for c in PRODUCT_CLASSES}

    def budget_bytes(self, output_dir: Path) -> float:
        """The disk budget in bytes (the default: a fraction of the output disk)."""
        if self.products_budget_gb > 0:
            return self.products_budget_gb * 1e9
        path = Path(output_dir)
        while not path.exists() and path != path.parent:
            path = path.parent
        return DEFAULT_BUDGET_FRACTION * shutil.disk_usage(path).total
