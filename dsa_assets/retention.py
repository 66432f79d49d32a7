"""Data lifecycle: which products to remove, when, and removing them safely.

A deployment keeps six classes of product (:data:`PRODUCT_CLASSES`), each with a
:class:`Policy`:

- ``forever``: never removed;
- ``until_downstream``: removed as soon as everything made from it exists;
- a duration (``36h``, ``7d``): removed that long after it was made;
- ``budget``: removed only when the products exceed the disk budget, oldest first.

Whatever the policy, nothing is removed that unfinished work still needs. A product is
*removable* only when its downstream products all exist (a Measurement Set once calibrated, a
calibrated one once imaged, an image once measured and mosaicked, ...; see :func:`inventory`),
when no running job holds its partition, and, for a calibration solution, once no new
observation can be assigned it (its validity has passed) and every observation assigned it is
calibrated. When the products exceed the disk budget, the oldest removable products of the
``budget`` classes go first, then (if that is not enough) those of the classes kept for a
duration, oldest first; ``forever`` is never touched.

Removal is a rename aside, a second look at the running jobs (a run that started meanwhile
gets the product back), then the delete; each removal is recorded in the
products database. Plain Python: the Dagster job (:mod:`dsa_assets.assets.retention`) supplies
the running jobs and shows the records on each partition.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from . import fsutil, naming, windows
from .exceptions import ProductNameError
from .product_catalogue import ProductCatalogue
from .products import (
    calibrated_measurement_sets,
    calibration_assignments,
    calibration_solutions,
    images,
    measurement_sets,
    observation_images,
    unix_seconds,
)
from .streaming.queue import COMPLETED

PRODUCT_CLASSES = ("subbands", "raw_ms", "calibrated_ms", "images", "mosaics", "caltables")
"""The classes of product, in the order they are made."""
ASSET_OF = {"subbands": "subband_files", "raw_ms": "measurement_set", "calibrated_ms": "calibrated_ms",
            "images": "image", "mosaics": "mosaic", "caltables": "calibration_tables"}
"""The Dagster asset whose partitions each class belongs to."""
POLICY_FORMS = "forever, until_downstream, budget, or a duration such as 36h or 7d"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([hd])$")


@dataclass(frozen=True)
class Policy:
    """How long one class of product is kept."""

    kind: str
    """forever, until_downstream, duration or budget."""
    seconds: float = 0.0
    """For a duration: how long after it was made a product is kept (s)."""

    @classmethod
    def parse(cls, text: str) -> Policy:
        """``forever``, ``until_downstream``, ``budget``, or ``<N>h`` / ``<N>d``; ValueError
        naming the accepted forms otherwise."""
        value = str(text).strip().lower()
        if value in ("forever", "until_downstream", "budget"):
            return cls(value)
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"{text!r} is not a retention policy: use {POLICY_FORMS}")
        return cls("duration", float(m[1]) * (3600.0 if m[2] == "h" else 86400.0))

    def __str__(self) -> str:
        if self.kind != "duration":
            return self.kind
        days = self.seconds / 86400.0
        return f"{days:g}d" if days == int(days) else f"{self.seconds / 3600.0:g}h"


@dataclass(frozen=True)
class Product:
    """One product on disk. Times are Unix seconds (UTC), sizes bytes."""

    product: str
    """Its class (:data:`PRODUCT_CLASSES`)."""
    key: str
    """Observation id, solution id (the calibrator observation) or hourly key."""
    partition: str
    """The partition of :data:`ASSET_OF` it was made in."""
    paths: tuple[Path, ...]
    created_unix: float
    size_bytes: int
    blocker: str | None
    """Why it may not be removed yet (downstream work unfinished), or None."""

    @property
    def holders(self) -> set[str]:
        """Partitions whose runs read it: its own, and its hour's (the mosaic reads the hour's
        images). A window starting on the hour has the hour's key: both are taken as holders."""
        return {self.partition, self.partition[:13] + ":00"}


