"""Retention: each policy, the disk budget, what unfinished work and running jobs hold, a purge
racing a run, and the Dagster job's records. Products are directories and files of known
sizes recorded in a real queue and products database (retention reads nothing inside them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from dsa_assets import naming, windows
from dsa_assets.exceptions import ProductsError
from dsa_assets.product_catalogue import ProductCatalogue
from dsa_assets.products import ProductsDB
from dsa_assets.retention import POLICY_FORMS, Policy, inventory, plan, purge, steady_state_bytes
from dsa_assets.streaming.queue import SubbandQueue

T0 = datetime(2026, 3, 1, 12, 0, 7, tzinfo=UTC)
NOW = (T0 + timedelta(days=10)).timestamp()
STEPS = ("subbands", "raw_ms", "calibrated_ms", "images", "measured")
SIZES = {"subbands": 1000, "raw_ms": 400, "calibrated_ms": 300, "images": 50}
"""Bytes of one observation's product of each class (subbands: each of two files)."""


def _write(path: Path, n_bytes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * n_bytes)


class Deployment:
    """An output directory, queue and products database holding made-up products."""

    def __init__(self, root: Path):
        self.out, self.inp = root / "out", root / "in"
        self.db = ProductsDB(root / "products.sqlite3")
        self.catalogue = ProductCatalogue(SubbandQueue(root / "queue.sqlite3", expected_subbands=2), self.db, self.out)

    def observation(self, i: int, upto: str = "measured", age_days: float = 5.0, solution: str | None = None) -> str:
        """Observation ``i`` (one per cadence from T0) with its products up to step ``upto``,
        made ``age_days`` before NOW; calibrated with ``solution`` (default its own)."""
        t = T0 + timedelta(seconds=309 * i)
        gid, window = naming.format_time(t), windows.window_key(t)
        made = datetime.fromtimestamp(NOW - age_days * 86400, UTC)
        steps = STEPS[: STEPS.index(upto) + 1]
        queue = self.catalogue.queue
        for sb in range(2):
            f = self.inp / naming.subband_file_name(gid, sb)
            _write(f, SIZES["subbands"])
            queue.register(f, file_time=t, subband=sb, now=made.timestamp())
        if "raw_ms" in steps:
            ms = naming.ms_path(self.out, gid)
            _write(ms / "table.dat", SIZES["raw_ms"])
            queue.claim(gid)
            queue.complete(gid, str(ms))
            self.db.record_measurement_set(group_id=gid, partition_key=window, path=str(ms), created_at=made)
            self.db.record_assignment(group_id=gid, partition_key=window, solution_group_id=solution or gid)
        if "calibrated_ms" in steps:
            cal = naming.calibrated_ms_path(self.out, gid)
            _write(cal / "table.dat", SIZES["calibrated_ms"])
            self.db.record_calibrated_ms(group_id=gid, partition_key=window, path=str(cal), created_at=made)
        if "images" in steps:
            _write(naming.image_file(self.out, gid, "image"), SIZES["images"])
            self.db.record_observation_image(group_id=gid, partition_key=window,
                                             directory=str(naming.image_dir(self.out, gid)), created_at=made)
        if "measured" in steps:
            self.db.record_photometry({"image_id": gid, "kind": "observation", "partition_key": window,
                                       "path": "x", "epoch_unix": t.timestamp()}, [])
        return gid

    def solution(self, gid: str, mid_unix: float) -> Path:
        path = naming.caltable_dir(self.out, gid)
        _write(path / "solution.json", 10)
        self.db.record_solution(group_id=gid, partition_key=windows.window_key(naming.parse_time(gid)),
                                calibrator="3C286", mid_unix=mid_unix, path=str(path), valid=True, quality={})
        return path

    def stock(self, photometry=True, mosaics=False, validity_s=6 * 3600.0):
        return inventory(self.catalogue, photometry=photometry, mosaics=mosaics, validity_s=validity_s, now=NOW)


def policies(**given) -> dict[str, Policy]:
    base = dict.fromkeys(("subbands", "raw_ms", "calibrated_ms", "images", "mosaics", "caltables"), "forever")
    return {c: Policy.parse(v) for c, v in {**base, **given}.items()}


def removed(the_plan) -> set[tuple[str, str]]:
    return {(r.product.product, r.product.key) for r in the_plan.removals}


