"""The products database (SQLAlchemy): SQLite by default, any SQLAlchemy URL in production.

Writes are idempotent: a product is keyed by what it is (an observation's Measurement Set
by its group id), and re-materializing replaces the row instead of adding one.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
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
    and_,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from .exceptions import ProductsError
from .naming import parse_time
from .qa import EXCLUDED_FLAGS
from .variability import NEW_SOURCE_IMAGES

SCHEMA_VERSION = 8
"""2: calibration solutions, assignments and calibrated Measurement Sets.
3: images (observations and mosaics), sources and flux measurements.
4: measurements keyed (source, epoch, image, seq) and, on SQLite, stored in that order.
5: observation_images: every published observation image, recorded by the image asset.
6: purges: products removed by the retention policies.
7: image_quality: each measured image against the reference catalogue.
8: detections and uncatalogued: blind detections associated across epochs; source_statistics."""

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

detections = Table(
    "detections",
    metadata,
    Column("image_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False, doc="order among the image's detections"),
    Column("epoch_unix", Float, nullable=False),
    Column("source_name", String(64), nullable=False, index=True, doc="the source it is associated with"),
    Column("ra_deg", Float, nullable=False),
    Column("dec_deg", Float, nullable=False),
    Column("ra_err_arcsec", Float, nullable=False, doc="1-sigma, on the sky (fit and systematic)"),
    Column("dec_err_arcsec", Float, nullable=False),
    Column("flux_jy", Float, nullable=False),
    Column("snr", Float),
    Column("de_ruiter", Float, doc="de Ruiter radius to the source it joined; null when it began one"),
)

uncatalogued = Table(
    "uncatalogued",
    metadata,
    Column("name", String(64), primary_key=True, doc="a source of ``sources`` absent from the reference catalogue"),
    Column("ra_deg", Float, nullable=False, doc="error-weighted mean of its detections"),
    Column("dec_deg", Float, nullable=False),
    Column("ra_err_arcsec", Float, nullable=False),
    Column("dec_err_arcsec", Float, nullable=False),
    Column("n_detections", Integer, nullable=False),
    Column("first_epoch_unix", Float, index=True),
    Column("last_epoch_unix", Float),
    Column("new", Boolean, nullable=False, doc="when first detected, brighter than earlier images could have missed"),
)

source_statistics = Table(
    "source_statistics",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("n", Integer, doc="measurements counted (flagged ones left out)"),
    Column("mean_flux_jy", Float),
    Column("weighted_mean_jy", Float),
    Column("v", Float, doc="coefficient of variation"),
    Column("eta", Float, doc="weighted reduced chi^2 about the weighted mean"),
    Column("eta_threshold", Float, doc="eta at the table's per-source false-alarm probability for n"),
    Column("vs", Float),
    Column("m", Float),
    Column("variable", Boolean),
    Column("ese_score", Float, doc="dsa_assets.ese: best dip-and-caustic template's improvement"),
    Column("ese_t0_unix", Float),
    Column("ese_width_days", Float),
    Column("ese_depth", Float, doc="fraction of the mean flux"),
    Column("ese_candidate", Boolean),
    Column("trend_score", Float),
    Column("trend_per_year", Float, doc="fraction of the mean flux per year"),
    Column("trend", Boolean),
    Column("updated_at", DateTime(timezone=True)),
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


ASSOCIATION_LOCK = 110_001
"""PostgreSQL advisory lock key held while an image's detections are associated and recorded."""


@dataclass(frozen=True)
class Associated:
    """What recording an image's detections did: the uncatalogued sources it began (dicts with
    name, ra_deg, dec_deg, new) and the known sources its detections joined."""

    created: list[dict]
    joined: list[str]


def _unused(name: str, taken: set[str]) -> str:
    """``name``, or with the first free suffix -2, -3, ... (two sources within an arcsecond)."""
    k, candidate = 2, name
    while candidate in taken:
        candidate, k = f"{name}-{k}", k + 1
    return candidate


