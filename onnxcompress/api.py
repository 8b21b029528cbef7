"""The public verbs: optimize | prune | quantize | distill | attach | validate | profile | gate | inspect |
sensitivity.

Each transform verb is load -> ``pipeline.build(recipe)`` -> run -> (model, typed result); every model argument is
a path or an ``onnx.ModelProto`` and is never modified; with ``output`` the result is written through
:mod:`onnxcompress.ir.outputs` (checked against the inputs before any work, published atomically). Data
arguments take what :func:`onnxcompress.data.load_input_data` takes (a .npz path, a folder, a dict of arrays, an
InputData, a re-iterable of feed dicts); paths are checked against ``limits`` (:class:`DataLimits`) first.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxcompress import pipeline
from onnxcompress.data.config import DataConfig
from onnxcompress.data.inputs import InputData, from_iterable, load_input_data, model_input_specs, random_data
from onnxcompress.data.limits import DataLimits, check_batch_memory
from onnxcompress.distillation.config import DistillConfig
from onnxcompress.distillation.result import AttachResult, DistillResult
from onnxcompress.distillation.weights_io import check_kept, load_mapping, read_weights
from onnxcompress.errors import DataError
from onnxcompress.inspection import inspect_model
from onnxcompress.ir.cost import count_macs, count_parameters
from onnxcompress.ir.io import check_model, file_size, load_model, sha256_file
from onnxcompress.ir.outputs import OutputPlan, OutputSet, fits_protobuf, model_tensors, tensor_bytes
from onnxcompress.ops.formats import weight_formats
from onnxcompress.passes.artifacts import KeptChannels, Teacher
from onnxcompress.passes.base import PassContext
from onnxcompress.passes.preprocess import PreprocessConfig
from onnxcompress.passes.progress import NO_PROGRESS, Progress
from onnxcompress.precision.config import PrecisionConfig
from onnxcompress.precision.result import PrecisionResult
from onnxcompress.pruning.config import PruneConfig
from onnxcompress.pruning.result import PruneResult
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.result import QuantizeResult
from onnxcompress.quantization.verify import weighted_coverage
from onnxcompress.recipe import Recipe
from onnxcompress.report import REPORT_FILES, DataInfo, ModelInfo, Report, Stages, environment_info
from onnxcompress.runtime.session import SessionOptions, make_session, resolve_providers, run
from onnxcompress.tuning import sensitivity_analysis
from onnxcompress.tuning.config import SelfCheckConfig, TuneConfig
from onnxcompress.tuning.stage import SearchFiles
from onnxcompress.validation.config import ProfileConfig, ValidateConfig
from onnxcompress.validation.evaluate import check_inputs, evaluate
from onnxcompress.validation.gate import Criterion, GatePolicy, Measured, default_policy, evaluate_gate, with_criteria
from onnxcompress.validation.precision_check import check_data, floor_criterion, inputs_only, judged_model, verify_conversion
from onnxcompress.validation.profile import profile_models

log = logging.getLogger(__name__)

ModelLike = str | Path | onnx.ModelProto
RANDOM_SAMPLES = 64

__all__ = ["optimize", "prune", "quantize", "convert_precision", "distill", "attach", "validate", "profile", "gate",
           "inspect", "sensitivity", "load"]


# --- inputs -----------------------------------------------------------------------------------------------------
def load(model: ModelLike) -> tuple[onnx.ModelProto, ModelInfo]:
    """The model and its identity (path, sha256, bytes); a ModelProto is hashed as serialized.

    A model with external data is loaded lazily: its tensors stay in their files (memory stays the graph's) and
    are read by :func:`onnxcompress.ir.external.read_array`, or all at once by ``materialize``.
    """

    if isinstance(model, onnx.ModelProto):
        check_model(model)
        return model, replace(_identity(model), weights=weight_formats(model))
    path = Path(model)
    proto = load_model(path)
    return proto, ModelInfo(str(path), sha256_file(path), sum(file_size(path)), weights=weight_formats(proto))


def costed(info: ModelInfo, model: onnx.ModelProto, warnings: list[str]) -> ModelInfo:
    """``info`` with the model's MACs (dynamic dims 1) and parameter count, for the report's before/after."""
    try:
        macs, params = count_macs(model)["total"], count_parameters(model)["total"]
    except Exception as e:  # deliberate: counting is for the report only; a model ORT runs is not refused for it
        warnings.append(f"MACs/parameters of {info.path or 'the model'} not counted: {str(e).splitlines()[0]}")
        return info
    return replace(info, macs=int(macs), params=int(params))


def _identity(model: onnx.ModelProto) -> ModelInfo:
    """An in-memory model's identity: the sha256 of its serialization (past protobuf's 2 GiB: of its structure
    without the tensor bytes, then of every tensor's bytes in order)."""
    if fits_protobuf(model):
        blob = model.SerializeToString()
        return ModelInfo(None, hashlib.sha256(blob).hexdigest(), len(blob))
    structure = onnx.ModelProto()
    structure.CopyFrom(model)
    h = hashlib.sha256()
    for t in model_tensors(structure):
        h.update(t.raw_data)
        t.ClearField("raw_data")
    h.update(structure.SerializeToString())
    return ModelInfo(None, h.hexdigest(), structure.ByteSize() + tensor_bytes(model))


def _data(source: Any, model: onnx.ModelProto, config: DataConfig | None = None,
          limits: DataLimits | None = None) -> InputData | None:
    """``source`` as InputData for ``model`` (images, random data and datasets are shaped by its inputs); files
    are checked against ``limits`` first."""
    return None if source is None else load_input_data(source, config, model_input_specs(model), limits=limits)


def random_data_notes(data: Mapping[str, InputData | None]) -> list[str]:
    """A warning per data set that is seeded random inputs (asked for with ``random``): reported as such."""
    return [f"{role} data is {d.source}, as requested: not real inputs, so ranges and metrics are only indicative"
            for role, d in data.items() if d is not None and d.source.startswith("random(")]


def data_info(source: Any, data: InputData, *, is_calibration: bool | None = None) -> DataInfo:

    digest = None
    path = Path(source) if isinstance(source, (str, Path)) else None
    if path is not None and path.is_file():
        digest = sha256_file(path)
    elif path is not None and path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.rglob("*"), key=lambda q: q.relative_to(path).as_posix()):
            if p.is_file():
                h.update(p.relative_to(path).as_posix().encode() + b"\0" + sha256_file(p).encode())
        digest = h.hexdigest()
    return DataInfo(data.source, len(data), tuple(data.keys()), digest, is_calibration)


