"""Graph passes with one contract (see base.py) and the generic passes every pipeline uses."""

from onnxcompress.passes.artifacts import KeptChannels, Teacher
from onnxcompress.passes.base import Decision, Pass, PassContext, PassRecord, PassResult, Sequential, apply_to_model
from onnxcompress.passes.cleanup import CleanupPass, InferShapesPass, LiftConstantsPass
from onnxcompress.passes.fold import FoldBiasAddPass, FoldConstantsPass, RewriteHardSwishPass
from onnxcompress.passes.fuse import FoldBatchNormPass
from onnxcompress.passes.preprocess import ConvertOpsetPass, PreprocessConfig, preprocess_passes
from onnxcompress.passes.progress import NO_PROGRESS, Progress, ProgressTask, track

__all__ = [
    "Decision", "Pass", "PassContext", "PassRecord", "PassResult", "Sequential", "apply_to_model", "KeptChannels",
    "Teacher", "CleanupPass", "InferShapesPass", "LiftConstantsPass", "FoldConstantsPass", "FoldBiasAddPass",
    "RewriteHardSwishPass", "FoldBatchNormPass", "ConvertOpsetPass", "PreprocessConfig", "preprocess_passes",
    "NO_PROGRESS", "Progress", "ProgressTask", "track",
]
