"""The products database (SQLAlchemy): SQLite by default, any SQLAlchemy URL in production.

Writes are idempotent: a product is keyed by what it is (an observation's Measurement Set
by its group id), and re-materializing replaces the row instead of adding one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .exceptions import ProductsError
from .qa import EXCLUDED_FLAGS

SCHEMA_VERSION = 7
"""2: calibration solutions, assignments and calibrated Measurement Sets.
3: images (observations and mosaics), sources and flux measurements.
4: measurements keyed (source, epoch, image, seq) and, on SQLite, stored in that order.
5: observation_images: every published observation image, recorded by the image asset.
6: purges: products removed by the retention policies.
7: image_quality: each measured image against the reference catalogue."""

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

observation_images = Table(
    "observation_images",
    metadata,
    Column("group_id", String(32), primary_key=True),
    Column("partition_key", String(32), index=True),
    Column("directory", String(1024), nullable=False, doc="the published image set (FITS planes, thumbnail)"),
    Column("imager", String(16)),
    Column("rms_jy", Float, doc="residual rms (Jy/beam)"),
    Column("rms_over_thermal", Float),
    Column("created_at", DateTime(timezone=True)),
)


images = Table(
    "images",
    metadata,
    Column("image_id", String(64), primary_key=True, doc="observation stamp, or 'mosaic:<hour key>'"),
    Column("kind", String(16), nullable=False, doc="observation | mosaic"),
    Column("partition_key", String(32), index=True),
    Column("path", String(1024), nullable=False),
    Column("epoch_unix", Float, index=True, doc="mid time of the data, Unix seconds (UTC)"),
    Column("centre_ra_deg", Float),
    Column("centre_dec_deg", Float),
    Column("radius_deg", Float, doc="half the image's extent"),
    Column("rms_jy", Float, doc="median noise of the measured plane (Jy/beam)"),
    Column("beam_major_arcsec", Float),
    Column("beam_minor_arcsec", Float),
    Column("beam_pa_deg", Float),
    Column("n_inputs", Integer, doc="images combined (mosaics)"),
    Column("created_at", DateTime(timezone=True)),
)

sources = Table(
    "sources",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("catalogue_flux_jy", Float, doc="reference-catalogue flux at 1.4 GHz; null for new sources"),
    Column("in_catalogue", Boolean, nullable=False),
    Column("first_image_id", String(64), doc="for new sources: the image they were found in"),
)

measurements = Table(
    "measurements",
    metadata,
    # The key leads with the source so that one light curve is one contiguous range of the
    # table: on SQLite the table is stored in key order (WITHOUT ROWID), and a year's light
    # curve reads a few pages instead of one page per epoch scattered over the file.
    Column("source_name", String(64), primary_key=True),
    Column("epoch_unix", Float, primary_key=True),
    Column("image_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False,
           doc="position in the image's measurement list (two blind detections may match one source)"),
    Column("kind", String(8), nullable=False, doc="forced | blind"),
    Column("image_kind", String(16), nullable=False, doc="observation | mosaic (the image's kind, kept here so "
                                                          "that a light curve needs no join)"),
    Column("flux_jy", Float, nullable=False),
    Column("flux_err_jy", Float, nullable=False),
    Column("local_rms_jy", Float),
    Column("snr", Float),
    Column("flags", String(64)),
    Index("ix_measurements_image_id", "image_id"),
    sqlite_with_rowid=False,
)

image_quality = Table(
    "image_quality",
    metadata,
    Column("image_id", String(64), primary_key=True),
    Column("flux_ratio", Float, doc="median measured / catalogue flux of bright, unblended reference sources"),
    Column("flux_scatter", Float, doc="robust scatter of those ratios"),
    Column("n_flux", Integer),
    Column("offset_ra_arcsec", Float, doc="median offset of matched detections, RA times cos Dec"),
    Column("offset_dec_arcsec", Float),
    Column("n_position", Integer),
    Column("problems", Text, doc="why the image is kept out of light curves; empty when it is not"),
)

purges = Table(
    "purges",
    metadata,
    Column("product", String(16), primary_key=True, doc="product class (dsa_assets.retention.PRODUCT_CLASSES)"),
    Column("key", String(32), primary_key=True, doc="observation id, solution id or hourly key"),
    Column("partition_key", String(32), index=True),
    Column("path", String(1024), nullable=False),
    Column("size_bytes", Integer, doc="bytes freed"),
    Column("policy", String(32), doc="the policy that removed it"),
    Column("reason", Text),
    Column("purged_at", DateTime(timezone=True), index=True),
)


def unix_seconds(value: datetime) -> float:
    """Unix seconds of a time read from the database: SQLite gives them back without a time
    zone, and they are UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: URLs (``postgresql://...``) pass through, paths become
    SQLite files."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def _needs_clustering(conn) -> bool:
    """Whether ``measurements`` is a schema-3 table (keyed by row id)."""
    inspector = inspect(conn)
    return inspector.has_table("measurements") and "seq" not in {
        c["name"] for c in inspector.get_columns("measurements")}


def _migration_engine(url) -> Engine:
    """An engine whose transactions hold schema changes too. Python's sqlite3 module begins a
    transaction only before INSERT/UPDATE/DELETE, so a CREATE or DROP would commit on its own
    and a failed upgrade could leave the table dropped: SQLAlchemy's documented remedy is to
    turn that off and emit BEGIN itself, here BEGIN IMMEDIATE so that two processes upgrading
    at once take turns."""
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection, _record):
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    return engine


