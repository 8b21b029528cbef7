"""The quantization stage as passes: rewrites -> SmoothQuant -> Q/DQ (or dynamic) -> bias correction ->
verification on onnxruntime, which leaves the typed :class:`QuantizeResult` in the context."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import replace
from typing import Any

import onnx_graphsurgeon as gs

from onnxcompress.errors import ProviderError
from onnxcompress.ir.edit import name_nodes
from onnxcompress.ir.graph import to_model
from onnxcompress.ir.query import constant_bytes
from onnxcompress.passes.base import Pass, PassContext, PassResult, Sequential
from onnxcompress.passes.fold import FoldBiasAddPass, FoldPadIntoConvPass, RewriteHardSwishPass
from onnxcompress.quantization.compressed import WeightCompression
from onnxcompress.quantization.config import QuantizeConfig
from onnxcompress.quantization.correct_bias import BiasCorrection, CorrectBiasPass
from onnxcompress.quantization.dynamic import DynamicQuantization, QuantizeDynamicPass
from onnxcompress.quantization.fuse_transformer import FuseTransformerPass
from onnxcompress.quantization.insert_qdq import CalibrationWarnings, QuantizationPlan, QuantizeQDQPass
from onnxcompress.quantization.placement import Placement
from onnxcompress.quantization.plan import plan_graph
from onnxcompress.quantization.result import QuantizedNode, QuantizeResult, SmoothQuantResult, TensorParams, as_float
from onnxcompress.quantization.sharing import ShareWeightsPass
from onnxcompress.quantization.smooth import SmoothedLayers, SmoothQuantPass
from onnxcompress.quantization.upcast import UpcastHalfPass
from onnxcompress.quantization.verify import int8_kernel_ops, verify_kernels, weight_kernel_ops
from onnxcompress.quantization.weight_only import QuantizeWeightOnlyPass
from onnxcompress.runtime.providers import PROVIDER_NAMES
from onnxcompress.runtime.session import available_providers

log = logging.getLogger(__name__)


def rewrite_passes(config: QuantizeConfig) -> list[Pass]:
    """Quantization-friendly rewrites (fewer float islands between int8 kernels; each cleans up after itself)."""
    if not config.rewrites or config.compresses_weights_only:
        return []
    return [RewriteHardSwishPass(), FoldBiasAddPass(), FoldPadIntoConvPass()]


def weight_passes(config: QuantizeConfig) -> list[Pass]:
    """The pass of a weight-compression mode (weight_only, codebook, ternary, binary)."""
    return [QuantizeWeightOnlyPass(config) if config.mode == "weight_only" else ShareWeightsPass(config)]


def smooth_pass(config: QuantizeConfig) -> SmoothQuantPass | None:
    """SmoothQuant as the config asks (static mode only: dynamic quantization measures ranges per batch)."""
    if config.smooth_quant == "off" or config.mode != "static":
        return None
    if config.smooth_quant == "auto":
        return SmoothQuantPass(auto=True)
    return SmoothQuantPass(float(config.smooth_quant))


def quantize_passes(config: QuantizeConfig) -> Sequential:
    """Every pass of the quantization stage, in order, for ``config``."""
    if config.compresses_weights_only:  # a half-precision model is compressed in float32 (signature kept)
        return Sequential(UpcastHalfPass(), *weight_passes(config), VerifyQuantizationPass(config))
    passes: list[Pass] = [UpcastHalfPass()]  # a half-precision model is quantized in float32 (signature kept)
    if config.transformer_fusion != "off":
        passes.append(FuseTransformerPass(config.transformer_fusion))
    smooth = smooth_pass(config)
    if smooth is not None:
        passes.append(smooth)
    passes += rewrite_passes(config)
    if config.mode == "dynamic":
        passes.append(QuantizeDynamicPass(config))
    else:
        passes.append(QuantizeQDQPass(config))
        if config.bias_correction:
            passes.append(CorrectBiasPass(samples=config.calibration_samples or 256, batch_size=config.batch_size))
    passes.append(VerifyQuantizationPass(config))
    return Sequential(*passes)


class VerifyQuantizationPass(Pass):
    """Open the quantized graph in onnxruntime (when ``config.verify``), map its int8 kernels back to the planned
    nodes and leave the :class:`QuantizeResult` in the context. Reads the graph; never changes it."""

    def __init__(self, config: QuantizeConfig):
        self.config = config

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:

        if self.config.compresses_weights_only:
            return self._weights(graph, ctx)
        plan, dynamic = ctx.get(QuantizationPlan), ctx.get(DynamicQuantization)
        result = _result(self.config, plan, dynamic, ctx, constant_bytes(graph))
        if self.config.verify:
            provider = self.config.resolved_target.provider
            _check_verifiable(self.config.resolved_target.name, provider)
            model = to_model(graph)
            if plan is not None:
                result = _replace(result, verification=verify_kernels(model, plan.plan, provider))
            else:
                result = _replace(result, kernel_ops=int8_kernel_ops(model, provider))
        else:
            note = (f"verification deferred (verify = false / --no-verify): the model was not opened in "
                    f"onnxruntime's {PROVIDER_NAMES[self.config.resolved_target.provider]}; its int8 kernels are "
                    "unchecked until it runs on the target")
            ctx.decide(self.name, "verification", "deferred", note)
        ctx.put(result)
        ctx.metadata["onnxcompress.quantization"] = _metadata(self.config, result)
        return PassResult(graph, False, {"coverage": result.coverage})


    def _weights(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        """Weight-compression modes: the result from the pass's WeightCompression; with ``verify`` the op types
        onnxruntime's optimized graph runs the weights with."""
        wc = ctx.require(WeightCompression, self.name)
        stage_seconds = sum(r.seconds for r in ctx.records if r.stage == ctx.stage) if ctx.stage else 0.0
        provider = self.config.resolved_target.provider
        kernels = None
        if self.config.verify:
            _check_verifiable(self.config.resolved_target.name, provider)
            kernels = weight_kernel_ops(to_model(graph), provider)
        else:
            ctx.decide(self.name, "verification", "deferred",
                       f"verification deferred (verify = false / --no-verify): the model was not opened in "
                       f"onnxruntime's {PROVIDER_NAMES[provider]}; its weight kernels are unchecked")
        result = QuantizeResult(self.config.mode, self.config, self.config.resolved_reduce_range(), None,
                                tuple(QuantizedNode(w.node, w.op, self.config.mode) for w in wc.layers),
                                wc.skipped, weight_bytes=(wc.bytes_before, wc.bytes_after), seconds=stage_seconds,
                                kernel_ops=kernels, weights=wc)
        ctx.put(result)
        ctx.metadata["onnxcompress.quantization"] = _metadata(self.config, result)
        return PassResult(graph, False, {"compressed": len(wc.layers)})