def _plan(output: str | Path | None, models: tuple[Any, ...], inputs: tuple[Any, ...] = ()) -> OutputPlan:
    """The run's outputs, checked against its inputs before any work."""
    return OutputPlan(models, inputs).model(output).check()


def _save(model: onnx.ModelProto, output: str | Path | None, plan: OutputPlan) -> None:
    if output is not None:
        with plan.stage() as staged:
            staged.model(output, model)
            staged.publish()


def _run(model: onnx.ModelProto, recipe: Recipe, ctx: PassContext, *, teacher_from_input: bool = True
         ) -> onnx.ModelProto:
    return pipeline.build(recipe, teacher_from_input=teacher_from_input).run(model, ctx)


def _stage_recipe(seed: int = 0, preprocess: PreprocessConfig | None = None, **stages: Any) -> Recipe:
    return Recipe(seed=seed, preprocess=preprocess or PreprocessConfig(), **{"distill": None, "quantize": None,
                                                                           **stages})


# --- transform verbs --------------------------------------------------------------------------------------------
def prune(model: ModelLike, config: PruneConfig | None = None, calib: Any = None, output: str | Path | None = None,
          *, preprocess: PreprocessConfig | None = None, progress: Progress | None = None,
          data_config: DataConfig | None = None, limits: DataLimits | None = None
          ) -> tuple[onnx.ModelProto, PruneResult]:
    """Structured channel pruning (default ratio 0.3, l1). ``calib`` is needed by the activation and
    reconstruction criteria and gives concrete shapes to models with dynamic dims."""

    plan = _plan(output, (model,), (calib,))
    config = config or PruneConfig()
    proto, _ = load(model)
    ctx = PassContext(seed=config.seed, calibration=_data(calib, proto, data_config, limits),
                      progress=progress or NO_PROGRESS)
    out = _run(proto, _stage_recipe(config.seed, preprocess, prune=config), ctx)
    _save(out, output, plan)
    return out, ctx.require(PruneResult, "prune")