def _cluster_measurements(engine: Engine) -> None:
    """Schema 3 -> 4: rebuild a measurements table keyed by row id as one keyed by source and
    epoch, numbering each image's rows in their original order, in one transaction. A no-op
    on newer databases, and harmless when another process upgrades the same one at once."""
    with engine.connect() as conn:
        if not _needs_clustering(conn):
            return
    migration = _migration_engine(engine.url)  # the URL object: its string form hides the password
    try:
        with migration.begin() as conn:
            if not _needs_clustering(conn):
                return
            # copy, then drop: dropping takes the old key and indexes with it, whose names the
            # new table reuses (a rename would keep them on PostgreSQL)
            conn.execute(text("CREATE TABLE measurements_v3 AS SELECT * FROM measurements"))
            conn.execute(text("DROP TABLE measurements"))
            measurements.create(conn)
            kept = ", ".join(c.name for c in measurements.columns if c.name != "seq")
            conn.execute(text(f"INSERT INTO measurements ({kept}, seq) SELECT {kept}, "
                              f"ROW_NUMBER() OVER (PARTITION BY image_id ORDER BY id) - 1 FROM measurements_v3"))
            conn.execute(text("DROP TABLE measurements_v3"))
    except DBAPIError:
        with engine.connect() as conn:
            if _needs_clustering(conn):
                raise  # nobody else upgraded it: a real failure
    finally:
        migration.dispose()


