"""onnxruntime's transformer graph fusions (``onnxruntime.transformers.optimizer``), without a session.

Only the Python pattern fusions run (``opt_level=0``: no onnxruntime session is created here; sessions are made
in runtime.session alone), with symbolic shape inference off (it needs sympy). The fused ops are onnxruntime
contrib ops (domain ``com.microsoft``): SkipLayerNormalization, BiasGelu / FastGelu / Gelu, and with
``attention`` also Attention and EmbedLayerNormalization.
"""

from __future__ import annotations

import logging

import onnx

log = logging.getLogger(__name__)

MS_DOMAIN = "com.microsoft"


def fuse_bert(model: onnx.ModelProto, *, attention: bool) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A fused copy of ``model`` (BERT-family patterns) and the count of every fused op onnxruntime reports."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    options = FusionOptions("bert")
    options.enable_shape_inference = False
    options.enable_attention = attention
    options.enable_embed_layer_norm = attention
    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        fused = optimize_model(copy, model_type="bert", opt_level=0, optimization_options=options)
    finally:
        quiet.setLevel(level)
    out = fused.model
    if any(n.domain == MS_DOMAIN for n in out.graph.node) and not any(o.domain == MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))
    stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    return out, stats
