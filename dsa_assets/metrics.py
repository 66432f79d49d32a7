"""Prometheus metrics: recorded by every process (runs included), served by dsa110-stream.

Runs are separate processes, so metrics use prometheus_client's multiprocess mode: each
process writes its samples under ``PROMETHEUS_MULTIPROC_DIR`` (set by dsa110-stream to
``<output>/state/metrics``) and the exporter aggregates them. Gauges that describe the
present (queue depth per state, free disk space) are computed when scraped.

Metric names:
  dsa110_observations_total{outcome}            observations converted / failed
  dsa110_stage_duration_seconds{stage}          wall time of each stage run
  dsa110_latency_seconds{product}               last subband arrival -> product written
  dsa110_queue_groups{state}                    observation groups per queue state
  dsa110_disk_free_bytes{path}                  free space of the output and scratch disks
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
LATENCY_BUCKETS = (10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)

OBSERVATIONS = Counter("dsa110_observations_total", "Observations processed, by outcome", ["outcome"])
STAGE_DURATION = Histogram(
    "dsa110_stage_duration_seconds", "Wall time of a stage run", ["stage"], buckets=DURATION_BUCKETS
)
LATENCY = Histogram(
    "dsa110_latency_seconds", "From the last subband's arrival to the product", ["product"], buckets=LATENCY_BUCKETS
)


class PlatformCollector:
    """Queue depth per state and free disk space, read at scrape time."""

    def __init__(self, queue, disks: dict[str, Path]):
        self.queue = queue
        self.disks = disks

    def collect(self):
        from .diskspace import free_bytes

        depth = GaugeMetricFamily("dsa110_queue_groups", "Observation groups per queue state", labels=["state"])
        for state, n in self.queue.counts().items():
            depth.add_metric([state], n)
        yield depth
        disk = GaugeMetricFamily("dsa110_disk_free_bytes", "Free bytes on the product disks", labels=["path"])
        for name, path in self.disks.items():
            disk.add_metric([name], free_bytes(path))
        yield disk


def serve(port: int, queue, disks: dict[str, Path], host: str = "127.0.0.1") -> CollectorRegistry:
    """Serve ``/metrics`` on ``host:port``: every process's samples plus the live gauges."""
    registry = CollectorRegistry()
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        Path(directory).mkdir(parents=True, exist_ok=True)
        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    registry.register(PlatformCollector(queue, disks))
    start_http_server(port, addr=host, registry=registry)
    return registry
