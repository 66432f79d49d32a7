"""The worker moved to :mod:`dsa_assets.service.worker` (the service sits on top of the
Dagster definitions; ingest stays below them). Re-exported here: the path the README and the
pipeline this platform replaces document."""

from ..service.worker import StreamingWorker, WorkerConfig, instance_config_template, service_environment

__all__ = ["StreamingWorker", "WorkerConfig", "instance_config_template", "service_environment"]