@pytest.fixture
def dep(tmp_path):
    return Deployment(tmp_path)


def test_policy_forms():
    assert Policy.parse("forever").kind == "forever" and Policy.parse(" Until_Downstream ").kind == "until_downstream"
    assert Policy.parse("36h").seconds == 36 * 3600 and str(Policy.parse("36h")) == "36h"
    assert str(Policy.parse("168h")) == "7d" and Policy.parse("1.5d").seconds == 1.5 * 86400
    for bad in ("week", "7", "-1d", "", "7 days"):
        with pytest.raises(ValueError, match="not a retention policy") as info:
            Policy.parse(bad)
        assert POLICY_FORMS in str(info.value)


def test_until_downstream_waits_for_everything_made_from_each_product(dep):
    done = dep.observation(0)
    converted = dep.observation(1, upto="raw_ms")
    imaged = dep.observation(2, upto="images")
    p = plan(dep.stock(), policies(subbands="until_downstream", raw_ms="until_downstream",
                                   calibrated_ms="until_downstream", images="until_downstream"), now=NOW)
    assert removed(p) == {("subbands", done), ("raw_ms", done), ("calibrated_ms", done), ("images", done),
                          ("subbands", converted),
                          ("subbands", imaged), ("raw_ms", imaged), ("calibrated_ms", imaged)}
    records = purge(p.removals, dep.db, still_held=set)
    assert len(records) == 8 and sum(r["size_bytes"] for r in records) == (
        3 * 2 * SIZES["subbands"] + 2 * (SIZES["raw_ms"] + SIZES["calibrated_ms"]) + SIZES["images"])
    assert not naming.ms_path(dep.out, done).exists() and not naming.image_dir(dep.out, done).exists()
    assert naming.ms_path(dep.out, converted).is_dir(), "not calibrated yet: kept"
    assert naming.image_dir(dep.out, imaged).is_dir(), "not measured yet: kept"
    assert not list(dep.inp.glob("*.hdf5")), "every converted observation's subbands went"
    assert {(r["product"], r["key"]) for r in dep.db.purged()} == removed(p)
    # a second pass finds nothing more to do
    assert plan(dep.stock(), policies(subbands="until_downstream", raw_ms="until_downstream",
                                      calibrated_ms="until_downstream", images="until_downstream"), now=NOW).removals == []


def test_an_image_waits_for_its_hours_mosaic_where_mosaics_are_made(dep):
    gid = dep.observation(0)
    keep = policies(images="until_downstream")
    (image,) = [p for p in dep.stock(mosaics=True) if p.product == "images"]
    assert image.blocker == "its hour not mosaicked yet"
    assert plan(dep.stock(mosaics=True), keep, now=NOW).removals == []
    hour = windows.hour_key(T0)
    for path in naming.mosaic_files(dep.out, hour).values():
        _write(path, 70)
    assert removed(plan(dep.stock(mosaics=True), keep, now=NOW)) == {("images", gid)}
    assert removed(plan(dep.stock(photometry=False), keep, now=NOW)) == {("images", gid)}
    mosaics = [p for p in dep.stock(mosaics=True) if p.product == "mosaics"]
    assert [(m.key, m.size_bytes, m.blocker) for m in mosaics] == [(hour, 5 * 70, "not measured yet")]


def test_a_duration_counts_from_when_the_product_was_made(dep):
    old = dep.observation(0, age_days=3.0)
    dep.observation(1, age_days=1.0)
    p = plan(dep.stock(), policies(calibrated_ms="2d"), now=NOW)
    assert removed(p) == {("calibrated_ms", old)}
    assert p.removals[0].reason == "made 3.0 d ago" and p.removals[0].policy == "2d"
    unimaged = dep.observation(2, upto="calibrated_ms", age_days=9.0)
    p = plan(dep.stock(), policies(calibrated_ms="2d"), now=NOW)
    assert ("calibrated_ms", unimaged) not in removed(p) and p.blocked == {"calibrated_ms": 1}


