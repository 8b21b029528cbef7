"""FuseTransformerPass: onnxruntime's transformer fusions before quantizing (``QuantizeConfig.transformer_fusion``).

``norm``: LayerNormalization + residual Add -> SkipLayerNormalization, Erf/tanh GELU (+ its bias Add) ->
Gelu / BiasGelu / FastGelu. ``attention``: also the self-attention subgraph -> Attention (and the embeddings ->
EmbedLayerNormalization), which removes the additive ``-FLT_MAX`` attention mask from the graph. The quantizer has
no int8 rule for these ops, so they stay float; with ``attention`` the Q/K/V projections are inside the float
Attention op. Measured on all-MiniLM-L6-v2 (bench/RESULTS.md, "after" section, VNNI CPU, batch 32): onnxruntime
applies the same norm/GELU fusions itself when it loads our QDQ model (the int8 MatMuls keep float outputs), so
``norm`` changes nothing measurable, and ``attention`` is slower (1.76x vs 2.30x fp32: the Q/K/V MatMuls stay
float); the default is ``off``.
"""

from __future__ import annotations

import onnx_graphsurgeon as gs

from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.base import Pass, PassContext, PassResult
from onnxcompress.passes.cleanup import InferShapesPass
from onnxcompress.runtime.transformers import fuse_bert

MODES = ("off", "norm", "attention")
#: a graph with one of these is a transformer the fusions may apply to
TRANSFORMER_OPS = frozenset({"LayerNormalization", "Softmax", "Erf"})


class FuseTransformerPass(Pass):
    def __init__(self, mode: str = "norm"):
        if mode not in MODES[1:]:
            raise ValueError(f"transformer fusion mode must be one of {MODES[1:]}, got {mode!r}")
        self.mode = mode

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        if not TRANSFORMER_OPS & {n.op for n in graph.nodes}:
            return PassResult(graph, False, {"fused": {}})
        model = to_model(graph)
        fused, stats = fuse_bert(model, attention=self.mode == "attention")
        if not stats:
            ctx.decide(self.name, "model", "not fused", "no transformer pattern onnxruntime's fusions recognise")
            return PassResult(graph, False, {"fused": {}})
        out = to_graph(fused)
        InferShapesPass().call(out, ctx)
        ctx.decide(self.name, "model", "fused", ", ".join(f"{op} {n}" for op, n in sorted(stats.items())))
        return PassResult(out, True, {"fused": stats})
