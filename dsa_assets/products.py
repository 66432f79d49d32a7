"""The products database (SQLAlchemy): SQLite by default, any SQLAlchemy URL in production.

Writes are idempotent: a product is keyed by what it is (an observation's Measurement Set
by its group id), and re-materializing replaces the row instead of adding one.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Column, DateTime, Float, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.engine import Engine

SCHEMA_VERSION = 1

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
            if conn.execute(select(schema_info.c.version)).first() is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))

    def record_measurement_set(self, **row) -> None:
        """Insert or replace the row of one observation's Measurement Set."""
        row.setdefault("created_at", datetime.now(timezone.utc))
        with self.engine.begin() as conn:
            conn.execute(measurement_sets.delete().where(measurement_sets.c.group_id == row["group_id"]))
            conn.execute(measurement_sets.insert().values(**row))

    def measurement_set(self, group_id: str) -> dict | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(measurement_sets).where(measurement_sets.c.group_id == group_id)).first()
        return dict(r._mapping) if r else None
