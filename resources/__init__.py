"""Dagster resources: configuration and handles to the outside world."""

from .pipeline import PipelineResource

__all__ = ["PipelineResource"]
