"""The standard pre-processing every pipeline starts with."""

from __future__ import annotations

from typing import Any

import onnx

from onnxcompress.passes.base import PassContext, Sequential, apply_to_model
from onnxcompress.passes.cleanup import CleanupPass, InferShapesPass, LiftConstantsPass
from onnxcompress.passes.fold import FoldConstantsPass
from onnxcompress.passes.fuse import FoldBatchNormPass


def preprocess_model(model: onnx.ModelProto, ctx: PassContext | None = None) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Opset < 13 is converted to 13 (what the passes are written for; recorded), then Constant nodes lifted to
    initializers, shapes inferred, constant sub-graphs folded (FoldConstantsPass), BatchNorm folded and dead code removed. Returns (new model, stats)."""
    from onnxcompress.ir.io import MIN_OPSET, convert_opset, opset_of

    ctx = ctx if ctx is not None else PassContext()
    stats: dict[str, Any] = {}
    found = opset_of(model)
    if found < MIN_OPSET:
        model = convert_opset(model, MIN_OPSET)
        ctx.decide("preprocess", "model", "converted", f"opset {found} -> {MIN_OPSET} (onnx version converter)")
        stats["opset_converted"] = [found, MIN_OPSET]
    passes = Sequential(LiftConstantsPass(), InferShapesPass(), FoldConstantsPass(), FoldBatchNormPass(), CleanupPass())
    out, result = apply_to_model(model, passes, ctx)
    return out, {**stats, **result.stats}