def unix_seconds(value: datetime) -> float:
    """Unix seconds of a time read from the database: SQLite gives them back without a time
    zone, and they are UTC."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for ``target``: URLs (``postgresql://...``) pass through, paths become
    SQLite files."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def _read_only_engine(url: str) -> Engine:
    """An engine whose connections the database itself keeps from writing."""
    if url.startswith("sqlite:///"):
        return create_engine(f"sqlite:///file:{url[len('sqlite:///'):]}?mode=ro&uri=true", future=True)
    if url.startswith("postgresql"):
        return create_engine(url, future=True, connect_args={"options": "-c default_transaction_read_only=on"})
    raise ProductsError(f"{url.split('://')[0]}: read-only access is implemented for SQLite and PostgreSQL")


def _needs_clustering(conn) -> bool:
    """Whether ``measurements`` is a schema-3 table (keyed by row id)."""
    inspector = inspect(conn)
    return inspector.has_table("measurements") and "seq" not in {
        c["name"] for c in inspector.get_columns("measurements")}


def _immediate_engine(url) -> Engine:
    """An engine whose transactions hold schema changes too and take the write lock first.
    Python's sqlite3 module begins a transaction only before INSERT/UPDATE/DELETE, so a CREATE
    or DROP would commit on its own and a failed upgrade could leave the table dropped:
    SQLAlchemy's documented remedy is to turn that off and emit BEGIN itself, here BEGIN
    IMMEDIATE so that two processes upgrading (or associating detections) at once take turns."""
    engine = create_engine(url, future=True, **({"connect_args": {"timeout": 60}} if str(url).startswith("sqlite") else {}))
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
    migration = _immediate_engine(engine.url)  # the URL object: its string form hides the password
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

    def __init__(self, target: str | Path, must_exist: bool = False, read_only: bool = False):
        """``must_exist``: refuse (ProductsError) an SQLite file that is not there instead of
        creating it, for readers. ``read_only``: the database itself refuses every write (SQLite
        opened with mode=ro, PostgreSQL sessions with default_transaction_read_only); the
        schema must already be there, and is neither created nor upgraded."""
        self.url = database_url(target)
        if self.url.startswith("sqlite:///"):
            path = Path(self.url[len("sqlite:///") :])
            if (must_exist or read_only) and not path.is_file():
                raise ProductsError(f"{path}: no products database there")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = _read_only_engine(self.url) if read_only else create_engine(self.url, future=True)
        self._immediate: Engine | None = None
        if read_only:
            return
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

    def uncalibrated_observations(self) -> list[dict]:
        """Observations whose Measurement Set has no calibration solution assigned: group_id,
        partition_key and mid_unix (its stamp plus half its duration; Unix s)."""
        ms, assigned = measurement_sets.c, calibration_assignments.c
        q = (select(ms.group_id, ms.partition_key, ms.duration_s)
             .select_from(measurement_sets.outerjoin(calibration_assignments, ms.group_id == assigned.group_id))
             .where(assigned.group_id.is_(None)).order_by(ms.group_id))
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [{"group_id": r.group_id, "partition_key": r.partition_key,
                 "mid_unix": parse_time(r.group_id).timestamp() + (r.duration_s or 0.0) / 2} for r in rows]

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

    @contextmanager
    def _serialized(self):
        """A write transaction no other writer interleaves with, so that detections are
        associated with the sources known when it starts: SQLite's BEGIN IMMEDIATE (waiting up
        to 60 s for the lock), PostgreSQL's transaction-level advisory lock."""
        if self.engine.dialect.name == "sqlite":
            if self._immediate is None:
                self._immediate = _immediate_engine(self.engine.url)
            with self._immediate.begin() as conn:
                yield conn
            return
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ASSOCIATION_LOCK})
            yield conn

    def record_photometry(self, image: dict, rows: list[dict], detected: list[dict] = (),
                          quality: dict | None = None, max_separation_arcsec: float = 60.0) -> Associated:
        """Replace an image's row, its quality against the catalogue (``quality``: the columns of
        ``image_quality``), its measurements (``rows``) and its detections in one transaction
        (re-materializing never duplicates).

        ``detected``: the image's blind detections, dicts with ra_deg, dec_deg, ra_err_arcsec,
        dec_err_arcsec (arcsec), flux_jy, flux_err_jy, local_rms_jy, snr, flags, source_name (the
        known source it was associated with, or None), de_ruiter and new (bright enough that
        earlier images would have shown it). One with no source is associated here with the
        uncatalogued sources known now (they may have been found since it was measured), within
        ``max_separation_arcsec`` and the de Ruiter limit, or begins a new uncatalogued source.
        Every detection is also stored as a ``blind`` measurement of its source, and each
        uncatalogued source's position is the error-weighted mean of its detections."""
        from . import association, catalogue

        image = {**image, "created_at": image.get("created_at") or datetime.now(UTC)}
        image_id, epoch = image["image_id"], image["epoch_unix"]
        with self._serialized() as conn:
            touched, gone = self._forget_image(conn, image_id)
            conn.execute(images.insert().values(**image))
            if quality is not None:
                conn.execute(image_quality.insert().values(image_id=image_id, **quality))
            # a source this image began is begun afresh by its detection: as the first time, this
            # image holds no forced measurement of it, and the detection is associated anew
            rows = [r for r in rows if r["source_name"] not in gone]
            named = [{**d, "source_name": None if d.get("source_name") in gone else d.get("source_name")} for d in detected]
            loose = [d for d in named if not d.get("source_name")]
            known = self._uncatalogued_near(conn, image["centre_ra_deg"], image["centre_dec_deg"],
                                            (image.get("radius_deg") or 0.0) * np.sqrt(2) + max_separation_arcsec / 3600
                                            ) if loose else []
            found = association.associate([association.Position("", d["ra_deg"], d["dec_deg"], d["ra_err_arcsec"],
                                                                d["dec_err_arcsec"]) for d in loose],
                                          known, max_separation_arcsec)
            created = []
            bases = {i: catalogue.iau_name(d["ra_deg"], d["dec_deg"], "DSA") for i, (d, (name, _)) in
                     enumerate(zip(loose, found)) if name is None}
            # the names already given near these positions (a name and its -2, -3, ... variants)
            taken = set(conn.execute(select(sources.c.name).where(
                or_(*[sources.c.name.like(f"{b}%") for b in set(bases.values())]))).scalars()) if bases else set()
            for i, (d, (name, r)) in enumerate(zip(loose, found)):
                if name is None:
                    name = _unused(bases[i], taken)
                    taken.add(name)
                    created.append({"name": name, "ra_deg": float(d["ra_deg"]) % 360.0, "dec_deg": float(d["dec_deg"]),
                                    "new": bool(d.get("new"))})
                d["source_name"], d["de_ruiter"] = name, r
            if created:
                conn.execute(sources.insert(), [{"name": c["name"], "ra_deg": c["ra_deg"], "dec_deg": c["dec_deg"],
                                                 "in_catalogue": False, "first_image_id": image_id} for c in created])
                conn.execute(uncatalogued.insert(), [{**c, "ra_err_arcsec": 0.0, "dec_err_arcsec": 0.0, "n_detections": 0,
                                                      "first_epoch_unix": epoch, "last_epoch_unix": epoch} for c in created])
            blind = [{"source_name": d["source_name"], "epoch_unix": epoch, "kind": "blind", "flux_jy": d["flux_jy"],
                      "flux_err_jy": d["flux_err_jy"], "local_rms_jy": d["local_rms_jy"], "snr": d["snr"],
                      "flags": d.get("flags", "")} for d in named]
            everything = list(rows) + blind
            if everything:
                conn.execute(measurements.insert(), [{**r, "image_id": image_id, "image_kind": image["kind"], "seq": i}
                                                     for i, r in enumerate(everything)])
            if named:
                r_or_none = [d.get("de_ruiter") for d in named]
                conn.execute(detections.insert(), [
                    {"image_id": image_id, "seq": i, "epoch_unix": epoch, "source_name": d["source_name"],
                     **{k: float(d[k]) for k in ("ra_deg", "dec_deg", "ra_err_arcsec", "dec_err_arcsec", "flux_jy")},
                     "snr": float(d["snr"]), "de_ruiter": None if r is None or not np.isfinite(r) else float(r)}
                    for i, (d, r) in enumerate(zip(named, r_or_none))])
            self._update_positions(conn, touched | {d["source_name"] for d in named})
        return Associated(created, sorted({d["source_name"] for d in named} - {c["name"] for c in created}))

    def _forget_image(self, conn, image_id: str) -> set[str]:
        """Delete an image's rows, measurements and detections, and the uncatalogued sources it
        began that no other image detected (with their measurements everywhere). Returns the
        sources whose detections changed and those deleted."""
        old = set(conn.execute(select(detections.c.source_name).where(detections.c.image_id == image_id)).scalars())
        for table in (measurements, images, image_quality, detections):
            conn.execute(table.delete().where(table.c.image_id == image_id))
        begun = set(conn.execute(select(sources.c.name).where(sources.c.first_image_id == image_id,
                                                             sources.c.in_catalogue.is_(False))).scalars())
        still_seen = set(conn.execute(select(detections.c.source_name).where(
            detections.c.source_name.in_(begun)).distinct()).scalars()) if begun else set()
        gone = begun - still_seen
        if gone:
            conn.execute(measurements.delete().where(measurements.c.source_name.in_(gone)))
            conn.execute(uncatalogued.delete().where(uncatalogued.c.name.in_(gone)))
            conn.execute(sources.delete().where(sources.c.name.in_(gone)))
        return old - gone, gone

    def _uncatalogued_near(self, conn, ra_deg: float, dec_deg: float, radius_deg: float) -> list:
        from . import association, catalogue

        u = uncatalogued.c
        # plain floats: psycopg2 does not adapt numpy scalars
        ra_deg, dec_deg, radius_deg = float(ra_deg), float(dec_deg), float(radius_deg)
        rows = conn.execute(select(uncatalogued).where(u.dec_deg.between(dec_deg - radius_deg, dec_deg + radius_deg)))
        near = [association.Position(r.name, r.ra_deg, r.dec_deg, r.ra_err_arcsec, r.dec_err_arcsec) for r in rows]
        if not near:
            return []
        return [p for p, sep in zip(near, catalogue.separation_deg(near, ra_deg, dec_deg)) if sep <= radius_deg]

    def _update_positions(self, conn, names: set[str]) -> None:
        """Each uncatalogued source among ``names``: its position, errors, count and first and
        last epochs from its detections."""
        from . import association

        names = set(conn.execute(select(uncatalogued.c.name).where(uncatalogued.c.name.in_(names))).scalars()) if names else set()
        if not names:
            return
        d = detections.c
        seen: dict[str, list] = {}
        for r in conn.execute(select(d.source_name, d.ra_deg, d.dec_deg, d.ra_err_arcsec, d.dec_err_arcsec, d.epoch_unix)
                              .where(d.source_name.in_(names)).order_by(d.epoch_unix)):
            seen.setdefault(r.source_name, []).append(r)
        for name, rs in seen.items():
            ra, dec, ra_err, dec_err = association.weighted_position(*(np.array([r[k] for r in rs]) for k in range(1, 5)))
            conn.execute(update(uncatalogued).where(uncatalogued.c.name == name).values(
                ra_deg=ra, dec_deg=dec, ra_err_arcsec=ra_err, dec_err_arcsec=dec_err, n_detections=len(rs),
                first_epoch_unix=rs[0].epoch_unix, last_epoch_unix=rs[-1].epoch_unix))
            conn.execute(update(sources).where(sources.c.name == name).values(ra_deg=ra, dec_deg=dec))

    def add_measurements(self, image_id: str, rows: list[dict]) -> None:
        """Append forced measurements to an image already recorded (sources found after it was
        measured), numbered after its existing ones."""
        if not rows:
            return
        with self.engine.begin() as conn:
            image = conn.execute(select(images.c.kind).where(images.c.image_id == image_id)).first()
            if image is None:
                raise ProductsError(f"{image_id}: no such image recorded")
            last = conn.execute(select(func.max(measurements.c.seq)).where(measurements.c.image_id == image_id)).scalar()
            start = -1 if last is None else int(last)
            conn.execute(measurements.insert(), [{**r, "image_id": image_id, "image_kind": image.kind, "seq": start + 1 + i}
                                                 for i, r in enumerate(rows)])

    def record_catalogue(self, catalogue_sources) -> int:
        """Add reference-catalogue sources not yet in ``sources``; returns how many were added."""
        with self.engine.begin() as conn:
            known = {r.name for r in conn.execute(select(sources.c.name))}
            fresh = [{"name": s.name, "ra_deg": s.ra_deg, "dec_deg": s.dec_deg, "catalogue_flux_jy": s.flux_jy,
                      "in_catalogue": True} for s in catalogue_sources if s.name not in known]
            if fresh:
                conn.execute(sources.insert(), fresh)
        return len(fresh)

    def uncatalogued_sources(self) -> list[dict]:
        """Every source absent from the reference catalogue, with its position measured from its
        detections (errors in arcsec; sources recorded before schema 8 have none) and whether it
        was new when first seen."""
        u = uncatalogued.c
        q = (select(sources.c.name, sources.c.ra_deg, sources.c.dec_deg, sources.c.first_image_id, u.ra_err_arcsec,
                    u.dec_err_arcsec, u.n_detections, u.first_epoch_unix, u.last_epoch_unix,
                    func.coalesce(u.new, True).label("new"))
             .select_from(sources.outerjoin(uncatalogued, u.name == sources.c.name))
             .where(sources.c.in_catalogue.is_(False)).order_by(sources.c.name))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def uncatalogued_positions(self) -> list:
        """The uncatalogued sources as catalogue entries (flux 0) carrying their measured position
        error (the larger axis, arcsec), for forced photometry and association."""
        from .catalogue import CatalogueSource

        return [CatalogueSource(s["name"], s["ra_deg"], s["dec_deg"], 0.0,
                                position_error_arcsec=max(s["ra_err_arcsec"] or 0, s["dec_err_arcsec"] or 0) or None)
                for s in self.uncatalogued_sources()]

    def new_sources(self, min_images: int = NEW_SOURCE_IMAGES) -> list[dict]:
        """Uncatalogued sources that were new when first seen (brighter than earlier images at
        their position could have missed) and are confirmed: detected in ``min_images``
        observation images, or in as many mosaics (a mosaic holds its hour's observations, so
        one image and its hour's mosaic are one look). Each row carries
        ``n_observation_images`` and ``n_mosaics``."""
        return [s for s in self._new_when_first_seen() if _confirmed(s, min_images)]

    def new_source_candidates(self, min_images: int = NEW_SOURCE_IMAGES) -> list[dict]:
        """Sources that were new when first seen but not yet confirmed (see :meth:`new_sources`):
        a single look's noise peak or artefact, or a transient shorter than the looks that cover
        it."""
        return [s for s in self._new_when_first_seen() if not _confirmed(s, min_images)]

    def _new_when_first_seen(self) -> list[dict]:
        d = detections.c
        q = (select(d.source_name, images.c.kind, func.count(func.distinct(d.image_id)))
             .select_from(detections.join(images, images.c.image_id == d.image_id)
                          .join(uncatalogued, uncatalogued.c.name == d.source_name))
             .where(uncatalogued.c.new.is_(True)).group_by(d.source_name, images.c.kind))
        with self.engine.connect() as conn:
            looks = {(name, kind): n for name, kind, n in conn.execute(q)}
        return [{**s, "n_observation_images": looks.get((s["name"], "observation"), 0),
                 "n_mosaics": looks.get((s["name"], "mosaic"), 0)}
                for s in self.uncatalogued_sources() if s["new"]]

    def source_detections(self, name: str) -> list[dict]:
        """One source's detections in time order (positions in degrees, errors in arcsec)."""
        with self.engine.connect() as conn:
            q = select(detections).where(detections.c.source_name == name).order_by(detections.c.epoch_unix)
            return [dict(r._mapping) for r in conn.execute(q)]

    def record_source_statistics(self, rows: list[dict]) -> None:
        """Replace every source's statistics (the variability table) in one transaction."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(source_statistics.delete())
            if rows:
                conn.execute(source_statistics.insert(), [{**r, "updated_at": now} for r in rows])

    def source_statistics(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(source_statistics).order_by(source_statistics.c.name))]

    def source(self, name: str) -> dict | None:
        """One source: its catalogue row, its statistics (None until the variability table
        counts it) and, if uncatalogued, its measured position and errors."""
        u, st = uncatalogued.c, source_statistics.c
        q = (select(sources, u.ra_err_arcsec, u.dec_err_arcsec, u.n_detections, u.first_epoch_unix, u.new,
                    *[c for c in source_statistics.columns if c.name != "name"])
             .select_from(sources.outerjoin(uncatalogued, u.name == sources.c.name)
                          .outerjoin(source_statistics, st.name == sources.c.name))
             .where(sources.c.name == name))
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        return dict(r._mapping) if r else None

    def latest_image_epoch(self) -> float | None:
        """The epoch (Unix s) of the latest image measured, or None."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(images.c.epoch_unix))).scalar()

    def counts(self) -> dict[str, int]:
        """How many sources, uncatalogued sources and images are recorded."""
        with self.engine.connect() as conn:
            def count(table, *where):
                return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar())

            return {"sources": count(sources), "uncatalogued": count(sources, sources.c.in_catalogue.is_(False)),
                    "images": count(images)}

    def sources(self) -> list[dict]:
        """Every source (catalogue and uncatalogued), by name."""
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(sources).order_by(sources.c.name))]

    def find_sources(self, text: str, limit: int = 50) -> list[dict]:
        """Sources whose name contains ``text`` (case-insensitive), at most ``limit``."""
        with self.engine.connect() as conn:
            q = select(sources).where(sources.c.name.ilike(f"%{text}%")).order_by(sources.c.name).limit(limit)
            return [dict(r._mapping) for r in conn.execute(q)]

    def sources_within(self, ra_deg: float, dec_deg: float, radius_deg: float) -> list[dict]:
        """Sources within ``radius_deg`` of a position (degrees), nearest first, each with its
        distance ``separation_deg`` and statistics where there are some."""
        from . import catalogue

        st = source_statistics.c
        ra_deg, dec_deg, radius_deg = float(ra_deg), float(dec_deg), float(radius_deg)
        q = (select(sources, *[c for c in source_statistics.columns if c.name != "name"])
             .select_from(sources.outerjoin(source_statistics, st.name == sources.c.name))
             .where(sources.c.dec_deg.between(dec_deg - radius_deg, dec_deg + radius_deg)))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        if not rows:
            return []

        sep = catalogue.angular_distance_deg([r["ra_deg"] for r in rows], [r["dec_deg"] for r in rows], ra_deg, dec_deg)
        return sorted(({**r, "separation_deg": float(d)} for r, d in zip(rows, sep) if d <= radius_deg),
                      key=lambda r: r["separation_deg"])

    def image_quality(self, image_id: str) -> dict | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(image_quality).where(image_quality.c.image_id == image_id)).first()
        return dict(r._mapping) if r else None

    def image(self, image_id: str) -> dict | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(images).where(images.c.image_id == image_id)).first()
        return dict(r._mapping) if r else None

    def images_before(self, epoch_unix: float, kind: str = "observation", since_unix: float | None = None,
                      near: tuple[float, float, float] | None = None) -> list[dict]:
        """Images of ``kind`` whose epoch (Unix s) is before ``epoch_unix`` (and not before
        ``since_unix``), oldest first; with ``near`` (ra_deg, dec_deg, radius_deg), only those
        whose centre is within ``radius_deg`` of that position (a year holds about 2,500
        images of one part of the sky among 100,000)."""
        c = images.c
        q = select(images).where(c.epoch_unix < epoch_unix, c.kind == kind).order_by(c.epoch_unix)
        if since_unix is not None:
            q = q.where(c.epoch_unix >= since_unix)
        if near is not None:
            near = tuple(float(v) for v in near)  # psycopg2 does not adapt numpy scalars
            q = q.where(c.centre_dec_deg.between(near[1] - near[2], near[1] + near[2]))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        if near is None or not rows:
            return rows
        from . import catalogue

        sep = catalogue.angular_distance_deg([r["centre_ra_deg"] for r in rows], [r["centre_dec_deg"] for r in rows],
                                             near[0], near[1])
        return [r for r, d in zip(rows, sep) if d <= near[2]]

    def light_curve(self, source_name: str, kind: str = "forced", image_kind: str | None = "observation",
                    usable_only: bool = False) -> list[dict]:
        """One source's measurements in time order: one range of the primary key. Each row says
        whether its statistics count it (``counted``): not when flagged as unfit
        (``qa.EXCLUDED_FLAGS``: an image that failed the catalogue checks, a blend, a low primary
        beam), nor, for an uncatalogued source, the measurement in the image that began it
        (``discovery``: its detection there was picked for being high among every beam of the
        image, so counted, a noise peak or an artefact would look like a flare; the new-source
        rule judges it).
        ``usable_only``: the counted rows alone."""
        m = measurements.c
        first_image = select(sources.c.first_image_id).where(
            sources.c.name == source_name, sources.c.in_catalogue.is_(False)).scalar_subquery()
        discovery = func.coalesce(m.image_id == first_image, False)
        counted = and_(*(~func.coalesce(m.flags, "").contains(flag) for flag in EXCLUDED_FLAGS), ~discovery)
        q = select(m.epoch_unix, m.flux_jy, m.flux_err_jy, m.local_rms_jy, m.snr, m.image_id, m.flags,
                   discovery.label("discovery"), counted.label("counted")).where(
            m.source_name == source_name, m.kind == kind)
        if image_kind:
            q = q.where(m.image_kind == image_kind)
        if usable_only:
            q = q.where(counted)
        with self.engine.connect() as conn:
            return [{**r._mapping, "discovery": bool(r.discovery), "counted": bool(r.counted)}
                    for r in conn.execute(q.order_by(m.epoch_unix))]

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


def _confirmed(source: dict, min_images: int) -> bool:
    return max(source["n_observation_images"], source["n_mosaics"]) >= min_images
