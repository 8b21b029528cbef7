"""Graph passes with one contract (see base.py)."""

from onnxcompress.passes.base import Decision, Pass, PassContext, PassRecord, PassResult, Sequential, apply_to_model
from onnxcompress.passes.cleanup import CleanupPass, InferShapesPass, LiftConstantsPass
from onnxcompress.passes.fuse import FoldBatchNormPass
from onnxcompress.passes.preprocess import preprocess_model

__all__ = [
    "Decision", "Pass", "PassContext", "PassRecord", "PassResult", "Sequential", "apply_to_model",
    "CleanupPass", "InferShapesPass", "LiftConstantsPass", "FoldBatchNormPass", "preprocess_model",
]
