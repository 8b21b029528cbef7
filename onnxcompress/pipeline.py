"""The ONLY place that turns a Recipe into passes.

``resolve(recipe, calib)`` settles every ``auto`` (quantize, distill, the search goal) from what the run has, and
returns the effective recipe and the notes that explain each choice; ``build(recipe)`` turns an effective recipe
into a :class:`Pipeline`: named stages (preprocess, prune, distill, quantize), each a Sequential of passes.
Preprocessing runs once, first. ``Pipeline.run`` tags every pass record with its stage.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import InputData
from onnxcompress.data.labels import has_class_labels
from onnxcompress.distillation.attach import AttachWeightsPass
from onnxcompress.distillation.config import DistillConfig
from onnxcompress.distillation.reconstruct import ReconstructPass
from onnxcompress.errors import DataError
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.artifacts import Teacher
from onnxcompress.passes.base import Pass, PassContext, PassResult, Sequential
from onnxcompress.passes.preprocess import PreprocessConfig, preprocess_passes
from onnxcompress.precision.stage import precision_passes
from onnxcompress.pruning.prune_channels import PruneChannelsPass
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.stage import quantize_passes
from onnxcompress.quantization.weight_only import QDQ_MIN_OPSET
from onnxcompress.recipe import AUTO, Recipe
from onnxcompress.tuning import TuneConfig, TuneQuantizationPass, goal_from_policy
from onnxcompress.tuning.config import SelfCheckConfig
from onnxcompress.tuning.selfcheck import SelfCheckQuantizePass
from onnxcompress.validation.config import ValidateConfig

log = logging.getLogger(__name__)

STAGES = ("preprocess", "prune", "distill", "quantize", "precision")


@dataclass(frozen=True)
class Stage:
    name: str
    passes: Sequential


class SnapshotTeacherPass(Pass):
    """Keep the current graph as the :class:`Teacher` that later stages reconstruct against."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        ctx.put(Teacher(to_model(graph.copy())))
        return PassResult(graph, False, {})


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[Stage, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def run(self, model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
        """Run every stage on a copy of ``model`` (never modified); returns the new model. Each stage start is
        reported to ``ctx.progress``."""
        graph = to_graph(model)
        for stage in self.stages:
            ctx.progress.stage(stage.name)
            log.info("stage %s: %d pass(es)", stage.name, len(stage.passes.passes))
            ctx.stage = stage.name
            graph = stage.passes(graph, ctx).graph
        ctx.stage = ""
        return with_metadata(to_model(graph, like=model), ctx.metadata)


def with_metadata(model: onnx.ModelProto, entries: Mapping[str, str]) -> onnx.ModelProto:
    """``model`` with ``entries`` set in its metadata_props (existing keys replaced, order kept)."""
    if not entries:
        return model
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key in sorted(entries):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=entries[key]))
    return model


# --- resolving "auto" -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resolved:
    recipe: Recipe
    notes: tuple[str, ...]  # why each auto choice was made (reported as decisions)
    warnings: tuple[str, ...]


def resolve(recipe: Recipe, calib: InputData | None) -> Resolved:
    """The effective recipe: every ``auto`` stage settled from whether calibration data is given; the search goal
    of the quantize stage from the gate's accuracy criterion when the recipe has no [tune] of its own."""
    notes: list[str] = []
    warnings: list[str] = []
    quantize = _resolve_quantize(recipe, calib, warnings)
    preprocess = recipe.preprocess
    if quantize is not None:
        quantize = _resolve_target(quantize, notes)
        preprocess = _resolve_opset(quantize, preprocess, notes)
    distill = _resolve_distill(recipe, calib, notes)
    tune = recipe.tune
    if tune is None and quantize is not None and quantize.mode in ("static", "weight_only") and calib is not None:
        goal = goal_from_policy(recipe.gate, has_class_labels(calib, recipe.validate.labels))
        if goal is not None:  # the gate has an accuracy criterion: the search keeps fragile nodes in higher precision
            tune = TuneConfig(metric=goal[0], max_drop=min(goal[1], 0.999999), measure_latency=False)
            notes.append(f"quantize: mixed-precision search for the gate's {goal[0]} goal (drop <= {goal[1]:g})")
    elif tune is not None and tune.metric == "auto" and calib is not None:
        tune = replace(tune, metric="top1" if has_class_labels(calib, tune.labels) else "agreement")
    check = _resolve_self_check(recipe.self_check, quantize, tune, calib, notes)
    return Resolved(replace(recipe, preprocess=preprocess, quantize=quantize, distill=distill,
                            tune=tune if quantize else None, self_check=check), tuple(notes), tuple(warnings))


def _resolve_self_check(check: SelfCheckConfig, quantize: QuantizeConfig | None, tune: TuneConfig | None,
                        calib: InputData | None, notes: list[str]) -> SelfCheckConfig:
    """The self-check runs when quantizing to INT8 (static or dynamic) without an accuracy goal of the recipe's
    own; it needs calibration data to hold samples out of. The weight modes (INT4, codebooks, ternary, binary) are
    lossy by the user's choice: their goal is a [tune] max_drop."""
    if not check.enabled or quantize is None:
        return check
    if tune is not None:
        notes.append("quantize: self-check: the mixed-precision search's own goal applies instead")
        return check
    if quantize.mode not in ("static", "dynamic"):
        notes.append(f"quantize: self-check not run for the {quantize.mode} weight mode (give an accuracy goal "
                     "with --max-drop / [tune] to search)")
        return replace(check, enabled=False)
    if calib is None:
        notes.append("quantize: self-check skipped, no calibration data to hold samples out of")
        return replace(check, enabled=False)
    notes.append("quantize: self-check on held-out calibration samples against the fidelity floors")
    return check


