"""onnxcompress: post-training optimization of ONNX models (prune, distill, quantize) with proof it still works.

Only the public API is exported here; heavy modules load lazily so that the CLI starts instantly.
"""

from onnxcompress._version import __version__
from onnxcompress.errors import (
    DataError,
    InputMismatchError,
    ModelError,
    OnnxCompressError,
    ProviderError,
    RecipeError,
    UserError,
)


from onnxcompress._public import (  # noqa: E402
    attach,
    distill,
    gate,
    inspect,
    optimize,
    profile,
    prune,
    quantize,
    validate,
)
from onnxcompress.recipe import Recipe  # noqa: E402
from onnxcompress.report import Report  # noqa: E402
from onnxcompress.validate.config import ProfileConfig, Tolerance, ValidateConfig  # noqa: E402
from onnxcompress.validate.gate import GatePolicy, GateResult  # noqa: E402

#: public names loaded on first use, so that importing onnxcompress (and `onnxcompress --help`) stays fast
_LAZY = {
    "PruneConfig": "onnxcompress.prune",
    "QuantizeConfig": "onnxcompress.quantize",
    "DistillConfig": "onnxcompress.distill.reconstruct",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'onnxcompress' has no attribute {name!r}")


__all__ = [
    "__version__", "inspect", "quantize", "prune", "distill", "attach", "PruneConfig", "QuantizeConfig",
    "DistillConfig", "OnnxCompressError", "UserError", "ModelError", "DataError", "InputMismatchError",
    "ProviderError", "RecipeError",
    "optimize", "validate", "profile", "gate", "Recipe", "Report", "GatePolicy", "GateResult", "ValidateConfig",
    "ProfileConfig", "Tolerance",
]
