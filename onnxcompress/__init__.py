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


def quantize(model, calib, config=None, output=None):
    """Static INT8 quantization (QDQ): ``model`` (path or onnx.ModelProto), calibration data (npz path, dir, dict of
    arrays or InputData), a QuantizeConfig. Returns (quantized onnx.ModelProto, report dict); saves to ``output``
    (atomically) when given. The input model is never modified."""
    from onnxcompress.ir.io import load_model, save_model
    from onnxcompress.quantize import QuantizeConfig, quantize_model

    if not hasattr(model, "graph"):
        model = load_model(model)
    qmodel, report = quantize_model(model, calib, config if config is not None else QuantizeConfig())
    if output is not None:
        report["output"] = str(save_model(qmodel, output))
    return qmodel, report


def prune(model, config=None, calib=None, output=None):
    """Structured channel pruning: ``model`` (path or onnx.ModelProto), a PruneConfig (default ratio 0.3, l1),
    optional calibration data (npz path, dir, dict of arrays or InputData; needed by the activation and
    reconstruction criteria, and gives concrete shapes to models with dynamic dims). Returns (pruned
    onnx.ModelProto, report dict); saves to ``output`` (atomically) when given. The input model is never modified."""
    from onnxcompress.data.inputs import InputData, load_input_data
    from onnxcompress.ir.io import load_model, save_model
    from onnxcompress.prune import PruneConfig, prune_model

    if not hasattr(model, "graph"):
        model = load_model(model)
    if calib is not None and not isinstance(calib, InputData):
        calib = load_input_data(calib)
    pruned, report = prune_model(model, config if config is not None else PruneConfig(), calib)
    if output is not None:
        report["output"] = str(save_model(pruned, output))
    return pruned, report


# --- optimize / validate / profile / gate (light imports: the configs and Report load no numpy/onnxruntime) -----
from onnxcompress.recipe import Recipe  # noqa: E402
from onnxcompress.report import Report  # noqa: E402
from onnxcompress.validate.config import ProfileConfig, Tolerance, ValidateConfig  # noqa: E402
from onnxcompress.validate.gate import GatePolicy, GateResult  # noqa: E402


def optimize(model, *, recipe=None, calib=None, eval=None, output=None, user_metrics=None, progress=None):
    """The whole pipeline (preprocess -> prune -> quantize -> validate -> profile -> gate); returns
    (optimized onnx.ModelProto, Report). A failed gate is ``report.passed is False``, not an exception."""
    from onnxcompress import api

    return api.optimize(model, recipe=recipe, calib=calib, eval=eval, output=output, user_metrics=user_metrics,
                        progress=progress)


def validate(reference, candidate, data, *, config=None, user_metrics=None, policy=None):
    """Compare ``candidate`` with ``reference`` on ``data``; returns a Report (``report.validation``).
    ``user_metrics``: {name: fn(outputs, extras) -> float per batch, or an object with update()/compute()}."""
    from onnxcompress import api

    return api.validate(reference, candidate, data, config=config, user_metrics=user_metrics, policy=policy)


def profile(model, *, vs=None, data=None, config=None, providers="auto", threads=0, seed=0):
    """Latency of ``model`` (and ``vs``, interleaved); returns a Report (``report.profile``)."""
    from onnxcompress import api

    return api.profile(model, vs=vs, data=data, config=config, providers=providers, threads=threads, seed=seed)


def gate(reference, candidate, data, policy, *, config=None, user_metrics=None):
    """Validate (and profile when needed), then check ``policy``; returns a Report (``report.passed``)."""
    from onnxcompress import api

    return api.gate(reference, candidate, data, policy, config=config, user_metrics=user_metrics)


__all__ = [
    "__version__", "inspect", "quantize", "prune", "OnnxCompressError", "UserError", "ModelError", "DataError", "InputMismatchError",
    "ProviderError", "RecipeError",
    "optimize", "validate", "profile", "gate", "Recipe", "Report", "GatePolicy", "GateResult", "ValidateConfig",
    "ProfileConfig", "Tolerance",
]