def _resolve_quantize(recipe: Recipe, calib: InputData | None, warnings: list[str]) -> QuantizeConfig | None:
    value = recipe.quantize
    if value == AUTO and recipe.precision is not None:
        warnings.append(f"quantization skipped: the recipe converts to {recipe.precision.to} ([precision]); "
                        "give a [quantize] table to combine both")
        return None
    if value == AUTO:
        if calib is None:
            warnings.append("quantization skipped: no calibration data (--calib)")
            return None
        return QuantizeConfig()
    if isinstance(value, QuantizeConfig) and value.mode == "weight_only" and value.method == "gptq" and calib is None:
        raise DataError("the recipe asks for GPTQ weight-only quantization but no calibration data was given",
                        hint="pass --calib DATA, or set method = \"rtn\"")
    if isinstance(value, QuantizeConfig) and value.mode == "static" and calib is None:
        raise DataError("the recipe asks for static quantization but no calibration data was given",
                        hint="pass --calib DATA (a .npz with the model's inputs), or set quantize = false")
    return value if isinstance(value, QuantizeConfig) else None


def _resolve_target(config: QuantizeConfig, notes: list[str]) -> QuantizeConfig:
    """``auto`` becomes the target it resolves to on this host, and the weight range is written out, so the
    effective recipe gives the same model on any machine."""
    target = config.resolved_target
    if config.target == "auto":
        notes.append(f"quantize: target auto resolved to {target.name} ({target.reason})")
    reduce = config.resolved_reduce_range()[0]
    return replace(config, target=target.name, reduce_range=reduce)


def _resolve_opset(config: QuantizeConfig, preprocess: PreprocessConfig, notes: list[str]) -> PreprocessConfig:
    """Weight-only QDQ needs DequantizeLinear with block_size (opset 21): the pre-processing upgrades to it."""
    if config.mode == "weight_only" and config.resolved_weight_format() == "qdq" and preprocess.min_opset < QDQ_MIN_OPSET:
        notes.append(f"preprocess: min_opset {preprocess.min_opset} -> {QDQ_MIN_OPSET} "
                     "(weight_format qdq: DequantizeLinear with block_size)")
        return replace(preprocess, min_opset=QDQ_MIN_OPSET)
    return preprocess


def _resolve_distill(recipe: Recipe, calib: InputData | None, notes: list[str]) -> DistillConfig | None:
    value = recipe.distill
    if value == AUTO:
        if recipe.prune is None:
            return None
        if calib is None:
            notes.append("distill: skipped, no calibration data: the pruned model is not reconstructed")
            return None
        notes.append("distill: auto, reconstructing the pruned model against the original")
        return DistillConfig()
    if isinstance(value, DistillConfig) and calib is None:
        raise DataError("the recipe asks for distillation but no calibration data was given",
                        hint="pass --calib DATA, or set distill = false")
    return value if isinstance(value, DistillConfig) else None


# --- building -----------------------------------------------------------------------------------------------------
def quantize_stage(quant: QuantizeConfig, tune: TuneConfig | None, check: SelfCheckConfig | None = None,
                   validate: ValidateConfig | None = None) -> Sequential:
    """The search when the recipe has a goal; else quantize with its self-check (when enabled); else plain."""
    validate = validate or ValidateConfig()
    if tune is not None:
        return Sequential(TuneQuantizationPass(quant, tune, validate))
    if check is not None and check.enabled:
        return Sequential(SelfCheckQuantizePass(quant, check, validate))
    return quantize_passes(quant)


def build(recipe: Recipe, *, teacher_from_input: bool = True) -> Pipeline:
    """The stages of an effective recipe (see :func:`resolve`); ``auto`` values must be resolved first. With
    distillation the pre-processed input becomes the Teacher, unless ``teacher_from_input`` is False (the caller
    put a Teacher of its own into the context)."""
    if AUTO in (recipe.quantize, recipe.distill):
        raise ValueError("resolve the recipe before building its pipeline")
    passes = list(preprocess_passes(recipe.preprocess).passes)
    if isinstance(recipe.distill, DistillConfig) and teacher_from_input:
        passes.append(SnapshotTeacherPass())
    stages: list[Stage] = [Stage("preprocess", Sequential(*passes))]
    if recipe.prune is not None:
        stages.append(Stage("prune", Sequential(PruneChannelsPass(recipe.prune))))
    if isinstance(recipe.distill, DistillConfig):
        stages.append(Stage("distill", Sequential(ReconstructPass(recipe.distill))))
    if isinstance(recipe.quantize, QuantizeConfig):
        stages.append(Stage("quantize", quantize_stage(recipe.quantize, recipe.tune, recipe.self_check,
                                                       recipe.validate)))
    if recipe.precision is not None:
        stages.append(Stage("precision", precision_passes(recipe.precision)))
    return Pipeline(tuple(stages))


def attach_pipeline(weights: Mapping[str, np.ndarray], mapping: Mapping[str, str]) -> Pipeline:
    """Attaching weights works on the model as given (no pre-processing: the weights name its tensors)."""
    return Pipeline((Stage("attach", Sequential(AttachWeightsPass(weights, mapping))),))


def preprocessed(model: onnx.ModelProto, recipe: Recipe, ctx: PassContext, stage: str = "preprocess"
                 ) -> onnx.ModelProto:
    """``model`` after the recipe's pre-processing alone (e.g. a teacher given as its own file)."""
    return Pipeline((Stage(stage, preprocess_passes(recipe.preprocess)),)).run(model, ctx)
