"""The retention job: the policies of :mod:`dsa_assets.retention` applied as Dagster work.

Each removal is an asset observation on the partition the product was made in (the UI shows
it in that partition's events: what, how many bytes, by which policy, why) and a row of the
products database's ``purges``; the run's own metadata sums it up. The partitions of every
run in progress are held: nothing they may read is removed.
"""

import dagster as dg

from resources.calibration import CalibrationResource
from resources.pipeline import PipelineResource
from resources.retention import RetentionResource
from resources.science import ScienceResource

from .. import windows

RETENTION_JOB = "retention_job"
IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def running_partitions(instance: dg.DagsterInstance, exclude_run_id: str | None = None) -> set[str]:
    """Partition keys of the runs in progress (a range run: every window of its range)."""
    held: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        if run.run_id == exclude_run_id:
            continue
        tags = run.tags
        if "dagster/partition" in tags:
            held.add(tags["dagster/partition"])
        first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
        if first and last:
            # every 5-minute key of the range: an hourly range's keys are among them
            held.update({first, last, *windows.windows_between(first, last)})
    return held


@dg.op(description="Remove the products the retention policies no longer keep, never one that unfinished "
                   "work or a running job needs; record each removal on its partition.")
def purge_products(context: dg.OpExecutionContext, pipeline: PipelineResource, retention: RetentionResource,
                   science: ScienceResource, calibration: CalibrationResource):
    from ..retention import ASSET_OF, inventory, plan, purge

    catalogue = pipeline.catalogue()
    products = inventory(catalogue, photometry=science.enable_photometry, mosaics=science.enable_mosaic_creation,
                         validity_s=calibration.validity_hours * 3600.0)

    def held():
        return running_partitions(context.instance, context.run_id)

    budget = retention.budget_bytes(pipeline.output_path)
    the_plan = plan(products, retention.policies(), held=held(), budget_bytes=budget)
    removed = purge(the_plan.removals, catalogue.db, held)
    for r in removed:
        yield dg.AssetObservation(
            asset_key=ASSET_OF[r["product"]], partition=r["partition_key"],
            metadata={"purged": r["product"], "purged_key": r["key"], "purged_path": dg.MetadataValue.path(r["path"]),
                      "purged_mb": round(r["size_bytes"] / 1e6, 2), "policy": r["policy"], "reason": r["reason"]})
    freed = {}
    for r in removed:
        freed[r["product"]] = freed.get(r["product"], 0) + r["size_bytes"]
    if the_plan.over_budget_bytes:
        context.log.warning(f"products exceed the budget by {the_plan.over_budget_bytes / 1e9:.1f} GB and nothing "
                            "more may be removed (needed by unfinished work, or kept forever)")
    context.log.info(f"removed {len(removed)} product(s), {sum(freed.values()) / 1e9:.2f} GB")
    yield dg.Output(None, metadata={
        "n_removed": len(removed),
        "freed_gb": dg.MetadataValue.json({k: round(v / 1e9, 3) for k, v in freed.items()}),
        "kept_gb": dg.MetadataValue.json({k: round(v / 1e9, 3) for k, v in the_plan.kept_bytes.items()}),
        "budget_gb": round(budget / 1e9, 1),
        "over_budget_gb": round(the_plan.over_budget_bytes / 1e9, 3),
        "due_but_needed": dg.MetadataValue.json(the_plan.blocked),
        "policies": dg.MetadataValue.json({k: str(v) for k, v in retention.policies().items()}),
    })


@dg.job(name=RETENTION_JOB, description="Apply the retention policies (keep_* settings) and the disk budget.")
def retention_job():
    purge_products()
