"""The product catalogue: which observations a time window holds and what has been made of
each, as typed records. The one way assets (and the source explorer, notebooks, scripts) ask
"the observations of this window that have an image" and find the products' paths.

Observations are the subband queue's groups (the ingest layer knows which exist); what was made
of them comes from the products database (Measurement Sets, calibration assignments, calibrated
Measurement Sets, images) and the published directories, whose paths :mod:`dsa_assets.naming`
builds. Plain Python, no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from . import naming, windows
from .exceptions import ProductsError
from .products import ProductsDB
from .streaming.queue import COMPLETED, SubbandQueue

PRODUCTS = ("measurement_set", "calibration", "calibrated_ms", "image")
"""What ``having`` can ask for, in the order they are made."""


@dataclass(frozen=True)
class Observation:
    """One observation and its products. Times are Unix seconds (UTC); a path is None until its
    product exists."""

    group_id: str
    window: str
    """The 5-minute partition key it belongs to."""
    start_unix: float
    last_arrival_unix: float
    state: str
    """Its subband group's queue state: pending, processing, completed or failed."""
    error: str | None
    """Why it failed (queue state failed), as recorded."""
    ms_path: Path | None
    duration_s: float | None
    """Span of the Measurement Set's integrations."""
    solution_group_id: str | None
    """The calibrator observation whose solution it is assigned."""
    calibrated_ms_path: Path | None
    images: dict[str, Path] | None
    """kind (image, residual, pb, psf, pbcor, model) -> published FITS file; None if not imaged."""
    removed: dict[str, str] = field(default_factory=dict)
    """Product class (``raw_ms``, ``calibrated_ms``, ``images``, ...) -> when and by which
    policy retention removed it, for the products made and since removed."""

    def require(self, product: str) -> Path:
        """The path of ``raw_ms`` or ``calibrated_ms``, or ProductsError saying why there is none."""
        path = {"raw_ms": self.ms_path, "calibrated_ms": self.calibrated_ms_path}[product]
        if product in self.removed:
            raise ProductsError(f"{self.group_id}: its {product} was {self.removed[product]}")
        if path is None:
            raise ProductsError(f"{self.group_id} has no {product} yet: materialize "
                                f"{'measurement_set' if product == 'raw_ms' else 'calibrated_ms'} first")
        return path

    @property
    def mid_unix(self) -> float:
        """Mid-time of its data (its start when the duration is not known)."""
        return self.start_unix + (self.duration_s or 0.0) / 2

    def has(self, product: str) -> bool:
        return {
            "measurement_set": self.ms_path is not None,
            "calibration": self.solution_group_id is not None,
            "calibrated_ms": self.calibrated_ms_path is not None,
            "image": self.images is not None,
        }[product]


@dataclass(frozen=True)
class MosaicProducts:
    """An hour's mosaic: its FITS planes by kind and its thumbnail; planes a mosaic made by an
    older version lacks are left out."""

    key: str
    files: dict[str, Path]
    thumbnail: Path

    @property
    def exists(self) -> bool:
        return "image" in self.files and "noise" in self.files


class ProductCatalogue:
    """Read access to the products of one deployment."""

    def __init__(self, queue: SubbandQueue, db: ProductsDB, output_dir: Path | str):
        self.queue = queue
        self.db = db
        self.output_dir = Path(output_dir)

    def observations(self, start: datetime, end: datetime, having: tuple[str, ...] = ()) -> list[Observation]:
        """Observations starting in [start, end), in time order, that have every product in
        ``having`` (names from :data:`PRODUCTS`)."""
        unknown = set(having) - set(PRODUCTS)
        if unknown:
            raise ValueError(f"unknown products {sorted(unknown)}; known: {PRODUCTS}")
        found = [self._observation(g) for g in self.queue.groups_between(start, end)]
        return [o for o in found if all(o.has(p) for p in having)]

    def in_window(self, key: str, having: tuple[str, ...] = ()) -> list[Observation]:
        """The observations of one 5-minute partition."""
        return self.observations(*windows.window_bounds(key), having=having)

    def in_hour(self, key: str, having: tuple[str, ...] = ()) -> list[Observation]:
        """The observations of one hourly partition."""
        return self.observations(*windows.hour_bounds(key), having=having)

    def observation(self, group_id: str) -> Observation:
        """One observation by id (QueueError if the queue does not know it)."""
        return self._observation(self.queue.group(group_id))

    def mosaic(self, key: str) -> MosaicProducts:
        files = {kind: path for kind, path in naming.mosaic_files(self.output_dir, key).items() if path.exists()}
        return MosaicProducts(key, files, naming.mosaic_dir(self.output_dir, key) / f"{naming.mosaic_stem(key)}.png")

    def _observation(self, group) -> Observation:
        gid = group.group_id
        converted = group.state == COMPLETED and bool(group.ms_path)
        ms_row = self.db.measurement_set(gid) if converted else None
        assignment = self.db.assignment(gid) if converted else None
        calibrated = self.db.calibrated_ms(gid) if assignment else None
        removed = {r["product"]: f"removed by retention ({r['policy']}: {r['reason']}) at {r['purged_at']:%Y-%m-%d %H:%M} UTC"
                   for r in self.db.purged(key=gid)} if converted else {}
        images = None
        if converted:
            # a published image set is complete (one rename): its restored image stands for all
            files = naming.image_files(self.output_dir, gid, naming.IMAGE_PRODUCTS)
            if files["image"].exists():
                images = {kind: path for kind, path in files.items() if path.exists()}
        return Observation(
            group_id=gid, window=windows.window_key(group.start), start_unix=group.canonical_time,
            last_arrival_unix=group.last_arrival, state=group.state, error=group.error,
            ms_path=Path(group.ms_path) if converted else None,
            duration_s=(ms_row or {}).get("duration_s"),
            solution_group_id=assignment["solution_group_id"] if assignment else None,
            calibrated_ms_path=Path(calibrated["path"]) if calibrated else None,
            images=images,
            removed={k: v for k, v in removed.items() if not _made_again(k, ms_row, calibrated, images)},
        )


def _made_again(product: str, ms_row: dict | None, calibrated: dict | None, images: dict | None) -> bool:
    """Whether a product that retention once removed has been made again since."""
    path = {"raw_ms": (ms_row or {}).get("path"), "calibrated_ms": (calibrated or {}).get("path")}.get(product)
    if product == "images":
        return images is not None
    return bool(path) and Path(path).exists()
