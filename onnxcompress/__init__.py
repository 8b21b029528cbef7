"""onnxcompress: post-training optimization of ONNX models (prune, distill, quantize) with proof it still works.

The public API: the verbs of :mod:`onnxcompress.api`, the typed configs of every recipe section, the Report and
its typed results, and the error tree. Nothing here imports onnxruntime (sessions are made in runtime/ on use).
"""

from onnxcompress._version import __version__
from onnxcompress.api import (
    attach,
    convert_precision,
    distill,
    gate,
    inspect,
    optimize,
    profile,
    prune,
    quantize,
    sensitivity,
    validate,
)
from onnxcompress.distillation import AttachResult, DistillConfig, DistillResult
from onnxcompress.errors import (
    DataError,
    InputMismatchError,
    ModelError,
    OnnxCompressError,
    ProviderError,
    RecipeError,
    UserError,
)
from onnxcompress.passes import KeptChannels, PreprocessConfig
from onnxcompress.precision import PrecisionConfig, PrecisionResult
from onnxcompress.pruning import PruneConfig, PruneResult
from onnxcompress.quantization import QuantizeConfig, QuantizeResult, TensorOverride
from onnxcompress.recipe import Recipe
from onnxcompress.report import Report
from onnxcompress.tuning import SelfCheckConfig, TuneConfig
from onnxcompress.validation import (
    FidelityFloors,
    GatePolicy,
    GateResult,
    OutputSpec,
    ProfileConfig,
    Tolerance,
    ValidateConfig,
)

__all__ = [
    "__version__",
    # verbs
    "optimize", "prune", "quantize", "convert_precision", "distill", "attach", "validate", "profile", "gate",
    "inspect", "sensitivity",
    # recipe and configs
    "Recipe", "PreprocessConfig", "PruneConfig", "DistillConfig", "QuantizeConfig", "TensorOverride", "PrecisionConfig",
    "TuneConfig", "SelfCheckConfig", "ValidateConfig", "ProfileConfig", "Tolerance", "OutputSpec", "FidelityFloors",
    "GatePolicy",
    # results
    "Report", "PruneResult", "DistillResult", "AttachResult", "QuantizeResult", "PrecisionResult", "GateResult",
    "KeptChannels",
    # errors
    "OnnxCompressError", "UserError", "ModelError", "DataError", "InputMismatchError", "ProviderError",
    "RecipeError",
]