def quantize(model: ModelLike, calib: Any = None, config: QuantizeConfig | None = None, *,
             tune: TuneConfig | None = None, eval: Any = None, output: str | Path | None = None,
             trace: str | Path | None = None, preprocess: PreprocessConfig | None = None,
             progress: Progress | None = None, data_config: DataConfig | None = None,
             limits: DataLimits | None = None, self_check: SelfCheckConfig | None = None,
             validate: ValidateConfig | None = None) -> tuple[onnx.ModelProto, QuantizeResult]:
    """INT8 quantization (static QDQ from ``calib``, or ``config.mode = "dynamic"``). With ``tune`` the
    mixed-precision search meets its accuracy goal (checked on ``eval``, else on ``calib``) and writes the best
    model so far to ``output`` and its trial trace to ``trace`` as it goes; ``result.search.goal_met`` says
    whether the goal was reached. Without ``tune``, ``self_check`` (on by default) measures the result on
    held-out calibration samples against the fidelity floors of ``validate`` (its ``outputs`` kinds and
    ``floors``) and runs the search when a floor is missed; ``result.self_check.passed`` says whether the written
    model meets them."""

    plan = OutputPlan((model,), (calib, eval)).model(output).file(trace, "--trace").check()
    config = config or QuantizeConfig()
    proto, _ = load(model)
    ctx = PassContext(calibration=_data(calib, proto, data_config, limits),
                      evaluation=_data(eval, proto, data_config, limits), progress=progress or NO_PROGRESS)
    stages = _stage_recipe(0, preprocess, quantize=config, tune=tune, self_check=self_check or SelfCheckConfig(),
                           validate=validate or ValidateConfig())
    recipe = pipeline.resolve(stages, ctx.calibration).recipe
    if tune is not None:
        ctx.put(SearchFiles(None if output is None else Path(output), None if trace is None else Path(trace)))
    out = _run(proto, recipe, ctx)
    _save(out, output, plan)
    result = ctx.require(QuantizeResult, "quantize")
    notes = random_data_notes({"calibration": ctx.calibration, "evaluation": ctx.evaluation})
    return out, replace(result, warnings=result.warnings + tuple(notes)) if notes else result


def convert_precision(model: ModelLike, config: PrecisionConfig | None = None, calib: Any = None, *,
                      eval: Any = None, output: str | Path | None = None, preprocess: PreprocessConfig | None = None,
                      seed: int = 0, progress: Progress | None = None, data_config: DataConfig | None = None,
                      limits: DataLimits | None = None) -> tuple[onnx.ModelProto, PrecisionResult]:
    """fp16/bf16 conversion that keeps float32 where the calibration data (``calib``) says values or reductions
    would not survive; with ``config.verify`` the result is checked against the float32 model on ``eval`` (else
    ``calib``, else seeded random inputs): ``result.passed`` is False on NaN/Inf or below the fidelity floor (the
    model is written all the same; the CLI then exits 1)."""

    plan = _plan(output, (model,), (calib, eval))
    config = config or PrecisionConfig()
    proto, _ = load(model)
    ctx = PassContext(seed=seed, calibration=_data(calib, proto, data_config, limits),
                      evaluation=_data(eval, proto, data_config, limits), progress=progress or NO_PROGRESS)
    out = _run(proto, _stage_recipe(seed, preprocess, precision=config), ctx)
    result = ctx.require(PrecisionResult, "convert_precision")
    if config.verify:
        ctx.progress.stage("validate")
        data, note = check_data(ctx, proto, seed, RANDOM_SAMPLES)
        result = verify_conversion(result, out, ctx, data, note, "cpu")
    _save(out, output, plan)
    return out, result


