"""Quality check of Measurement Sets: each opens in casatools and matches its inputs' shape."""

from __future__ import annotations

import dagster as dg

from ..stages.conversion import ConversionResult
from ..stages.ms_inspect import inspect_ms

MS_CHECK = dg.AssetCheckSpec(
    name="ms_matches_inputs",
    asset="measurement_set",
    blocking=True,
    description="Every Measurement Set opens in casatools with the rows, channels and subbands of its inputs.",
)


def check_measurement_sets(results: list[ConversionResult]) -> dg.AssetCheckResult:
    problems, details = [], {}
    for r in results:
        found = inspect_ms(r.ms_path)
        details[r.group_id] = found
        expected = {"rows": r.n_rows, "channels": r.n_channels, "polarizations": 2}
        for key, value in expected.items():
            if found[key] != value:
                problems.append(f"{r.group_id}: {key} {found[key]}, expected {value}")
        flagged = found["flagged_channel_fraction"]
        expected_flagged = len(r.subbands_missing) / 16
        if abs(flagged - expected_flagged) > 1e-6:
            problems.append(f"{r.group_id}: {flagged:.3f} of channels fully flagged, expected {expected_flagged:.3f}")
    return dg.AssetCheckResult(
        check_name=MS_CHECK.name,
        asset_key=MS_CHECK.asset_key,
        passed=not problems,
        metadata={"problems": dg.MetadataValue.json(problems), "measurement_sets": dg.MetadataValue.json(details)},
    )
