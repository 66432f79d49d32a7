"""Pipeline stages: plain Python (no Dagster), each with validate(), execute() and cleanup()."""

from .conversion import ConversionConfig, ConversionResult, ConversionStage

__all__ = ["ConversionConfig", "ConversionResult", "ConversionStage"]
