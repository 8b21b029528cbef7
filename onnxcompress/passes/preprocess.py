"""The standard pre-processing every pipeline starts with, as passes.

``ConvertOpsetPass`` upgrades models older than the opset the passes are written for (onnx's version converter;
the conversion is recorded), then Constant nodes are lifted to initializers, shapes inferred, constant
sub-graphs folded, BatchNorm folded and dead code removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_graphsurgeon as gs

from onnxcompress.errors import RecipeError
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.ir.io import MIN_OPSET, convert_opset
from onnxcompress.passes.base import Pass, PassContext, PassResult, Sequential
from onnxcompress.passes.cleanup import CleanupPass, InferShapesPass, LiftConstantsPass
from onnxcompress.passes.fold import FoldConstantsPass
from onnxcompress.passes.fuse import FoldBatchNormPass


class ConvertOpsetPass(Pass):
    """Upgrade the default-domain opset to ``minimum`` when it is older (onnx's version converter)."""

    def __init__(self, minimum: int | None = None):

        self.minimum = MIN_OPSET if minimum is None else int(minimum)

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:

        found = int(graph.opset or 0)
        if found >= self.minimum or not _uses_default_domain(graph):
            return PassResult(graph, False, {"opset": found})
        converted = convert_opset(to_model(graph), self.minimum)
        ctx.decide(self.name, "model", "converted", f"opset {found} -> {self.minimum} (onnx version converter)")
        return PassResult(to_graph(converted), True, {"opset_converted": [found, self.minimum]})


@dataclass(frozen=True)
class PreprocessConfig:
    """The recipe's [preprocess] section: the opset models are upgraded to (when older), and which clean-ups run."""

    min_opset: int = 13
    lift_constants: bool = True
    fold_constants: bool = True
    fold_batchnorm: bool = True

    def __post_init__(self):
        if isinstance(self.min_opset, bool) or not isinstance(self.min_opset, int) or not 7 <= self.min_opset <= 30:
            raise RecipeError(f"min_opset must be an integer in [7, 30], got {self.min_opset!r}", hint="e.g. 13")
        for key in ("lift_constants", "fold_constants", "fold_batchnorm"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"{key} must be true or false, got {getattr(self, key)!r}", hint=f"{key} = true")


def _uses_default_domain(graph: gs.Graph) -> bool:
    """Whether any node is an ONNX (default-domain) op: a model of ai.onnx.ml ops alone has no opset to upgrade."""
    return any(n.domain in (None, "", "ai.onnx") for n in graph.nodes)


def preprocess_passes(config: PreprocessConfig | None = None) -> Sequential:
    """The passes every pipeline runs first, once."""
    config = config or PreprocessConfig()
    passes: list[Pass] = [ConvertOpsetPass(config.min_opset)]
    if config.lift_constants:
        passes.append(LiftConstantsPass())
    passes.append(InferShapesPass())
    if config.fold_constants:
        passes.append(FoldConstantsPass())
    if config.fold_batchnorm:
        passes.append(FoldBatchNormPass())
    passes.append(CleanupPass())
    return Sequential(*passes)
