"""PipelineResource: where the platform reads and writes, and handles built from that.

One typed resource holds the paths and ingest policy; stages and the queue are built from it
on demand (cheap: no CASA import here), so the Dagster webserver and daemon never load CASA.
Each field is declared once: ``dsa110-stream`` makes an option of it (help from its
docstring) and the settings file holds it (:mod:`resources.settings`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import dagster as dg

from dsa_assets.constants import GROUP_TOLERANCE_S, INCOMPLETE_GROUP_TIMEOUT_S, N_SUBBANDS
from dsa_assets.stages.conversion import ConversionConfig, ConversionStage
from dsa_assets.streaming.queue import SubbandQueue

from .options import option


class PipelineResource(dg.ConfigurableResource):
    """Paths and ingest policy of one deployment.

    Empty optional paths derive from ``output_dir``: scratch ``<output>/scratch``, queue
    ``<output>/state/queue.sqlite3``, products ``<output>/state/products.sqlite3``.
    """

    input_dir: str = option(path=True, required=True)
    """Directory the correlator writes *_sbNN.hdf5 files into."""
    output_dir: str = option(path=True, required=True)
    """Root of all products (ms/, images/, state/, dagster_home/)."""
    scratch_dir: str = option("", path=True)
    """Where products are written before being renamed into place (default <output>/scratch; the
    same filesystem as the output makes that a rename)."""
    queue_db: str = option("", path=True)
    """SQLite file of the subband queue (default <output>/state/queue.sqlite3)."""
    products_db: str = option("", path=True, aliases=("--registry-db",))
    """Products database: SQLAlchemy URL or SQLite path (default <output>/state/products.sqlite3)."""
    reference_catalogue: str = option("", path=True, metavar="CSV")
    """Catalogue of the sky (name, ra_deg, dec_deg, flux_jy, spectral_index): forced photometry
    measures its sources, and those near a calibrator join the calibration model; the simulator
    writes one (sky_catalogue.csv beside the subbands). Empty: blind detections only."""
    simulated: bool = False
    """The input is the simulator's (a truth file beside each observation's subbands): register
    the checks that compare products with the simulated truth."""
    expected_subbands: int = N_SUBBANDS
    """Subband files that make a complete observation."""
    group_tolerance_s: float = option(GROUP_TOLERANCE_S, metavar="SECONDS")
    """Files whose stamps lie within this many seconds of a group's first stamp join it."""
    stable_s: float = option(5.0, flag="--stable-seconds", metavar="SECONDS")
    """A file must be unchanged this long (s) before it is registered."""
    incomplete_timeout_s: float = option(INCOMPLETE_GROUP_TIMEOUT_S, flag="--incomplete-timeout", metavar="SECONDS")
    """How long (s) to wait for a group's missing subbands."""
    incomplete_policy: Literal["convert_partial", "fail"] = "convert_partial"
    """After the timeout: convert with the missing subbands flagged, or fail the group."""
    disk_warn_gb: float = 10.0
    """Below this much free space (GB) on the output or scratch disk, warn."""
    disk_pause_gb: float = 2.0
    """Below this much free space (GB), request no new runs; resumes by itself."""

    def disk_status(self):
        from dsa_assets.diskspace import check_disks

        return check_disks({"output": self.output_path, "scratch": self.scratch_path},
                           self.disk_warn_gb, self.disk_pause_gb)

    @property
    def output_path(self) -> Path:
        return Path(self.output_dir)

    @property
    def state_dir(self) -> Path:
        """The deployment's own state: queue, products database, settings, logs, metrics."""
        return self.output_path / "state"

    @property
    def scratch_path(self) -> Path:
        return Path(self.scratch_dir) if self.scratch_dir else self.output_path / "scratch"

    @property
    def queue_path(self) -> Path:
        return Path(self.queue_db) if self.queue_db else self.state_dir / "queue.sqlite3"

    @property
    def products_target(self) -> str:
        return self.products_db or str(self.state_dir / "products.sqlite3")

    def reference_sources(self) -> list:
        """The reference catalogue's sources (:class:`dsa_assets.catalogue.CatalogueSource`);
        empty without a catalogue. Read once per file version: a step asks for them per
        observation. (Not a cached property: Dagster would take the cached value for a field.)"""
        if not self.reference_catalogue:
            return []
        path = Path(self.reference_catalogue)
        return _read_catalogue(path, path.stat().st_mtime_ns if path.exists() else 0)

    def products(self):
        from dsa_assets.products import ProductsDB

        return ProductsDB(self.products_target)

    def catalogue(self):
        """The product catalogue of this deployment: observations of a window and their products."""
        from dsa_assets.product_catalogue import ProductCatalogue

        return ProductCatalogue(self.queue(), self.products(), self.output_path)

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


@lru_cache(maxsize=8)
def _read_catalogue(path: Path, _mtime_ns: int) -> list:
    from dsa_assets import catalogue

    return catalogue.read(path)
