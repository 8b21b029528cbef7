"""Thin orchestration: recipe -> passes -> validation -> profile -> gate -> Report.

``optimize`` runs preprocess (InferShapes, FoldBatchNorm, Cleanup) -> prune (if the recipe has it) -> distill
(if the recipe has it: layer-wise reconstruction of the pruned model against the preprocessed original) ->
quantize (default: INT8 for the CPU target when calibration data is given) -> validate -> profile -> gate.
``validate``, ``profile`` and ``gate`` are the same steps on models the user already has.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import onnx

from onnxcompress.errors import DataError
from onnxcompress.recipe import AUTO, Recipe, stage_config_class
from onnxcompress.report import Report, environment_info
from onnxcompress.validate.config import ProfileConfig, ValidateConfig
from onnxcompress.validate.gate import GatePolicy, evaluate_gate

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
RANDOM_SAMPLES = 64
INT8_KERNELS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "QGemm", "DynamicQuantizeMatMul",
                "MatMulIntegerToFloat", "QAttention", "QLinearAdd", "QLinearMul")
INT8_CANDIDATES = ("Conv", "ConvTranspose", "Gemm", "MatMul")


# --- inputs -----------------------------------------------------------------------------------------------------
def load(model: str | Path | onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The model and its identity (path, sha256, bytes); a ModelProto is hashed as serialized."""
    from onnxcompress.ir.io import file_size, load_model, sha256_file

    if isinstance(model, onnx.ModelProto):
        blob = model.SerializeToString()
        return model, {"path": None, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    path = Path(model)
    proto = load_model(path)
    return proto, {"path": str(path), "sha256": sha256_file(path), "bytes": sum(file_size(path))}


def data_info(source: Any, data) -> dict[str, Any]:
    from onnxcompress.ir.io import sha256_file

    info: dict[str, Any] = {"source": data.source, "samples": len(data), "keys": data.keys(), "sha256": None}
    if isinstance(source, (str, Path)) and Path(source).is_file():
        info["sha256"] = sha256_file(source)
    elif isinstance(source, (str, Path)) and Path(source).is_dir():
        h = hashlib.sha256()
        for p in sorted(Path(source).iterdir()):
            if p.is_file():
                h.update(p.name.encode() + b"\0" + sha256_file(p).encode())
        info["sha256"] = h.hexdigest()
    return info


def _data(source: Any):
    from onnxcompress.data.inputs import load_input_data

    return None if source is None else load_input_data(source)


def profile_sample(model: onnx.ModelProto, data, batch: int, seed: int) -> tuple[dict[str, Any], str]:
    """A batch of inputs for timing: the first ``batch`` samples of ``data``, else seeded random inputs."""
    from onnxcompress.data.inputs import model_input_specs, random_data

    specs = model_input_specs(model)
    if data is None:
        data = random_data(specs, batch, seed=seed)
        note = f"latency measured on random inputs (seed {seed})"
    else:
        note = f"latency measured on {data.source}"
    feeds = next(data.batched(batch).bind(specs).feeds())
    return feeds, note


# --- validate / profile / gate ----------------------------------------------------------------------------------
def _validation(reference, candidate, data, config: ValidateConfig, user_metrics, progress_batches=None):
    from onnxcompress.validate.evaluate import evaluate

    return evaluate(reference, candidate, data, config, user_metrics, progress_batches).to_dict()


def _profile(models: Mapping[str, onnx.ModelProto], data, validate: ValidateConfig, seed: int,
             clock=time.perf_counter) -> tuple[dict[str, Any], str]:
    from onnxcompress.data.inputs import model_input_specs
    from onnxcompress.runtime.session import SessionOptions
    from onnxcompress.validate.profile import profile_sessions

    first = next(iter(models.values()))
    sample, note = profile_sample(first, data, max(validate.profile.batch_sizes), seed)
    options = SessionOptions(providers=validate.providers, threads=validate.threads)
    result = profile_sessions(models, sample, model_input_specs(first), validate.profile, options, clock=clock)
    result["inputs"] = note
    return result, note


def validate(reference, candidate, data, *, config: ValidateConfig | None = None,
             user_metrics: Mapping[str, Any] | None = None, policy: GatePolicy | None = None) -> Report:
    """Compare ``candidate`` with ``reference`` on ``data``; with ``policy`` the report also holds the gate."""
    config = config or ValidateConfig()
    if policy is not None and policy.tolerances is not None:
        config = replace(config, tolerances=dict(policy.tolerances))
    ref, ref_info = load(reference)
    cand, cand_info = load(candidate)
    eval_data = _data(data)
    report = Report("validate" if policy is None else "gate", models={"reference": ref_info, "candidate": cand_info},
                    data={"evaluation": data_info(data, eval_data)},
                    environment=environment_info(_providers(config.providers)))
    report.validation = _validation(ref, cand, eval_data, config, user_metrics)
    report.recipe = Recipe(quantize=None, validate=config, gate=policy).to_dict()
    if policy is not None:
        if policy.needs_latency:
            report.profile, _ = _profile({"reference": ref, "candidate": cand}, eval_data, config, 0)
            report.warnings += report.profile["warnings"]
        coverage = int8_kernel_coverage(ref, cand, config) if policy.min_int8_kernel_coverage is not None else None
        report.stages["coverage"] = coverage
        report.gate = evaluate_gate(policy, _measured(report, coverage)).to_dict()
    return report


def gate(reference, candidate, data, policy: GatePolicy, *, config: ValidateConfig | None = None,
         user_metrics: Mapping[str, Any] | None = None) -> Report:
    """Validate (and profile when the policy has latency criteria), then evaluate ``policy``."""
    return validate(reference, candidate, data, config=config, user_metrics=user_metrics, policy=policy)


def profile(model, *, vs=None, data=None, config: ProfileConfig | None = None, providers: str = "auto",
            threads: int = 0, seed: int = 0, clock=time.perf_counter) -> Report:
    """Latency of ``model``; with ``vs`` both models interleaved and speed-up = vs p50 / model p50."""
    validate_cfg = ValidateConfig(providers=providers, threads=threads, profile=config or ProfileConfig())
    proto, info = load(model)
    models, infos = {"model": proto}, {"model": info}
    if vs is not None:
        other, other_info = load(vs)
        models, infos = {"reference": other, "candidate": proto}, {"reference": other_info, "candidate": info}
    eval_data = _data(data)
    report = Report("profile", models=infos, environment=environment_info(_providers(providers)))
    if eval_data is not None:
        report.data["profile"] = data_info(data, eval_data)
    report.profile, _ = _profile(models, eval_data, validate_cfg, seed, clock)
    report.warnings += report.profile["warnings"]
    return report


def _providers(spec: str) -> list[str]:
    from onnxcompress.runtime.session import resolve_providers

    return resolve_providers(spec)


def _measured(report: Report, coverage: float | None) -> dict[str, Any]:
    cand = report.models.get("candidate") or {}
    return {"validation": report.validation, "profile": report.profile, "int8_kernel_coverage": coverage,
            "candidate_size_mb": None if cand.get("bytes") is None else cand["bytes"] / 1e6}


def int8_kernel_coverage(reference: onnx.ModelProto, candidate: onnx.ModelProto, config: ValidateConfig) -> float:
    """Standalone estimate: int8 kernels in ORT's optimized candidate / Conv, Gemm, MatMul nodes of the reference."""
    import tempfile

    from onnxcompress.runtime.session import SessionOptions, make_session

    with tempfile.TemporaryDirectory(prefix="onnxcompress-opt-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        make_session(candidate, SessionOptions(providers="cpu", threads=1, optimized_model_path=str(path)))
        optimized = onnx.load(str(path), load_external_data=False)
    wanted = sum(n.op_type in INT8_CANDIDATES for n in reference.graph.node)
    found = sum(n.op_type in INT8_KERNELS for n in optimized.graph.node)
    return 1.0 if wanted == 0 else min(1.0, found / wanted)


# --- optimize ---------------------------------------------------------------------------------------------------
def default_policy(validation: dict[str, Any]) -> GatePolicy:
    """Used when the recipe has no [gate]: accuracy drop <= 1 pt with labels, agreement >= 98% for classifiers,
    else cosine >= 0.99."""
    task = (validation.get("task") or {}).get("reference") or {}
    primary = validation["fidelity"].get(validation["primary_output"], {})
    classifier = primary.get("top1_agreement") is not None
    return GatePolicy(max_accuracy_drop=0.01 if "top1" in task else None,
                      min_top1_agreement=0.98 if classifier else None,
                      min_cosine=None if classifier else 0.99)


def _stage_fn(stage: str, name: str):
    import importlib

    return getattr(importlib.import_module(f"onnxcompress.{stage}"), name, None)


def _resolve_quantize(recipe: Recipe, calib, report: Report):
    """Auto: INT8 for the CPU target when calibration data is given and the quantizer is available."""
    value = recipe.quantize
    if value == AUTO:
        cls = stage_config_class("quantize")
        if calib is None or cls is None or _stage_fn("quantize", "quantize_model") is None:
            why = "no calibration data (--calib)" if calib is None else "this build has no quantizer"
            report.warnings.append(f"quantization skipped: {why}")
            return None
        return cls()
    if value is not None and calib is None:
        raise DataError("the recipe asks for quantization but no calibration data was given",
                        hint="pass --calib DATA (a .npz with the model's inputs), or set quantize = false")
    return value


def _preprocess(model: onnx.ModelProto, ctx) -> tuple[onnx.ModelProto, dict[str, Any]]:
    from onnxcompress.passes.preprocess import preprocess_model

    return preprocess_model(model, ctx)


def _eval_data(calib, evaluation, model: onnx.ModelProto, seed: int, report: Report):
    from onnxcompress.data.inputs import model_input_specs, random_data

    if evaluation is not None:
        return evaluation
    if calib is not None:
        report.warnings.append("no evaluation data given: validating on the calibration data, which the model "
                               "was calibrated on (pass --eval for an unbiased check)")
        return calib
    report.warnings.append(f"no data given: validating on {RANDOM_SAMPLES} random samples (seed {seed}); "
                           "no task metrics (pass --calib/--eval)")
    return random_data(model_input_specs(model), RANDOM_SAMPLES, seed=seed)


def optimize(model, *, recipe: Recipe | None = None, calib=None, eval=None, output: str | Path | None = None,
             user_metrics: Mapping[str, Any] | None = None,
             progress: Progress | None = None) -> tuple[onnx.ModelProto, Report]:
    """Run the pipeline; return the optimized model and its Report (gate result included; never raises on a
    failed gate). With ``output`` the model is saved atomically before validation."""
    from onnxcompress.passes import PassContext

    from onnxcompress.ir.io import check_output

    say = progress or (lambda stage: None)
    recipe = recipe or Recipe()
    check_output(output, model, calib, eval)
    say("load")
    original, ref_info = load(model)
    calib_data, eval_data = _data(calib), _data(eval)
    report = Report("optimize", models={"reference": ref_info}, environment=environment_info(
        _providers(recipe.validate.providers)))
    quant_cfg = _resolve_quantize(recipe, calib_data, report)
    eval_data = _eval_data(calib_data, eval_data, original, recipe.seed, report)
    _check_data(eval_data, original, recipe.validate)
    ctx = PassContext(seed=recipe.seed, calibration=calib_data)
    candidate = _transform(original, recipe, quant_cfg, calib_data, ctx, report, say)
    report.models["candidate"] = _save(candidate, output)
    _describe_data(report, calib, calib_data, eval, eval_data)
    _check(original, candidate, eval_data, recipe, report, say, user_metrics)
    effective = replace(recipe, quantize=quant_cfg, distill=ctx.artifacts.get("effective_distill"),
                        gate=_policy_of(recipe, report))
    report.recipe = effective.to_dict()
    report.passes = [r.to_dict() for r in ctx.records]
    report.decisions = [d.to_dict() for d in ctx.decisions]
    return candidate, report


def _check_data(data, model: onnx.ModelProto, config: ValidateConfig) -> None:
    """Check every evaluation sample (names, dtypes, shapes, NaN/Inf) before anything is written."""
    from onnxcompress.data.inputs import model_input_specs

    bound = data.batched(config.batch_size).limited(config.max_samples).bind(model_input_specs(model))
    bound.check_first()
    for _ in bound.batches():
        pass


def _transform(model, recipe: Recipe, quant_cfg, calib, ctx, report: Report, say: Progress) -> onnx.ModelProto:
    say("preprocess")
    model, report.stages["preprocess"] = _preprocess(model, ctx)
    teacher = model
    if recipe.prune is not None:
        say("prune")
        model, report.stages["prune"] = _stage_fn("prune", "prune_model")(model, recipe.prune, calib, ctx=ctx)
    distill_cfg = ctx.artifacts["effective_distill"] = _resolve_distill(recipe, calib, ctx)
    if distill_cfg is not None:
        say("distill")
        kept = _stage_fn("distill.api", "kept_from_prune_report")(report.stages.get("prune") or {})
        model, report.stages["distill"] = _stage_fn("distill.api", "distill")(
            teacher, model, calib, distill_cfg, kept=kept, ctx=ctx)
    if quant_cfg is not None:
        say("quantize")
        tuned = _stage_fn("tune", "tune_for_gate")  # the gate has an accuracy criterion: mixed-precision search
        tuned = tuned(model, calib, quant_cfg, recipe.gate, ctx=ctx) if tuned is not None else None
        if tuned is not None:
            model, report.stages["quantize"] = tuned
        else:
            model, report.stages["quantize"] = _stage_fn("quantize", "quantize_model")(model, calib, quant_cfg, ctx=ctx)
    return model


def _resolve_distill(recipe: Recipe, calib, ctx):
    """``auto`` (the default): reconstruct after pruning when calibration data is given; the choice is recorded."""
    value = recipe.distill
    if value == AUTO:
        if recipe.prune is None:
            return None
        if calib is None:
            ctx.decide("optimize", "distill", "skipped", "no calibration data: the pruned model is not reconstructed")
            return None
        ctx.decide("optimize", "distill", "auto", "reconstructing the pruned model against the original")
        return stage_config_class("distill")()
    if value is not None and calib is None:
        raise DataError("the recipe asks for distillation but no calibration data was given",
                        hint="pass --calib DATA, or set distill = false")
    return value


def _save(model: onnx.ModelProto, output) -> dict[str, Any]:
    from onnxcompress.ir.io import file_size, save_model, sha256_file

    if output is None:
        _, info = load(model)
        return info
    path = save_model(model, output)
    return {"path": str(path), "sha256": sha256_file(path), "bytes": sum(file_size(path))}


def _describe_data(report: Report, calib_src, calib, eval_src, eval_data) -> None:
    if calib is not None:
        report.data["calibration"] = data_info(calib_src, calib)
    report.data["evaluation"] = data_info(eval_src if eval_data is not calib else calib_src, eval_data)
    report.data["evaluation"]["is_calibration_data"] = calib is not None and eval_data is calib


def _policy_of(recipe: Recipe, report: Report) -> GatePolicy:
    return recipe.gate if recipe.gate is not None else default_policy(report.validation)


def _check(original, candidate, eval_data, recipe: Recipe, report: Report, say: Progress, user_metrics) -> None:
    config = recipe.validate
    if recipe.gate is not None and recipe.gate.tolerances is not None:
        config = replace(config, tolerances=dict(recipe.gate.tolerances))
    say("validate")
    report.validation = _validation(original, candidate, eval_data, config, user_metrics)
    policy = _policy_of(recipe, report)
    if config.profile.enabled or policy.needs_latency:
        say("profile")
        report.profile, _ = _profile({"reference": original, "candidate": candidate}, eval_data, config, recipe.seed)
        report.warnings += report.profile["warnings"]
    say("gate")
    coverage = (report.stages.get("quantize") or {}).get("coverage")
    report.gate = evaluate_gate(policy, _measured(report, coverage)).to_dict()
