"""Production storage: the Dagster instance and the products database on a real PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from dsa_assets import partitions
from dsa_assets.definitions import build_definitions
from dsa_assets.products import ProductsDB
from dsa_assets.sim.sky import SKY_CATALOGUE
from resources.pipeline import PipelineResource
from resources.science import ScienceResource
from resources.settings import Settings

from ..conftest import SOLVING, scaled_imaging, settle

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv, **kw):
    """PostgreSQL refuses to run as root: run its tools as the 'postgres' user when root."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1; yields its connection settings."""
    import tempfile

    assert PG_BIN, "PostgreSQL server binaries missing: scripts/bootstrap.sh installs Debian's postgresql"
    bin_dir = PG_BIN[-1]
    # outside pytest's private (0700, root) temp tree: the server runs as 'postgres'
    root = Path(tempfile.mkdtemp(prefix="dsa110-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = _free_port()
    _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "dsa", "--auth=trust"])
    _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "pg.log"), "-w", "-o",
                  f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"])
    try:
        _as_postgres([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dsa", "dagster"])
        for db in ("products", "legacy"):
            _as_postgres([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "dsa", db])
        yield {"host": "127.0.0.1", "port": port, "user": "dsa", "password": "unused"}
    finally:
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def test_production_instance_and_products_on_postgres(postgres, group_copy, tmp_path, monkeypatch):
    group, incoming, _ = group_copy
    settle(incoming)
    for key, value in {"HOST": postgres["host"], "PORT": str(postgres["port"]), "USER": postgres["user"],
                       "PASSWORD": postgres["password"], "DB": "dagster"}.items():
        monkeypatch.setenv(f"DAGSTER_PG_{key}", value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "production" / "dagster.yaml", home / "dagster.yaml")
    products_url = f"postgresql://dsa@127.0.0.1:{postgres['port']}/products"
    pipeline = PipelineResource(input_dir=str(incoming), output_dir=str(tmp_path / "out"), stable_s=1,
                                products_db=products_url, reference_catalogue=str(incoming / SKY_CATALOGUE))
    science = ScienceResource(enable_photometry=True)
    # 4 deg across, so that forced photometry finds catalogue sources
    defs = build_definitions(Settings(pipeline=pipeline, imaging=scaled_imaging(size=512, cell_arcsec=30, niter=100),
                                      calibration=SOLVING, science=science))
    window = partitions.window_key(group.data_start)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = defs.resolve_job_def("observation_job").execute_in_process(instance=instance, partition_key=window)
        assert result.success
    # a second, independent instance object (another machine) sees the same history
    with dg.DagsterInstance.from_config(str(home)) as other:
        assert other.get_materialized_partitions(dg.AssetKey("measurement_set")) == {window}
        assert other.get_run_by_id(result.run_id).is_success
    row = ProductsDB(products_url).measurement_set(group.stamp)
    assert row is not None and row["partition_key"] == window
    # re-materializing replaces the product row, never duplicates it
    ProductsDB(products_url).record_measurement_set(**{k: v for k, v in row.items() if k != "created_at"})
    from sqlalchemy import func, select

    from dsa_assets.products import measurement_sets

    with ProductsDB(products_url).engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(measurement_sets)).scalar() == 1
    # calibration, photometry and light curves live there too; re-measuring replaces, never adds
    db = ProductsDB(products_url)
    assert db.solution(group.stamp)["valid"] is True and db.calibrated_ms(group.stamp)
    n = db.count_measurements()
    assert n > 0 and db.light_curve(db.measured_sources()[0])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert defs.resolve_job_def("observation_job").execute_in_process(instance=instance, partition_key=window).success
    assert db.count_measurements() == n


def test_schema_3_products_database_is_upgraded_on_postgres(postgres):
    """The version-3 measurements table (serial id, separate indexes) is rebuilt keyed by
    source and epoch: the old key's and indexes' names are free for the new table, every row
    is kept."""
    from sqlalchemy import create_engine, text

    url = f"postgresql://{postgres['user']}@{postgres['host']}:{postgres['port']}/legacy"
    with create_engine(url).begin() as conn:
        conn.execute(text(
            "CREATE TABLE measurements (id SERIAL PRIMARY KEY, image_id VARCHAR(64) NOT NULL, "
            "source_name VARCHAR(64) NOT NULL, epoch_unix FLOAT NOT NULL, kind VARCHAR(8) NOT NULL, "
            "image_kind VARCHAR(16) NOT NULL, flux_jy FLOAT NOT NULL, flux_err_jy FLOAT NOT NULL, "
            "local_rms_jy FLOAT, snr FLOAT, flags VARCHAR(64))"))
        conn.execute(text("CREATE INDEX ix_measurements_image_id ON measurements (image_id)"))
        conn.execute(text("CREATE INDEX ix_measurements_source_epoch ON measurements (source_name, epoch_unix)"))
        conn.execute(text(
            "INSERT INTO measurements (image_id, source_name, epoch_unix, kind, image_kind, flux_jy, flux_err_jy) "
            "VALUES ('b', 'S1', 400, 'forced', 'observation', 1.1, 0.001), "
            "('a', 'S1', 100, 'forced', 'observation', 1.0, 0.001), ('a', 'S1', 100, 'blind', 'observation', 0.7, 0.001)"))
    db = ProductsDB(url)
    assert [m["flux_jy"] for m in db.light_curve("S1")] == [1.0, 1.1]
    assert [m["flux_jy"] for m in db.light_curve("S1", kind="blind")] == [0.7]
    db.record_photometry({"image_id": "a", "kind": "observation", "path": "x", "epoch_unix": 100.0},
                         [{"source_name": "S1", "epoch_unix": 100.0, "kind": "forced", "flux_jy": 0.9,
                           "flux_err_jy": 0.001}])
    assert db.count_measurements() == 2 and ProductsDB(url).count_measurements() == 2
