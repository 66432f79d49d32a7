"""What every partitioned asset shares: the per-observation loop (log context, error
translation, stage-duration metric) and metadata helpers. An asset body is then: which
observations (``pipeline.catalogue()``), what to do to one, what to report."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import TypeVar

import dagster as dg

from .. import metrics
from ..exceptions import DSA110Error
from ..logs import attach_log_file, log_context
from ..product_catalogue import Observation

T = TypeVar("T")


@contextmanager
def step(context: dg.AssetExecutionContext, stage: str, observation: str | None = None):
    """One unit of an asset's work: the run's log context (partition, run, stage, observation)
    with the JSON log file attached; a platform error fails the partition (naming the
    observation), and the wall time of a success goes to the ``stage`` duration metric."""
    attach_log_file()
    partition = context.partition_key if context.has_partition_key else None
    with log_context(partition=partition, run_id=context.run.run_id, stage=stage,
                     observation=observation):
        t0 = time.perf_counter()
        try:
            yield
        except DSA110Error as exc:
            raise dg.Failure(description=f"{observation}: {exc}" if observation else str(exc)) from exc
        metrics.STAGE_DURATION.labels(stage).observe(time.perf_counter() - t0)


def for_each_observation(context: dg.AssetExecutionContext, observations: Iterable[Observation], stage: str,
                         work: Callable[[Observation], T]) -> list[tuple[Observation, T]]:
    """``work`` on each observation, each as one :func:`step`; returns (observation, result) pairs."""
    done = []
    for obs in observations:
        with step(context, stage, obs.group_id):
            result = work(obs)
        done.append((obs, result))
    return done


def refuse_removed(observations: Iterable[Observation], product: str) -> None:
    """Fail (naming each one) when retention removed the ``product`` of any of ``observations``:
    remaking what reads them would silently leave them out."""
    gone = {o.group_id: o.removed[product] for o in observations if product in o.removed}
    if gone:
        raise dg.Failure(description=f"the {product} of {len(gone)} observation(s) were removed by retention: "
                                     "convert them again first", metadata={g: dg.MetadataValue.text(r) for g, r in gone.items()})


def thumbnail_markdown(png_path, width: int = 360) -> str:
    """An inline PNG for a metadata value (the UI shows it on the partition's page)."""
    with open(png_path, "rb") as fh:
        data = base64.b64encode(fh.read()).decode()
    return f'<img src="data:image/png;base64,{data}" width="{width}"/>'


def rounded(values: dict, digits: int = 2) -> dict:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in values.items()}


def peeled_markdown(peeled, restored=()) -> str:
    """What peeling subtracted (:class:`dsa_assets.stages.peeling.PeeledSource` or their dicts),
    as a table for the UI; ``restored``: the names the imaging step put back into the image."""
    rows = [p if isinstance(p, dict) else p.as_dict() for p in peeled]
    if not rows:
        return "nothing peeled"
    lines = ["| source | offset (deg) | model apparent (Jy) | taken, apparent (Jy) | left before -> after "
             "| gain phase scatter (deg) | restored into the image |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['offset_deg']:.2f} | {r['model_apparent_jy']:.3g} | {r['solved_apparent_jy']:.3g} | "
              f"{r['remaining_before']:.3f} -> {r['remaining_after']:.4f} | {r['gain_phase_scatter_deg']:.1f} | "
              f"{'yes' if r['name'] in restored else 'no'} |"
              if r.get("subtracted", True) else
              f"| {r['name']} | {r['offset_deg']:.2f} | {r['model_apparent_jy']:.3g} | not in the data "
              f"({r['remaining_before']:.2f} of the model, {r['significance']:.1f} sigma): left | | | |" for r in rows]
    return "\n".join(lines)
