"""The fidelity floor of an fp16/bf16 conversion, judged from a validation run (the same evaluation as
``validate``): no NaN/Inf in any output, mean cosine >= ``min_cosine`` on every output, top-1 agreement >=
``min_top1_agreement`` on the class output (the validation's primary output, when it is [N, C] scores; the
task-aware metrics of other outputs are left to the gate)."""

from __future__ import annotations

from onnxcompress.precision.config import PrecisionConfig
from onnxcompress.precision.result import OutputCheck, PrecisionCheck
from onnxcompress.validation.evaluate import ValidationResult
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