@dataclass(frozen=True)
class Removal:
    product: Product
    policy: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """What one pass removes, and what stays (bytes by class)."""

    removals: list[Removal]
    kept_bytes: dict[str, int]
    budget_bytes: float | None
    blocked: dict[str, int]
    """How many products their policy would remove but unfinished work or a running job still
    needs, by class."""

    @property
    def over_budget_bytes(self) -> int:
        """What the budget could not free: everything left is needed or kept forever."""
        if not self.budget_bytes:
            return 0
        return max(int(sum(self.kept_bytes.values()) - self.budget_bytes), 0)


def _unix(value: datetime | None, default: float) -> float:
    return default if value is None else unix_seconds(value)


def inventory(catalogue: ProductCatalogue, *, photometry: bool, mosaics: bool, validity_s: float,
              now: float | None = None) -> list[Product]:
    """Every product on disk, with what still needs it. ``photometry`` and ``mosaics``: whether
    the deployment makes those (an image waits for them only then); ``validity_s``: how far
    (s) from its observation a calibration solution may be assigned."""
    now = time.time() if now is None else now
    db, out = catalogue.db, catalogue.output_dir
    purged = {(r["product"], r["key"]): _unix(r["purged_at"], 0.0) for r in db.purged()}
    ms = {r["group_id"]: r for r in db.rows(measurement_sets)}
    calibrated = {r["group_id"]: r for r in db.rows(calibrated_measurement_sets)}
    imaged = {r["group_id"]: r for r in db.rows(observation_images)}
    measured = {r["image_id"] for r in db.rows(images)} if photometry else set()
    found: list[Product] = []

    def add(product, key, partition, paths, created, blocker):
        if (product, key) in purged and created <= purged[(product, key)]:
            return  # removed, and not made again since
        paths = tuple(Path(p) for p in paths if Path(p).exists())
        if paths:
            size = sum(fsutil.directory_size(p) for p in paths)
            found.append(Product(product, key, partition, paths, created, size, blocker))

    for group in catalogue.queue.groups(COMPLETED):
        if ("subbands", group.group_id) not in purged:
            add("subbands", group.group_id, windows.window_key(group.start), catalogue.queue.files(group.group_id),
                group.last_arrival, None if group.group_id in ms else "not converted yet")
    for gid, row in ms.items():
        add("raw_ms", gid, row["partition_key"], [row["path"]], _unix(row["created_at"], now),
            None if gid in calibrated else "not calibrated yet")
    for gid, row in calibrated.items():
        add("calibrated_ms", gid, row["partition_key"], [row["path"]], _unix(row["created_at"], now),
            None if gid in imaged else "not imaged yet")
    for gid, row in imaged.items():
        hour = row["partition_key"][:13] + ":00"
        blocker = ("not measured yet" if photometry and gid not in measured else
                   "its hour not mosaicked yet" if mosaics and not catalogue.mosaic(hour).exists else None)
        add("images", gid, row["partition_key"], [row["directory"]], _unix(row["created_at"], now), blocker)
    for directory in sorted(naming.product_root(out, "mosaics").glob("*/*")):
        if directory.name.startswith(".") or not directory.is_dir():
            continue
        stem = directory.name  # YYYY-MM-DD-HH00
        key = f"{stem[:13]}:{stem[13:]}"
        try:
            naming.hour_key(key)
        except ProductNameError:
            continue  # not a mosaic directory
        add("mosaics", key, key, [directory], directory.stat().st_mtime,
            "not measured yet" if photometry and f"mosaic:{key}" not in measured else None)
    uncalibrated = {r["solution_group_id"] for r in db.rows(calibration_assignments) if r["group_id"] not in calibrated}
    for row in db.rows(calibration_solutions):
        gid = row["group_id"]
        assignable_until = (row["mid_unix"] or now) + validity_s
        blocker = (f"assignable until {time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(assignable_until))}"
                   if now < assignable_until else
                   "assigned to observations not yet calibrated" if gid in uncalibrated else None)
        add("caltables", gid, row["partition_key"], [row["path"]], _unix(row["created_at"], now), blocker)
    return found