def test_the_budget_removes_the_oldest_of_the_budget_classes_then_of_those_kept_for_a_duration(dep):
    gids = [dep.observation(i, age_days=5.0 - i) for i in range(3)]
    stock = dep.stock()
    total = sum(p.size_bytes for p in stock)
    assert total == 3 * (2 * SIZES["subbands"] + SIZES["raw_ms"] + SIZES["calibrated_ms"] + SIZES["images"])
    keep = policies(subbands="30d", raw_ms="30d", calibrated_ms="budget", images="budget")
    # freeing 400 bytes takes the oldest observation's calibrated MS (300) and image (50), then the
    # next oldest calibrated MS: the budget classes, oldest first, whatever their class
    p = plan(stock, keep, budget_bytes=total - 400, now=NOW)
    assert [(r.product.product, r.product.key) for r in p.removals] == [
        ("calibrated_ms", gids[0]), ("images", gids[0]), ("calibrated_ms", gids[1])]
    assert p.removals[0].policy == "budget" and sum(p.kept_bytes.values()) == total - 650
    # when the budget classes do not suffice, the oldest products kept for a duration go early;
    # never a class kept forever
    p = plan(stock, {**keep, "raw_ms": Policy("forever")}, budget_bytes=3 * SIZES["raw_ms"] + 2100, now=NOW)
    assert {c for c, _ in removed(p)} == {"calibrated_ms", "images", "subbands"}
    assert sorted(k for c, k in removed(p) if c == "subbands") == gids[:2], "two of 2 000 bytes are enough"
    assert p.kept_bytes["raw_ms"] == 3 * SIZES["raw_ms"] and p.over_budget_bytes == 0
    p = plan(stock, {**keep, "raw_ms": Policy("forever")}, budget_bytes=10, now=NOW)
    assert p.over_budget_bytes == 3 * SIZES["raw_ms"] - 10, "what could not be freed is reported"


def test_the_budget_never_removes_what_unfinished_work_needs(dep):
    dep.observation(0, upto="raw_ms")
    budget = policies(subbands="budget", raw_ms="budget")
    p = plan(dep.stock(), budget, budget_bytes=1, now=NOW)
    assert {c for c, _ in removed(p)} == {"subbands"}
    assert p.over_budget_bytes == SIZES["raw_ms"] - 1


def test_a_solution_is_kept_while_assignable_and_until_its_observations_are_calibrated(dep):
    calibrator = dep.observation(0)
    waiting = dep.observation(1, upto="raw_ms", solution=calibrator)
    mid = naming.parse_time(calibrator).timestamp()
    dep.solution(calibrator, mid)
    keep = policies(caltables="until_downstream")

    def blocker(now):
        (sol,) = [p for p in inventory(dep.catalogue, photometry=True, mosaics=False, validity_s=6 * 3600.0, now=now)
                  if p.product == "caltables"]
        return sol.blocker

    assert blocker(mid + 3600).startswith("assignable until")
    assert blocker(NOW) == "assigned to observations not yet calibrated"
    assert plan(dep.stock(), keep, now=NOW).removals == []
    _write(naming.calibrated_ms_path(dep.out, waiting) / "table.dat", 1)
    dep.db.record_calibrated_ms(group_id=waiting, partition_key="k", path=str(naming.calibrated_ms_path(dep.out, waiting)))
    assert removed(plan(dep.stock(), keep, now=NOW)) == {("caltables", calibrator)}


def test_running_jobs_hold_their_partitions_and_their_hours(dep):
    dep.observation(0)
    window = windows.window_key(T0)
    everything = policies(subbands="until_downstream", raw_ms="until_downstream",
                          calibrated_ms="until_downstream", images="until_downstream")
    assert plan(dep.stock(), everything, held={window}, now=NOW).removals == []
    assert plan(dep.stock(), everything, held={windows.hour_key(T0)}, now=NOW).removals == [], "a mosaic run"
    assert plan(dep.stock(), everything, budget_bytes=1, held={window}, now=NOW).removals == [], "the budget too"
    assert len(plan(dep.stock(), everything, held={"2026-03-01-13:00"}, now=NOW).removals) == 4


def test_a_purge_racing_a_run_gives_the_product_back(dep):
    gid = dep.observation(0)
    window = windows.window_key(T0)
    p = plan(dep.stock(), policies(calibrated_ms="until_downstream"), now=NOW)
    before = sorted(naming.calibrated_ms_path(dep.out, gid).rglob("*"))
    seen = []

    def run_started_meanwhile():
        # the product is renamed aside when the second look happens: a reader sees none or all
        seen.append(naming.calibrated_ms_path(dep.out, gid).exists())
        return {window}

    assert purge(p.removals, dep.db, run_started_meanwhile) == []
    assert seen == [False]
    assert sorted(naming.calibrated_ms_path(dep.out, gid).rglob("*")) == before, "put back whole"
    assert dep.db.purged() == []
    assert [f.name for f in naming.calibrated_ms_path(dep.out, gid).parent.iterdir()] == [f"{gid}.ms"], "nothing aside"


