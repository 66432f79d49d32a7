"""The ``measurement_set`` asset: one 5-minute window's observations as Measurement Sets."""

import dagster as dg

from resources.pipeline import PipelineResource

from .. import partitions
from ..logs import attach_log_file, log_context
from ..stages.window_conversion import convert_window
from .checks import MS_CHECK, ms_check
from .subband_files import SUBBAND_FILES


@dg.asset(
    partitions_def=partitions.OBSERVATION_PARTITIONS,
    deps=[SUBBAND_FILES],
    check_specs=[MS_CHECK],
    group_name="observations",
    kinds={"casa", "python"},
    description=(
        "Measurement Sets of the observations that start in this 5-minute window (usually one, "
        "none in ~1 window of 33, two after a correlator restart): 16 subbands -> one spectral "
        "window, rephased to the meridian at mid-observation. An empty window materializes "
        "with n_observations = 0."
    ),
)
def measurement_set(context: dg.AssetExecutionContext, pipeline: PipelineResource) -> dg.MaterializeResult:
    # conversion claims observations in the queue rather than looping over the catalogue's:
    # it is the step that makes them known
    start, end = partitions.window_bounds(context.partition_key)
    attach_log_file()
    with log_context(partition=context.partition_key, run_id=context.run.run_id, stage="conversion"):
        outcome = convert_window(
            pipeline.queue(), pipeline.conversion_stage(), pipeline.input_dir, start, end,
            partition_key=context.partition_key, stable_s=pipeline.stable_s,
            timeout_s=pipeline.incomplete_timeout_s, policy=pipeline.incomplete_policy,
        )
    for gid, reason in outcome.failed.items():
        context.log.error(f"observation {gid} failed: {reason}")
    conversion_errors = {g: r for g, r in outcome.failed.items() if "incomplete after timeout" not in r}
    if conversion_errors:
        raise dg.Failure(
            description=f"{len(conversion_errors)} observation(s) of {context.partition_key} failed to convert",
            metadata={g: dg.MetadataValue.text(r) for g, r in conversion_errors.items()},
        )
    results = outcome.converted
    metadata = {
        "n_observations": len(results),
        "observations": ", ".join(r.group_id for r in results),
        "ms_paths": dg.MetadataValue.json([str(r.ms_path) for r in results]),
        "waiting_incomplete": ", ".join(outcome.waiting),
        "failed_incomplete": dg.MetadataValue.json(outcome.failed),
    }
    if results:
        first = results[0]
        metadata.update(
            {
                "path": dg.MetadataValue.path(str(first.ms_path)),
                "size_mb": round(sum(r.size_bytes for r in results) / 1e6, 2),
                "rows": sum(r.n_rows for r in results),
                "channels": first.n_channels,
                "freq_min_mhz": round(first.freq_min_hz / 1e6, 4),
                "freq_max_mhz": round(first.freq_max_hz / 1e6, 4),
                "subbands_present": dg.MetadataValue.json({r.group_id: r.subbands_present for r in results}),
                "duration_s": round(first.duration_s, 2),
                "phase_center_deg": f"{first.phase_center_ra_deg:.5f}, {first.phase_center_dec_deg:.5f}",
                "conversion_s": round(sum(r.wall_time_s for r in results), 2),
                "nonfinite_samples_flagged": sum(r.n_nonfinite for r in results),
            }
        )
    return dg.MaterializeResult(metadata=metadata, check_results=[ms_check(results, pipeline.expected_subbands)])
