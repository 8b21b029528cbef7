"""fp16/bf16 conversion with float32 kept where values or reductions would not survive (see precision.plan)."""

from onnxcompress.precision.config import FORMATS, TARGETS, PrecisionConfig
from onnxcompress.precision.result import OutputCheck, PrecisionCheck, PrecisionResult
from onnxcompress.precision.stage import (
    ConvertPrecisionPass,
    EmulatedModel,
    PlannedPrecision,
    PlanPrecisionPass,
    precision_passes,
)

__all__ = ["FORMATS", "TARGETS", "PrecisionConfig", "PrecisionResult", "PrecisionCheck", "OutputCheck",
           "PlanPrecisionPass", "ConvertPrecisionPass", "PlannedPrecision", "EmulatedModel", "precision_passes"]