def test_a_removed_product_is_named_when_something_needs_it_and_purged_again_once_remade(dep):
    gid = dep.observation(0)
    keep = policies(raw_ms="until_downstream")
    purge(plan(dep.stock(), keep, now=NOW).removals, dep.db, set)
    obs = dep.catalogue.observation(gid)
    assert "raw_ms" in obs.removed and obs.require("calibrated_ms").is_dir()
    with pytest.raises(ProductsError, match=r"raw_ms was removed by retention \(until_downstream"):
        obs.require("raw_ms")
    assert plan(dep.stock(), keep, now=NOW).removals == [], "a removed product is not looked for again"
    # converted again (a backfill): available, and removed again by the same policy
    ms = naming.ms_path(dep.out, gid)
    _write(ms / "table.dat", 1)
    dep.db.record_measurement_set(group_id=gid, partition_key="k", path=str(ms))
    assert "raw_ms" not in dep.catalogue.observation(gid).removed
    assert removed(plan(dep.stock(), keep, now=NOW)) == {("raw_ms", gid)}


def test_the_steady_state_of_the_default_policies_fits_a_10_tb_disk():
    from resources.retention import RetentionResource

    per_obs = {"subbands": 2.31e9, "raw_ms": 1.4e9, "calibrated_ms": 1.4e9, "images": 0.1e9, "caltables": 2e6,
               "mosaics": 0.5e9}
    per_day = {"subbands": 288, "raw_ms": 288, "calibrated_ms": 288, "images": 288, "caltables": 2, "mosaics": 24}
    held = steady_state_bytes(RetentionResource().policies(), per_obs, per_day, days=30)
    assert held["raw_ms"] == 0 and held["subbands"] == pytest.approx(2 * 288 * 2.31e9)
    assert held["calibrated_ms"] == pytest.approx(7 * 288 * 1.4e9)
    assert sum(held.values()) < 10e12 * 0.85, "a month in, the budget classes have room"


def test_the_retention_job_records_each_removal_on_its_partition_and_spares_running_runs(dep, tmp_path):
    from dsa_assets.assets.retention import RETENTION_JOB
    from dsa_assets.definitions import build_definitions
    from resources.settings import Settings

    done, busy = dep.observation(0), dep.observation(30)
    settings = Settings(input_dir=str(dep.inp), output_dir=str(dep.out), queue_db=str(tmp_path / "queue.sqlite3"),
                        products_db=str(tmp_path / "products.sqlite3"), enable_photometry=True,
                        keep_subbands="forever", keep_raw_ms="until_downstream", keep_images="forever",
                        keep_calibrated_ms="forever", keep_mosaics="forever")
    busy_window = windows.window_key(naming.parse_time(busy))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_run(dg.DagsterRun(job_name="observation_job", run_id="a" * 36, status=dg.DagsterRunStatus.STARTED,
                                       tags={"dagster/partition": busy_window}))
        result = build_definitions(settings).resolve_job_def(RETENTION_JOB).execute_in_process(instance=instance)
        assert result.success
        (observation,) = instance.fetch_observations(dg.AssetKey("measurement_set"), limit=10).records
        event = observation.asset_observation
        assert event.partition == windows.window_key(T0)
        assert event.metadata["purged"].value == "raw_ms" and event.metadata["purged_key"].value == done
        assert event.metadata["policy"].value == "until_downstream"
        assert event.metadata["purged_mb"].value == pytest.approx(SIZES["raw_ms"] / 1e6, abs=0.01)
        (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
        summary = output.event_specific_data.metadata
        assert summary["n_removed"].value == 1 and summary["due_but_needed"].value == {"raw_ms": 1}
    assert not naming.ms_path(dep.out, done).exists()
    assert naming.ms_path(dep.out, busy).is_dir(), "held by the running run"
    assert [r["key"] for r in dep.db.purged()] == [done]
