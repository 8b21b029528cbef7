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


def inspect(model, input_shapes=None):
    """Static analysis of a model (see onnxcompress.analysis.inspect_model)."""
    from onnxcompress.analysis import inspect_model

    return inspect_model(model, input_shapes)


__all__ = [
    "__version__", "inspect", "OnnxCompressError", "UserError", "ModelError", "DataError", "InputMismatchError",
    "ProviderError", "RecipeError",
]