class ProductsDB:
    """Handle on the products database; creates the schema on first use."""

    def __init__(self, target: str | Path, must_exist: bool = False):
        """``must_exist``: refuse (ProductsError) an SQLite file that is not there instead of
        creating it, for readers."""
        self.url = database_url(target)
        if self.url.startswith("sqlite:///"):
            path = Path(self.url[len("sqlite:///") :])
            if must_exist and not path.is_file():
                raise ProductsError(f"{path}: no products database there")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(self.url, future=True)
        _cluster_measurements(self.engine)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            # create_all added any tables a version-1 database lacked; record the version
            if conn.execute(select(schema_info.c.version)).first() is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            else:
                conn.execute(update(schema_info).values(version=SCHEMA_VERSION))

    def _replace(self, table: Table, row: dict) -> None:
        row.setdefault("created_at", datetime.now(UTC))
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

    def record_observation_image(self, **row) -> None:
        self._replace(observation_images, row)

    def observation_image(self, group_id: str) -> dict | None:
        return self._get(observation_images, group_id)

    def observation_images_since(self, unix: float) -> list[dict]:
        """Observation images recorded after ``unix`` (Unix s), oldest first."""
        c = observation_images.c
        since = datetime.fromtimestamp(unix, UTC)
        with self.engine.connect() as conn:
            rows = conn.execute(select(observation_images).where(c.created_at > since).order_by(c.created_at))
            return [dict(r._mapping) for r in rows]

    def record_purge(self, **row) -> None:
        """A product removed by retention (insert or replace: a remade and again removed
        product keeps its latest removal)."""
        row.setdefault("purged_at", datetime.now(UTC))
        with self.engine.begin() as conn:
            conn.execute(purges.delete().where(purges.c.product == row["product"], purges.c.key == row["key"]))
            conn.execute(purges.insert().values(**row))

    def purged(self, product: str | None = None, key: str | None = None) -> list[dict]:
        """Removals recorded by retention (of one product class, of one observation, solution
        or hour), oldest first."""
        q = select(purges).order_by(purges.c.purged_at)
        if product:
            q = q.where(purges.c.product == product)
        if key:
            q = q.where(purges.c.key == key)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def rows(self, table: Table) -> list[dict]:
        """Every row of one of the product tables (what retention takes stock of)."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(table))]

    # -- photometry ----------------------------------------------------------------------------

    def record_photometry(self, image: dict, rows: list[dict], new_sources: list[dict] = (),
                          quality: dict | None = None) -> None:
        """Replace an image's row, its quality against the catalogue (``quality``: the columns
        of ``image_quality``) and all its measurements in one transaction (re-materializing
        never duplicates), and add ``new_sources`` not yet known."""
        image = {**image, "created_at": image.get("created_at") or datetime.now(UTC)}
        with self.engine.begin() as conn:
            conn.execute(measurements.delete().where(measurements.c.image_id == image["image_id"]))
            conn.execute(images.delete().where(images.c.image_id == image["image_id"]))
            conn.execute(image_quality.delete().where(image_quality.c.image_id == image["image_id"]))
            conn.execute(images.insert().values(**image))
            if quality is not None:
                conn.execute(image_quality.insert().values(image_id=image["image_id"], **quality))
            if rows:
                conn.execute(measurements.insert(), [{**r, "image_id": image["image_id"], "image_kind": image["kind"],
                                                      "seq": i} for i, r in enumerate(rows)])
            known = {r.name for r in conn.execute(select(sources.c.name).where(
                sources.c.name.in_([s["name"] for s in new_sources])))} if new_sources else set()
            fresh = [s for s in new_sources if s["name"] not in known]
            if fresh:
                conn.execute(sources.insert(), fresh)

    def record_catalogue(self, catalogue_sources) -> int:
        """Add reference-catalogue sources not yet in ``sources``; returns how many were added."""
        with self.engine.begin() as conn:
            known = {r.name for r in conn.execute(select(sources.c.name))}
            fresh = [{"name": s.name, "ra_deg": s.ra_deg, "dec_deg": s.dec_deg, "catalogue_flux_jy": s.flux_jy,
                      "in_catalogue": True} for s in catalogue_sources if s.name not in known]
            if fresh:
                conn.execute(sources.insert(), fresh)
        return len(fresh)

    def new_sources(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(sources).where(sources.c.in_catalogue.is_(False)))]

    def image_quality(self, image_id: str) -> dict | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(image_quality).where(image_quality.c.image_id == image_id)).first()
        return dict(r._mapping) if r else None

    def image(self, image_id: str) -> dict | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(images).where(images.c.image_id == image_id)).first()
        return dict(r._mapping) if r else None

    def images_before(self, epoch_unix: float, kind: str = "observation") -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(images).where(images.c.epoch_unix < epoch_unix, images.c.kind == kind))
            return [dict(r._mapping) for r in rows]

    def light_curve(self, source_name: str, kind: str = "forced", image_kind: str | None = "observation",
                    usable_only: bool = False) -> list[dict]:
        """One source's measurements in time order: one range of the primary key.
        ``usable_only``: without those flagged as unfit for statistics (``qa.EXCLUDED_FLAGS``:
        an image that failed the catalogue checks, a blend)."""
        m = measurements.c
        q = select(m.epoch_unix, m.flux_jy, m.flux_err_jy, m.local_rms_jy, m.snr, m.image_id, m.flags).where(
            m.source_name == source_name, m.kind == kind)
        if image_kind:
            q = q.where(m.image_kind == image_kind)
        if usable_only:
            for flag in EXCLUDED_FLAGS:
                q = q.where(~func.coalesce(m.flags, "").contains(flag))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(m.epoch_unix))]

    def image_measurements(self, image_id: str, kind: str = "forced") -> list[dict]:
        """One image's measurements of ``kind``, in the order they were made."""
        m = measurements.c
        q = select(measurements).where(m.image_id == image_id, m.kind == kind).order_by(m.seq)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def measured_sources(self, kind: str = "forced") -> list[str]:
        with self.engine.connect() as conn:
            q = select(measurements.c.source_name).where(measurements.c.kind == kind).distinct()
            return sorted(r[0] for r in conn.execute(q))

    def count_measurements(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(measurements)).scalar())