def distill(teacher: ModelLike, student: ModelLike, calib: Any, config: DistillConfig | None = None, *,
            kept: KeptChannels | Mapping[str, list[int]] | None = None, output: str | Path | None = None,
            preprocess: PreprocessConfig | None = None, progress: Progress | None = None,
            data_config: DataConfig | None = None, limits: DataLimits | None = None
            ) -> tuple[onnx.ModelProto, DistillResult]:
    """Layer-wise reconstruction of ``student`` (a compressed copy of ``teacher``) against the teacher's
    activations on ``calib``. ``kept``: the kept channels of pruned tensors (a prune result's
    ``kept_channels()``, or {tensor: indices})."""

    plan = _plan(output, (teacher, student), (calib,))
    config = config or DistillConfig()
    t_proto, _ = load(teacher)
    s_proto, _ = load(student)

    record = kept if isinstance(kept, KeptChannels) else KeptChannels.from_mapping(kept) if kept else None
    record = record or KeptChannels.from_model(s_proto)  # a model pruned by onnxcompress carries its record
    if record:
        check_kept(record, t_proto, s_proto)
    recipe = _stage_recipe(config.seed, preprocess, distill=config)
    ctx = PassContext(seed=config.seed, calibration=_data(calib, t_proto, data_config, limits),
                      progress=progress or NO_PROGRESS)
    ctx.put(Teacher(pipeline.preprocessed(t_proto, recipe, ctx, stage="teacher")))
    if record:
        ctx.put(record)
    out = _run(s_proto, recipe, ctx, teacher_from_input=False)
    _save(out, output, plan)
    return out, ctx.require(DistillResult, "distill")


def attach(model: ModelLike, weights: str | Path | Mapping[str, np.ndarray],
           mapping: str | Path | Mapping[str, str] | None = None, data: Any = None,
           output: str | Path | None = None, *, seed: int = 0, limits: DataLimits | None = None
           ) -> tuple[onnx.ModelProto, AttachResult]:
    """Attach weights trained elsewhere (.npz/.safetensors/.onnx path or a dict; ``mapping``: JSON path or dict
    {model name: name in the weights}) and validate by running it (on ``data``, else seeded random inputs)."""

    plan = _plan(output, (model,), (weights if not isinstance(weights, Mapping) else None,
                                    mapping if not isinstance(mapping, Mapping) else None, data))
    proto, _ = load(model)
    arrays = dict(weights) if isinstance(weights, Mapping) else read_weights(weights, limits)
    names = dict(mapping) if isinstance(mapping, Mapping) else load_mapping(mapping)
    ctx = PassContext(seed=seed)
    out = pipeline.attach_pipeline(arrays, names).run(proto, ctx)
    result = replace(ctx.require(AttachResult, "attach"), validated_on=_run_once(out, data, seed, limits))
    _save(out, output, plan)
    return out, result


