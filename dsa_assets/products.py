"""The products database (SQLAlchemy): SQLite by default, any SQLAlchemy URL in production.

Writes are idempotent: a product is keyed by what it is (an observation's Measurement Set
by its group id), and re-materializing replaces the row instead of adding one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import json

from sqlalchemy import Boolean, Column, DateTime, Float, Integer, MetaData, String, Table, Text, create_engine, select, update
from sqlalchemy.engine import Engine

SCHEMA_VERSION = 2
"""2: calibration solutions, assignments and calibrated Measurement Sets."""

metadata = MetaData()

schema_info = Table("schema_info", metadata, Column("version", Integer, primary_key=True))

measurement_sets = Table(
    "measurement_sets",
    metadata,
    Column("group_id", String(32), primary_key=True, doc="canonical observation stamp (UTC)"),
    Column("partition_key", String(32), index=True),
    Column("path", String(1024), nullable=False),
    Column("size_bytes", Integer),
    Column("n_rows", Integer),
    Column("n_channels", Integer),
    Column("freq_min_hz", Float),
    Column("freq_max_hz", Float),
    Column("subbands_present", String(64), doc="comma-separated subband indices"),
    Column("duration_s", Float),
    Column("phase_center_ra_deg", Float),
    Column("phase_center_dec_deg", Float),
    Column("created_at", DateTime(timezone=True)),
)


calibration_solutions = Table(
    "calibration_solutions",
    metadata,
    Column("group_id", String(32), primary_key=True, doc="calibrator observation solved on"),
    Column("partition_key", String(32), index=True),
    Column("calibrator", String(64)),
    Column("mid_unix", Float, index=True, doc="mid-observation time, Unix seconds (UTC)"),
    Column("path", String(1024), nullable=False, doc="solution directory (K, B, G tables)"),
    Column("refant", String(16)),
    Column("valid", Boolean, nullable=False),
    Column("quality", Text, doc="JSON: SNR, flagged fractions, flux ratio, phase scatter"),
    Column("created_at", DateTime(timezone=True)),
)

calibration_assignments = Table(
    "calibration_assignments",
    metadata,
    Column("group_id", String(32), primary_key=True, doc="observation to calibrate"),
    Column("partition_key", String(32), index=True),
    Column("solution_group_id", String(32), nullable=False),
    Column("solution_partition_key", String(32)),
    Column("offset_s", Float, doc="observation minus solution mid time (s)"),
    Column("created_at", DateTime(timezone=True)),
)

calibrated_measurement_sets = Table(
    "calibrated_measurement_sets",
    metadata,
    Column("group_id", String(32), primary_key=True),
    Column("partition_key", String(32), index=True),
    Column("path", String(1024), nullable=False),
    Column("solution_group_id", String(32)),
    Column("flagged_fraction", Float),
    Column("created_at", DateTime(timezone=True)),
)


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: URLs (``postgresql://...``) pass through, paths become
    SQLite files."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


class ProductsDB:
    """Handle on the products database; creates the schema on first use."""

    def __init__(self, target: str | Path):
        self.url = database_url(target)
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(self.url, future=True)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            # create_all added any tables a version-1 database lacked; record the version
            if conn.execute(select(schema_info.c.version)).first() is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            else:
                conn.execute(update(schema_info).values(version=SCHEMA_VERSION))

    def _replace(self, table: Table, row: dict) -> None:
        row.setdefault("created_at", datetime.now(timezone.utc))
        with self.engine.begin() as conn:
            conn.execute(table.delete().where(table.c.group_id == row["group_id"]))
            conn.execute(table.insert().values(**row))

    def _get(self, table: Table, group_id: str) -> dict | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(table).where(table.c.group_id == group_id)).first()
        return dict(r._mapping) if r else None

    def record_measurement_set(self, **row) -> None:
        """Insert or replace the row of one observation's Measurement Set."""
        self._replace(measurement_sets, row)

    def measurement_set(self, group_id: str) -> dict | None:
        return self._get(measurement_sets, group_id)

    def record_solution(self, *, quality: dict, **row) -> None:
        """Insert or replace a calibration solution (``quality`` is stored as JSON)."""
        self._replace(calibration_solutions, {**row, "quality": json.dumps(quality)})

    def solution(self, group_id: str) -> dict | None:
        row = self._get(calibration_solutions, group_id)
        if row:
            row["quality"] = json.loads(row["quality"] or "{}")
        return row

    def nearest_solution(self, mid_unix: float, max_offset_s: float) -> dict | None:
        """The valid solution whose observation is nearest in time to ``mid_unix`` (Unix s),
        at most ``max_offset_s`` away; earlier wins a tie."""
        c = calibration_solutions.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(calibration_solutions).where(
                    c.valid.is_(True), c.mid_unix >= mid_unix - max_offset_s, c.mid_unix <= mid_unix + max_offset_s
                )
            ).all()
        if not rows:
            return None
        best = min(rows, key=lambda r: (abs(r.mid_unix - mid_unix), r.mid_unix))
        return self.solution(best.group_id)

    def record_assignment(self, **row) -> None:
        """Which solution calibrates an observation (insert or replace)."""
        self._replace(calibration_assignments, row)

    def assignment(self, group_id: str) -> dict | None:
        return self._get(calibration_assignments, group_id)

    def record_calibrated_ms(self, **row) -> None:
        self._replace(calibrated_measurement_sets, row)

    def calibrated_ms(self, group_id: str) -> dict | None:
        return self._get(calibrated_measurement_sets, group_id)
