"""PipelineResource: where the platform reads and writes, and handles built from that.

One typed resource holds the paths and ingest policy; stages and the queue are built from it
on demand (cheap: no CASA import here), so the Dagster webserver and daemon never load CASA.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dsa_assets.constants import GROUP_TOLERANCE_S, INCOMPLETE_GROUP_TIMEOUT_S, N_SUBBANDS
from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
from dsa_assets.streaming.queue import SubbandQueue


class PipelineResource(dg.ConfigurableResource):
    """Paths and ingest policy of one deployment.

    Empty optional paths derive from ``output_dir``: scratch ``<output>/scratch``, queue
    ``<output>/state/queue.sqlite3``, products ``<output>/state/products.sqlite3``.
    """

    input_dir: str
    """Directory the correlator writes subband files into."""
    output_dir: str
    """Root of all products (Measurement Sets under ``ms/``)."""
    scratch_dir: str = ""
    queue_db: str = ""
    products_db: str = ""
    """SQLAlchemy URL or SQLite path of the products database."""
    expected_subbands: int = N_SUBBANDS
    group_tolerance_s: float = GROUP_TOLERANCE_S
    stable_s: float = 5.0
    """A file must be unchanged this long (s) before it is registered."""
    incomplete_timeout_s: float = INCOMPLETE_GROUP_TIMEOUT_S
    incomplete_policy: str = "convert_partial"
    """What to do with a group still incomplete after the timeout: convert_partial | fail."""
    disk_warn_gb: float = 10.0
    """Below this much free space (GB) on the output or scratch disk, warn."""
    disk_pause_gb: float = 2.0
    """Below this much free space (GB), request no new runs until space returns."""

    def disk_status(self):
        from dsa_assets.diskspace import check_disks

        return check_disks({"output": self.output_path, "scratch": self.scratch_path},
                           self.disk_warn_gb, self.disk_pause_gb)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def scratch_path(self) -> Path:
        return Path(self.scratch_dir) if self.scratch_dir else self.output_path / "scratch"

    @property
    def queue_path(self) -> Path:
        return Path(self.queue_db) if self.queue_db else self.output_path / "state" / "queue.sqlite3"

    @property
    def products_target(self) -> str:
        return self.products_db or str(self.output_path / "state" / "products.sqlite3")

    def products(self):
        from dsa_assets.products import ProductsDB

        return ProductsDB(self.products_target)

    def queue(self) -> SubbandQueue:
        return SubbandQueue(
            self.queue_path, expected_subbands=self.expected_subbands, tolerance_s=self.group_tolerance_s
        )

    def conversion_stage(self) -> ConversionStage:
        return ConversionStage(
            ConversionConfig(
                output_dir=self.output_path,
                scratch_dir=self.scratch_path,
                products_db=self.products_target,
                expected_subbands=self.expected_subbands,
            )
        )