def _check_verifiable(target: str, provider: str) -> None:
    """Verification opens the model in the target's provider: say how to go on when this onnxruntime lacks it."""
    full = PROVIDER_NAMES[provider]
    available = available_providers()
    if full not in available:
        raise ProviderError(
            f"verifying a model for target {target} needs onnxruntime's {full}, which this onnxruntime does not "
            f"have (it has {available})",
            hint="pass --no-verify (recipe: [quantize] verify = false) to write the model without the check on this "
                 f"machine, then check it where {full} runs (onnxcompress gate/profile --providers {provider})")


def _metadata(config: QuantizeConfig, result: QuantizeResult) -> str:
    """What the model was built for, so a deployment can check it (JSON in metadata_props)."""

    target = config.resolved_target
    info = {"mode": result.mode, "target": target.name, "weight_bits": result.weight_bits,
            "activation_dtype": result.activation_dtype, "provider": target.provider}
    if config.mode == "weight_only":
        info.update(block_size=config.block_size, method=config.method, weight_format=config.resolved_weight_format())
    return json.dumps(info, sort_keys=True)


def _replace(result: QuantizeResult, **changes: Any) -> QuantizeResult:

    return replace(result, **changes)


def _result(config: QuantizeConfig, plan: QuantizationPlan | None, dynamic: DynamicQuantization | None,
            ctx: PassContext, after_bytes: int) -> QuantizeResult:
    stage_seconds = sum(r.seconds for r in ctx.records if r.stage == ctx.stage) if ctx.stage else 0.0
    smoothed = ctx.get(SmoothedLayers)
    warned = ctx.get(CalibrationWarnings)
    placement = ctx.get(Placement)
    if placement is not None and placement.measured is not None:  # the effective recipe reproduces it anywhere
        config = replace(config, placement="fixed", float_nodes=config.float_nodes + placement.float_nodes)
    common: dict[str, Any] = {
        "warnings": warned.messages if warned is not None else (), "placement": placement,
        "config": config, "reduce_range": config.resolved_reduce_range(), "seconds": stage_seconds,
        "bias_correction": ctx.get(BiasCorrection),
        "smooth_quant": None if smoothed is None else SmoothQuantResult(smoothed.alpha, len(smoothed.layers)),
    }
    if plan is None:
        assert dynamic is not None, "the quantization stage ran neither QuantizeQDQPass nor QuantizeDynamicPass"
        skipped = tuple((d.subject, d.reason) for d in ctx.decisions if d.pass_name == "QuantizeDynamicPass"
                        and d.action == "kept float")
        return QuantizeResult("dynamic", activation_dtype=None,
                              quantized=tuple(QuantizedNode(n, "", "dynamic") for n in dynamic.quantized),
                              skipped=skipped, weight_bytes=(dynamic.bytes_before, after_bytes), **common)
    p = plan.plan
    tensors = {}
    for name in p.activations:
        qp = plan.qparams[name]
        lo, hi = plan.ranges.get(name, (None, None))
        root = p.groups.find(name)
        tensors[name] = TensorParams(None if lo is None else (as_float(lo), as_float(hi)),
                                     root if root != name else None, float(qp.scale), int(qp.zero_point), qp.dtype)
    return QuantizeResult("static", activation_dtype=config.act_dtype,
                          quantized=tuple(QuantizedNode(n, p.ops[n], k) for n, k in p.nodes.items()),
                          skipped=tuple(p.skipped.items()), absorbed=tuple(p.absorbed.items()),
                          float_outputs=tuple(p.float_outputs.items()), tensors=tensors,
                          weight_bytes=(plan.bytes_before, after_bytes), **common)


def quantizable_summary(graph: gs.Graph, config: QuantizeConfig | None = None) -> dict[str, Any]:
    """Which nodes the quantizer would touch (static: rules + selection on a preprocessed graph, no data)."""

    config = config or QuantizeConfig()
    graph = Sequential(*rewrite_passes(config))(graph, PassContext()).graph
    graph.toposort()
    name_nodes(graph)
    plan = plan_graph(graph, config)
    by_op = Counter(plan.ops[n] for n, k in plan.nodes.items() if k != "passthrough")
    kept = Counter(r for r in plan.skipped.values())
    summary = (f"{len(plan.nodes)} nodes would be quantized ("
               + ", ".join(f"{op} {c}" for op, c in sorted(by_op.items()))
               + f"), {len(plan.absorbed)} activations absorbed, {len(plan.skipped)} kept float")
    return {
        "summary": summary,
        "target": config.target,
        "quantized_by_op": dict(sorted(by_op.items())),
        "weighted": len(plan.weighted),
        "weighted_quantized": sum(n in plan.nodes for n in plan.weighted),
        "absorbed": dict(plan.absorbed),
        "kept_float": [{"node": n, "reason": r} for n, r in plan.skipped.items()],
        "kept_float_reasons": dict(kept.most_common()),
    }
