"""The fidelity floor of an fp16/bf16 conversion, judged from a validation run (the same evaluation as
``validate``): no NaN/Inf in any output, mean cosine >= ``min_cosine`` on every output, top-1 agreement >=
``min_top1_agreement`` on the class output (the validation's primary output, when it is [N, C] scores; the
task-aware metrics of other outputs are left to the gate)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from typing import Any

import onnx

from onnxcompress.data.inputs import InputData, from_iterable, model_input_specs, random_data, static_batch
from onnxcompress.passes.base import PassContext
from onnxcompress.precision.config import PrecisionConfig
from onnxcompress.precision.result import OutputCheck, PrecisionCheck, PrecisionResult
from onnxcompress.precision.stage import EmulatedModel
from onnxcompress.runtime.session import resolve_providers
from onnxcompress.validation.config import ValidateConfig
from onnxcompress.validation.evaluate import ValidationResult, evaluate
from onnxcompress.validation.gate import Criterion


def precision_check(validation: ValidationResult, config: PrecisionConfig, *, data: str, emulated: bool,
                    class_output: str | None, runtime: ValidationResult | None = None) -> PrecisionCheck:
    """Judge ``validation`` (reference = the float32 model, candidate = the converted one or its float32 twin)
    and, when given, ``runtime`` (the converted model itself as this machine's onnxruntime runs it)."""
    outputs, reasons = _judge(validation, config, class_output, "")
    runtime_outputs = None
    if runtime is not None:
        runtime_outputs, more = _judge(runtime, config, class_output, " (the written model on this machine)")
        reasons += more
    floor = {"min_cosine": config.min_cosine, "min_top1_agreement": config.min_top1_agreement}
    return PrecisionCheck(not reasons, tuple(reasons), data, validation.samples, emulated, tuple(outputs), floor,
                          None if runtime_outputs is None else tuple(runtime_outputs))


def _judge(validation: ValidationResult, config: PrecisionConfig, class_output: str | None, where: str
           ) -> tuple[list[OutputCheck], list[str]]:
    outputs, reasons = [], []
    for name, fid in validation.fidelity.items():
        nonfinite = validation.comparison[name].nonfinite if name in validation.comparison else 0
        agreement = fid.top1_agreement if name == class_output else None
        outputs.append(OutputCheck(name, float(fid.cosine), fid.cosine_min, agreement, float(fid.sqnr_db),
                                   float(fid.max_abs_error), int(nonfinite)))
        if nonfinite:
            reasons.append(f"output '{name}'{where}: {nonfinite} NaN/Inf values")
        if not fid.cosine >= config.min_cosine:  # NaN fails too
            reasons.append(f"output '{name}'{where}: mean cosine {fid.cosine:.6g} < min_cosine {config.min_cosine:g}")
        if agreement is not None and not agreement >= config.min_top1_agreement:
            reasons.append(f"output '{name}'{where}: top-1 agreement {agreement:.4f} < min_top1_agreement "
                           f"{config.min_top1_agreement:g}")
    return outputs, reasons


def class_output(validation: ValidationResult, shapes: dict[str, list | None]) -> str | None:
    """The primary output when it is declared [N, C] with C >= 2 (class scores), else None."""
    shape = shapes.get(validation.primary_output)
    if shape is not None and len(shape) == 2 and (not isinstance(shape[1], int) or shape[1] >= 2):
        return validation.primary_output
    return None


def floor_criterion(check: PrecisionCheck, to: str) -> Criterion:
    """The gate criterion a failed (or met) precision floor adds to ``optimize``'s gate."""
    how = " (checked on the float32 twin that rounds every low-precision tensor)" if check.emulated else ""
    message = (f"precision_floor: {to} output has no NaN/Inf and meets min_cosine {check.floor['min_cosine']:g} / "
               f"min_top1_agreement {check.floor['min_top1_agreement']:g}{how}") if check.passed else \
        "precision_floor: " + "; ".join(check.reasons) + how
    return Criterion("precision_floor", check.passed, None, None, message)


# --- the check of a conversion run (convert-precision and optimize's [precision] stage) -------------------------
def verify_conversion(result: PrecisionResult, converted: onnx.ModelProto, ctx: PassContext, data: InputData,
                      note: str, providers: str) -> PrecisionResult:
    """The fidelity floor of a conversion, against the float32 model it started from (the stage's input): on
    CUDA the converted model itself, else its float32 twin, and for fp16 the written file as this machine's
    onnxruntime runs it as well."""
    config = result.config
    twin = ctx.require(EmulatedModel, "the precision check")
    judged, emulated = judged_model(converted, ctx, providers)
    vconfig = ValidateConfig(providers="cpu" if emulated else providers, max_samples=config.verify_samples,
                             batch_size=static_batch(model_input_specs(twin.reference)) or 32)
    validation = evaluate(twin.reference, judged, data, vconfig)
    runtime = evaluate(twin.reference, converted, data, vconfig) if emulated and config.to == "fp16" else None
    check = precision_check(validation, config, data=note, emulated=emulated, runtime=runtime,
                            class_output=class_output(validation, _output_shapes(twin.reference)))
    return replace(result, check=check)


def check_data(ctx: PassContext, model: onnx.ModelProto, seed: int, random_samples: int
               ) -> tuple[InputData, str]:
    """The data the fidelity floor is checked on, model inputs only (the check compares outputs; extra keys such
    as labels of any kind are not needed)."""
    names = {s.name for s in model_input_specs(model)}
    for data, note in ((ctx.evaluation, "evaluation data"), (ctx.calibration, "calibration data")):
        if data is not None:
            only = from_iterable(partial(inputs_only, data, frozenset(names)), source=data.source)
            extra = "" if data is ctx.evaluation else "; no --eval given"
            return only, f"{note} ({data.source}{extra})"
    return (random_data(model_input_specs(model), random_samples, seed=seed),
            f"{random_samples} seeded random samples (seed {seed}; no data given)")


def inputs_only(data: InputData, names: frozenset[str]) -> Iterator[dict[str, Any]]:
    for batch in data:
        yield {k: v for k, v in batch.items() if k in names}


def judged_model(candidate: onnx.ModelProto, ctx: PassContext, providers: str) -> tuple[onnx.ModelProto, bool]:
    """The model fidelity is measured on: the candidate on CUDA, else the float32 twin of the conversion
    (precision.stage.EmulatedModel: onnxruntime's CPU provider has no bf16 kernels and runs fp16 mostly in
    float32, so only the twin shows fp16/bf16 numerics there)."""
    twin = ctx.get(EmulatedModel)
    if twin is None or "CUDAExecutionProvider" in resolve_providers(providers):
        return candidate, False
    return twin.model, True


def _output_shapes(model: onnx.ModelProto) -> dict[str, list | None]:
    out: dict[str, list | None] = {}
    for o in model.graph.output:
        tt = o.type.tensor_type
        out[o.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim] \
            if tt.HasField("shape") else None
    return out
