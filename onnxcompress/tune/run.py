"""What `onnxcompress quantize` runs: static or dynamic, optional SmoothQuant, optional accuracy goal (search)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnx

from onnxcompress.quantize.config import QuantizeConfig

log = logging.getLogger(__name__)


def trace_path_for(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.stem + ".trace.json")


def quantize_command(model: onnx.ModelProto, calib, config: QuantizeConfig, *, mode: str = "static",
                     max_drop: float | None = None, metric: str = "auto", time_budget: float | None = None,
                     eval_data=None, smooth_quant: float | None = None, output: str | Path | None = None,
                     trace: str | Path | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """(quantized model, report). With ``max_drop`` the mixed-precision search runs and the best model so far is
    written to ``output`` as it goes (``report["tune"]["goal_met"]`` says whether the goal was reached)."""
    from onnxcompress.data.inputs import load_input_data
    from onnxcompress.errors import RecipeError
    from onnxcompress.tune import TuneConfig, resolve_metric, tune_quantization
    from onnxcompress.tune.config import MODES

    if mode not in MODES:
        raise RecipeError(f"unknown quantization mode '{mode}'", hint=f"use one of {', '.join(MODES)}")
    calib = load_input_data(calib) if calib is not None else None
    smoothing = None
    if smooth_quant is not None:
        from onnxcompress.tune.smooth import smooth_model

        model, smoothing = smooth_model(model, calib, smooth_quant)
    if max_drop is not None:
        data = load_input_data(eval_data) if eval_data is not None else calib
        tune = TuneConfig(metric=resolve_metric(metric, data), max_drop=max_drop, time_budget=time_budget, mode=mode,
                          smooth_quant=smooth_quant)
        trace = trace or (trace_path_for(output) if output is not None else None)
        qmodel, report = tune_quantization(model, calib, config, tune, eval_data=eval_data, output=output, trace=trace)
        report["tune"]["trace"] = None if trace is None else str(trace)
    elif mode == "dynamic":
        qmodel, report = quantize_dynamic(model, config)
    else:
        from onnxcompress.quantize import quantize_model

        qmodel, report = quantize_model(model, calib, config)
    if smoothing is not None:
        report["smooth_quant"] = {"alpha": smooth_quant, **smoothing}
    report.setdefault("mode", mode)
    return qmodel, report


def quantize_dynamic(model: onnx.ModelProto, config: QuantizeConfig) -> tuple[onnx.ModelProto, dict[str, Any]]:
    from onnxcompress.quantize.dynamic import DynamicQuantizeConfig, quantize_dynamic_model

    dyn = DynamicQuantizeConfig(per_channel=config.per_channel, reduce_range=config.reduce_range,
                                include=config.include, exclude=config.exclude)
    return quantize_dynamic_model(model, dyn, verify=config.verify)
