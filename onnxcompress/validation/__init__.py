"""Validation: fidelity and task metrics (Polygraphy-style comparison), latency profiling, and the gate."""

from onnxcompress.validation.config import FidelityFloors, OutputSpec, ProfileConfig, Tolerance, ValidateConfig
from onnxcompress.validation.evaluate import TaskMetrics, ValidationResult, evaluate
from onnxcompress.validation.gate import GatePolicy, GateResult, Measured, default_policy, evaluate_gate
from onnxcompress.validation.profile import ProfileResult, profile_models

__all__ = ["ProfileConfig", "Tolerance", "ValidateConfig", "OutputSpec", "FidelityFloors", "TaskMetrics",
           "ValidationResult", "evaluate",
           "GatePolicy", "GateResult", "Measured", "default_policy", "evaluate_gate", "ProfileResult",
           "profile_models"]
