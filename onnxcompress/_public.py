"""The public functions of onnxcompress (re-exported by the package).

Several share their name with a subpackage (prune, quantize, distill, validate). Importing a subpackage makes Python
set it as an attribute of the package, replacing the function; those subpackages therefore make themselves
callable (``make_callable``), so ``onnxcompress.quantize(...)`` works whichever import happened first.
"""

from __future__ import annotations

import sys
import types


class CallableModule(types.ModuleType):
    """A subpackage that stands for the public function of the same name when called."""

    def __call__(self, *args, **kwargs):
        return getattr(sys.modules[__name__], self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    sys.modules[module_name].__class__ = CallableModule


def inspect(model, input_shapes=None):
    """Static analysis of a model (see onnxcompress.analysis.inspect_model)."""
    from onnxcompress.analysis import inspect_model

    return inspect_model(model, input_shapes)


def _model(model):
    from onnxcompress.ir.io import load_model

    return model if hasattr(model, "graph") else load_model(model)


def _output_ok(output, *inputs) -> None:
    """Before any work: ``output`` (if given) is writable and is none of the input paths."""
    from onnxcompress.ir.io import check_output

    check_output(output, *inputs)


def _saved(model, report: dict, output):
    """Save ``model`` atomically to ``output`` when given; returns (model, report)."""
    if output is not None:
        from onnxcompress.ir.io import save_model

        report["output"] = str(save_model(model, output))
    return model, report


def quantize(model, calib, config=None, output=None):
    """Static INT8 quantization (QDQ): ``model`` (path or onnx.ModelProto), calibration data (npz path, dir, dict of
    arrays or InputData), a QuantizeConfig. Returns (quantized onnx.ModelProto, report dict); saves to ``output``
    (atomically) when given. The input model is never modified."""
    from onnxcompress.quantize import QuantizeConfig, quantize_model

    _output_ok(output, model, calib)
    return _saved(*quantize_model(_model(model), calib, config if config is not None else QuantizeConfig()), output)


def prune(model, config=None, calib=None, output=None):
    """Structured channel pruning: ``model`` (path or onnx.ModelProto), a PruneConfig (default ratio 0.3, l1),
    optional calibration data (npz path, dir, dict of arrays or InputData; needed by the activation and
    reconstruction criteria, and gives concrete shapes to models with dynamic dims). Returns (pruned
    onnx.ModelProto, report dict); saves to ``output`` (atomically) when given. The input model is never modified."""
    from onnxcompress.data.inputs import InputData, load_input_data
    from onnxcompress.prune import PruneConfig, prune_model

    _output_ok(output, model, calib)
    if calib is not None and not isinstance(calib, InputData):
        calib = load_input_data(calib)
    return _saved(*prune_model(_model(model), config if config is not None else PruneConfig(), calib), output)


def distill(teacher, student, calib, config=None, *, kept=None, output=None):
    """Layer-wise reconstruction of ``student`` (a compressed copy of ``teacher``) against the teacher's
    activations on ``calib``. ``kept``: {tensor: kept channel indices} (a prune report's record, see
    onnxcompress.distill.api.kept_from_prune_report). Returns (model, report dict); saves to ``output``."""
    from onnxcompress.distill.api import distill as _distill
    from onnxcompress.distill.reconstruct import DistillConfig

    _output_ok(output, teacher, student, calib)
    cfg = config if config is not None else DistillConfig()
    return _saved(*_distill(_model(teacher), _model(student), calib, cfg, kept=kept), output)


def attach(model, weights, mapping=None, data=None, output=None):
    """Attach weights trained elsewhere (.npz/.safetensors/.onnx path; ``mapping``: JSON path {model: file name})
    and validate by running; returns (model, report dict); saves to ``output``."""
    from onnxcompress.distill.api import attach as _attach

    _output_ok(output, model, weights, mapping, data)
    return _saved(*_attach(_model(model), weights, mapping, data), output)


# --- optimize / validate / profile / gate ---------------------------------------------------------------------


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