def plan(products: Iterable[Product], policies: dict[str, Policy], *, held: set[str] = frozenset(),
         budget_bytes: float | None = None, now: float | None = None) -> Plan:
    """What the ``policies`` (class -> :class:`Policy`) remove now. ``held``: partitions that
    running jobs hold; ``budget_bytes``: the most all products may take (None or 0: no budget)."""
    now = time.time() if now is None else now
    removals: list[Removal] = []
    kept: list[Product] = []
    blocked: dict[str, int] = {}

    def removable(p: Product) -> bool:
        return p.blocker is None and not (p.holders & held)

    for p in products:
        policy = policies[p.product]
        due = policy.kind == "until_downstream" or (policy.kind == "duration" and now - p.created_unix >= policy.seconds)
        if due and removable(p):
            reason = ("everything made from it exists" if policy.kind == "until_downstream"
                      else f"made {(now - p.created_unix) / 86400.0:.1f} d ago")
            removals.append(Removal(p, str(policy), reason))
        else:
            if due:
                blocked[p.product] = blocked.get(p.product, 0) + 1
            kept.append(p)
    total = sum(p.size_bytes for p in kept)
    if budget_bytes and total > budget_bytes:
        rank = {"budget": 0, "duration": 1}  # a duration class goes early only if the budget classes do not suffice
        candidates = sorted((p for p in kept if policies[p.product].kind in rank and removable(p)),
                            key=lambda p: (rank[policies[p.product].kind], p.created_unix))
        for p in candidates:
            if total <= budget_bytes:
                break
            removals.append(Removal(p, "budget", f"products at {total / 1e9:.1f} GB, budget {budget_bytes / 1e9:.1f} GB"))
            kept.remove(p)
            total -= p.size_bytes
    kept_bytes = {c: sum(p.size_bytes for p in kept if p.product == c) for c in PRODUCT_CLASSES}
    return Plan(removals, kept_bytes, budget_bytes or None, blocked)


def purge(removals: Iterable[Removal], db, still_held: Callable[[], set[str]]) -> list[dict]:
    """Remove each product: rename its paths aside (``.retired-*`` beside them, swept by crash
    recovery), so that a reader sees the product whole or not at all; ask ``still_held`` once
    more for the held partitions (a run may have started since the plan) and put the product
    back if one holds it; else delete it and record the removal in ``db``. Returns the records
    of what was removed."""
    done = []
    for removal in removals:
        p = removal.product
        moved: list[tuple[Path, Path]] = []
        for path in p.paths:
            aside = path.with_name(f"{fsutil.RETIRED_PREFIX}{uuid.uuid4().hex}-{path.name}")
            try:
                path.rename(aside)
            except FileNotFoundError:
                continue  # gone already
            moved.append((path, aside))
        if p.holders & still_held():
            for path, aside in moved:
                aside.rename(path)
            continue
        for _, aside in moved:
            fsutil.remove(aside)
        record = {"product": p.product, "key": p.key, "partition_key": p.partition,
                  "path": str(p.paths[0]) if len(p.paths) == 1 else str(p.paths[0].parent),
                  "size_bytes": p.size_bytes, "policy": removal.policy, "reason": removal.reason}
        db.record_purge(**record)
        done.append(record)
    return done


def steady_state_bytes(policies: dict[str, Policy], bytes_per_product: dict[str, float],
                       products_per_day: dict[str, float], days: float) -> dict[str, float]:
    """Bytes each class holds after ``days`` of running, when downstream work keeps up (a
    product waits for its downstream about one cadence, taken as none here): the arithmetic
    behind the README's table. ``forever`` and ``budget`` classes grow for the whole period."""
    held_days = {"forever": days, "budget": days, "until_downstream": 0.0}
    return {c: bytes_per_product[c] * products_per_day[c] * min(
        held_days.get(p.kind, p.seconds / 86400.0), days) for c, p in policies.items()}