def _run_once(model: onnx.ModelProto, data: Any, seed: int, limits: DataLimits | None) -> str:
    """Run ``model`` on a batch of ``data`` (else seeded random inputs); NaN/Inf outputs are a DataError."""

    specs = model_input_specs(model)
    feeds_data = _data(data, model, limits=limits) if data is not None else random_data(specs, 2, seed=seed)
    assert feeds_data is not None
    feeds = next(feeds_data.batched(8).bind(specs).feeds())
    results = run(make_session(model, SessionOptions(providers="cpu")), feeds)
    bad = [k for k, v in results.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if bad:
        raise DataError(f"the model with attached weights produces NaN/Inf in {bad}",
                        hint="check that the weights were trained for this architecture and dtype")
    return feeds_data.source


# --- analysis verbs ---------------------------------------------------------------------------------------------
def inspect(model: ModelLike, input_shapes: Mapping[str, list[int]] | None = None) -> dict[str, Any]:
    """Static analysis (schema onnxcompress.inspect/1, see docs/inspect-schema.md)."""

    return inspect_model(model, dict(input_shapes or {}))


def sensitivity(model: ModelLike, calib: Any, quant: QuantizeConfig | None = None, tune: TuneConfig | None = None,
                *, eval: Any = None, prune_ratio: float = 0.0,
                preprocess: PreprocessConfig | None = None, progress: Progress | None = None,
                data_config: DataConfig | None = None, limits: DataLimits | None = None) -> dict[str, Any]:
    """Per-node quantization sensitivity, ranked (and per-group pruning loss with ``prune_ratio``), JSON-ready."""

    proto, _ = load(model)
    calib_data = _data(calib, proto, data_config, limits)
    ctx = PassContext(calibration=calib_data, progress=progress or NO_PROGRESS)
    prepared = pipeline.preprocessed(proto, _stage_recipe(0, preprocess), ctx)
    return sensitivity_analysis(prepared, calib_data, quant, tune, eval_data=_data(eval, proto, data_config, limits),
                                prune_ratio=prune_ratio, progress=progress)


# --- validate / profile / gate ----------------------------------------------------------------------------------
def _providers(spec: str) -> list[str]:

    return resolve_providers(spec)


def _with_policy_tolerances(config: ValidateConfig, policy: GatePolicy | None) -> ValidateConfig:
    if policy is not None and policy.tolerances is not None:
        return replace(config, tolerances=dict(policy.tolerances))
    return config


def _check_profile_batch(model: onnx.ModelProto, config: ProfileConfig, limits: DataLimits | None) -> None:
    """The largest profiled batch must fit the data limits (before any session is made)."""
    check_batch_memory(model_input_specs(model), max(config.batch_sizes), limits or DataLimits())


def _measured(report: Report, coverage: float | None) -> Measured:
    cand = report.models.get("candidate")
    return Measured(report.validation, report.profile, None if cand is None else cand.bytes / 1e6, coverage)


def validate(reference: ModelLike, candidate: ModelLike, data: Any, *, config: ValidateConfig | None = None,
             user_metrics: Mapping[str, Any] | None = None, policy: GatePolicy | None = None,
             progress: Progress | None = None, data_config: DataConfig | None = None,
             limits: DataLimits | None = None, clock: Callable[[], float] = time.perf_counter) -> Report:
    """Compare ``candidate`` with ``reference`` on ``data``; with ``policy`` the report also holds the gate.
    ``user_metrics``: {name: fn(outputs, extras) -> float per batch, or an object with update()/compute()}.
    ``clock``: the profiler's clock (seconds), when the policy needs latency."""

    config = _with_policy_tolerances(config or ValidateConfig(), policy)
    if policy is not None:
        policy.check_metric(user_metrics or {})
    ref, ref_info = load(reference)
    cand, cand_info = load(candidate)
    if policy is not None and policy.needs_latency:
        _check_profile_batch(ref, config.profile, limits)
    if data is None:
        raise DataError("validation needs evaluation data", hint="pass --data EVAL (a .npz file or a folder)")
    eval_data = _data(data, ref, data_config, limits)
    assert eval_data is not None
    report = Report("validate" if policy is None else "gate", models={"reference": ref_info, "candidate": cand_info},
                    data={"evaluation": data_info(data, eval_data)},
                    environment=environment_info(_providers(config.providers)))
    report.warnings += random_data_notes({"evaluation": eval_data})
    files = tuple(None if isinstance(m, onnx.ModelProto) else Path(m) for m in (reference, candidate))
    report.validation = evaluate(ref, cand, eval_data, config, user_metrics, progress=progress,
                                 files=(files[0], files[1]))
    report.recipe = Recipe(quantize=None, distill=None, validate=config, gate=policy)
    if policy is not None:
        if policy.needs_latency:
            report.profile = profile_models({"reference": ref, "candidate": cand}, eval_data, config.profile,
                                            config.providers, config.threads, 0, clock=clock, progress=progress)
            report.warnings += report.profile.warnings
        coverage = weighted_coverage(ref, cand) if policy.min_int8_kernel_coverage is not None else None
        report.stages.coverage = coverage
        report.gate = evaluate_gate(policy, _measured(report, coverage))
    return report


def gate(reference: ModelLike, candidate: ModelLike, data: Any, policy: GatePolicy, *,
         config: ValidateConfig | None = None, user_metrics: Mapping[str, Any] | None = None,
         progress: Progress | None = None, data_config: DataConfig | None = None,
         limits: DataLimits | None = None, clock: Callable[[], float] = time.perf_counter) -> Report:
    """Validate (and profile when the policy has latency criteria), then evaluate ``policy``."""
    return validate(reference, candidate, data, config=config, user_metrics=user_metrics, policy=policy,
                    progress=progress, data_config=data_config, limits=limits, clock=clock)


def profile(model: ModelLike, *, vs: ModelLike | None = None, data: Any = None, config: ProfileConfig | None = None,
            providers: str = "auto", threads: int = 0, seed: int = 0, clock: Callable[[], float] = time.perf_counter,
            progress: Progress | None = None, data_config: DataConfig | None = None,
            limits: DataLimits | None = None) -> Report:
    """Latency of ``model``; with ``vs`` both models interleaved and speed-up = vs p50 / model p50."""

    config = config or ProfileConfig()
    proto, info = load(model)
    models, infos = {"model": proto}, {"model": info}
    if vs is not None:
        other, other_info = load(vs)
        check_inputs(other, proto)
        models, infos = {"reference": other, "candidate": proto}, {"reference": other_info, "candidate": info}
    _check_profile_batch(proto, config, limits)
    eval_data = _data(data, proto, data_config, limits)
    report = Report("profile", models=infos, environment=environment_info(_providers(providers)))
    if eval_data is not None:
        report.data["profile"] = data_info(data, eval_data)
        report.warnings += random_data_notes({"profile": eval_data})
    report.profile = profile_models(models, eval_data, config, providers, threads, seed, clock=clock,
                                    progress=progress)
    report.warnings += report.profile.warnings
    return report


# --- optimize ---------------------------------------------------------------------------------------------------
def _eval_data(calib: InputData | None, evaluation: InputData | None, model: onnx.ModelProto, seed: int,
               report: Report) -> InputData:

    if evaluation is not None:
        return evaluation
    if calib is not None:
        report.warnings.append("no evaluation data given: validating on the calibration data, which the model "
                               "was calibrated on (pass --eval for an unbiased check)")
        return calib
    report.warnings.append(f"no data given: validating on {RANDOM_SAMPLES} random samples (seed {seed}); "
                           "no task metrics (pass --calib/--eval)")
    return random_data(model_input_specs(model), RANDOM_SAMPLES, seed=seed)


def _check_data(data: InputData, model: onnx.ModelProto, config: ValidateConfig) -> None:
    """Check every evaluation sample (names, dtypes, shapes, NaN/Inf) before anything is written."""

    bound = data.batched(config.batch_size).limited(config.max_samples).bind(model_input_specs(model))
    bound.check_first()
    for _ in bound.batches():
        pass


def _stages(ctx: PassContext) -> Stages:
    return Stages(prune=ctx.get(PruneResult), distill=ctx.get(DistillResult), quantize=ctx.get(QuantizeResult),
                  precision=ctx.get(PrecisionResult))


def optimize(model: ModelLike, *, recipe: Recipe | None = None, calib: Any = None, eval: Any = None,
             output: str | Path | None = None, user_metrics: Mapping[str, Any] | None = None,
             progress: Progress | None = None, report_dir: str | Path | None = None,
             dump_recipe: str | Path | None = None) -> tuple[onnx.ModelProto, Report]:
    """The whole pipeline (preprocess -> prune -> distill -> quantize -> validate -> profile -> gate); returns the
    optimized model and its Report. A failed gate is ``report.passed is False``, not an exception. The outputs
    (``output``: the model; ``report_dir``: report.json, report.md, junit.xml; ``dump_recipe``: the effective
    recipe) are checked before any work and published together after the gate, all of them or none; the
    report's candidate sha256 is that of the model bytes published."""

    progress = progress or NO_PROGRESS
    recipe = recipe or Recipe()
    if dump_recipe is not None:
        Recipe.check_path(dump_recipe)
    plan = (OutputPlan((model,), (calib, eval)).model(output).folder(report_dir, REPORT_FILES.values())
            .file(dump_recipe, "--dump-recipe").check())
    if recipe.gate is not None:
        recipe.gate.check_metric(user_metrics or {})
    progress.stage("load")
    original, ref_info = load(model)
    _check_profile_batch(original, recipe.validate.profile, recipe.limits)
    calib_data = _data(calib, original, recipe.data, recipe.limits)
    eval_data = _data(eval, original, recipe.data, recipe.limits)
    report = Report("optimize", models={"reference": ref_info},
                    environment=environment_info(_providers(recipe.validate.providers)))
    report.warnings += random_data_notes({"calibration": calib_data, "evaluation": eval_data})
    resolved = pipeline.resolve(recipe, calib_data)
    report.warnings += resolved.warnings
    eval_data = _eval_data(calib_data, eval_data, original, recipe.seed, report)
    _check_data(eval_data, original, recipe.validate)
    ctx = PassContext(seed=recipe.seed, calibration=calib_data, progress=progress)
    for note in resolved.notes:
        stage, _, reason = note.partition(": ")
        ctx.decide("optimize", stage, "skipped" if reason.startswith("skipped") else "auto", reason)
    candidate = _run(original, resolved.recipe, ctx)
    report.stages = _stages(ctx)
    _quantize_warnings(report, ctx)
    report.models["reference"] = costed(ref_info, original, report.warnings)
    if calib_data is not None:
        report.data["calibration"] = data_info(calib, calib_data)
    same = calib_data is not None and eval_data is calib_data
    report.data["evaluation"] = data_info(calib if same else eval, eval_data, is_calibration=same)
    judged, emulated = judged_model(candidate, ctx, resolved.recipe.validate.providers)
    if emulated and resolved.recipe.precision is not None:
        to = resolved.recipe.precision.to
        report.warnings.append(f"{to}: validated on the float32 twin that rounds every low-precision tensor "
                               "(onnxruntime's CPU provider shows no fp16/bf16 numerics)"
                               + ("; latency not profiled (no bf16 kernels on CPU)" if to == "bf16"
                                  else "; latency of the written model"))
    bf16 = emulated and resolved.recipe.precision is not None and resolved.recipe.precision.to == "bf16"
    with plan.stage() as staged:
        report.models["candidate"] = costed(_stage_model(staged, candidate, output), candidate, report.warnings)
        policy = _check(original, candidate, eval_data, resolved.recipe, report, progress, user_metrics, ctx=ctx,
                        judged=judged, profile=not bf16)
        report.recipe = replace(resolved.recipe, gate=policy,
                                quantize=_placed(resolved.recipe.quantize, report.stages.quantize))
        report.passes, report.decisions = list(ctx.records), list(ctx.decisions)
        if report_dir is not None:
            report.stage(staged, report_dir)
        if dump_recipe is not None:
            staged.text(dump_recipe, report.recipe.dumps(dump_recipe))
        staged.publish()
    return candidate, report


def _stage_model(staged: OutputSet, model: onnx.ModelProto, output: str | Path | None) -> ModelInfo:
    """Stage ``model`` at ``output``; its identity is that of the exact bytes staged (else of its serialization)."""
    if output is None:
        return replace(_identity(model), weights=weight_formats(model))
    written = staged.model(output, model)
    return ModelInfo(str(output), written.sha256, written.bytes, weights=weight_formats(model))


def _quantize_warnings(report: Report, ctx: PassContext) -> None:
    """The quantize stage's warnings, --no-verify's note and a "no faster plan" placement, in the report."""
    quant = report.stages.quantize
    if quant is None:
        return
    report.warnings += list(quant.warnings)
    report.warnings += [d.reason for d in ctx.decisions if d.action == "deferred"]  # --no-verify, said again
    if quant.no_faster_plan and quant.placement is not None:
        report.warnings.append(f"no INT8 plan is faster than the float model on {quant.placement.cost_model} "
                               f"(batch {quant.placement.batch}): every node was kept float")


def _placed(config: Any, result: QuantizeResult | None) -> Any:
    """A measured placement is recorded as ``placement = "fixed"`` with its float nodes: the effective recipe
    reproduces the model without measuring again."""
    p = None if result is None else result.placement
    if not isinstance(config, QuantizeConfig) or p is None or p.measured is None:
        return config
    return replace(config, placement="fixed", float_nodes=config.float_nodes + p.float_nodes)


def _check(original: onnx.ModelProto, candidate: onnx.ModelProto, eval_data: InputData, recipe: Recipe,
           report: Report, progress: Progress, user_metrics: Mapping[str, Any] | None, *,
           ctx: PassContext | None = None, judged: onnx.ModelProto | None = None, profile: bool = True) -> GatePolicy:
    """Validate ``judged`` (the candidate, or the float32 twin of an fp16/bf16 conversion on CPU), profile the
    candidate (unless ``profile`` is False: bf16 cannot run on CPU), then the gate with the stages' own checks."""
    config = _with_policy_tolerances(recipe.validate, recipe.gate)
    progress.stage("validate")
    report.validation = evaluate(original, judged if judged is not None else candidate, eval_data, config,
                                 user_metrics, progress=progress)
    policy = recipe.gate if recipe.gate is not None else default_policy(
        report.validation, profiled=profile and config.profile.enabled)
    if profile and (config.profile.enabled or policy.needs_latency):
        progress.stage("profile")
        report.profile = profile_models({"reference": original, "candidate": candidate}, eval_data, config.profile,
                                        config.providers, config.threads, recipe.seed, progress=progress)
        report.warnings += report.profile.warnings
    progress.stage("gate")
    quant = report.stages.quantize
    report.stages.coverage = quant.coverage if quant is not None else None
    report.gate = with_criteria(evaluate_gate(policy, _measured(report, report.stages.coverage)),
                                _stage_criteria(candidate, eval_data, report, ctx, config.providers))
    return policy


def _stage_criteria(candidate: onnx.ModelProto, eval_data: InputData, report: Report, ctx: PassContext | None,
                    providers: str) -> list[Criterion]:
    """Checks a stage asks the gate to add: the fp16/bf16 fidelity floor (no NaN/Inf, cosine, agreement) of the
    conversion itself, against the stage's float32 input, on this run's evaluation data."""
    precision = report.stages.precision
    if precision is None or not precision.config.verify or ctx is None:
        return []
    names = frozenset(s.name for s in model_input_specs(candidate))
    data = from_iterable(partial(inputs_only, eval_data, names), source=eval_data.source)
    checked = verify_conversion(precision, candidate, ctx, data, f"evaluation data of this run ({eval_data.source})",
                                providers)
    report.stages.precision = checked
    assert checked.check is not None
    return [floor_criterion(checked.check, precision.config.to)]
