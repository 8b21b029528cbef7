"""Distillation without a training loop: layer-wise reconstruction against the teacher's activations
(:class:`ReconstructPass`) and attaching weights trained elsewhere (:class:`AttachWeightsPass`)."""

from onnxcompress.distillation.attach import AttachWeightsPass
from onnxcompress.distillation.config import DistillConfig
from onnxcompress.distillation.reconstruct import ReconstructPass
from onnxcompress.distillation.result import AttachResult, DistillResult, LayerFit
from onnxcompress.distillation.weights_io import export_weights, load_kept, load_mapping, read_weights

__all__ = ["DistillConfig", "ReconstructPass", "AttachWeightsPass", "DistillResult", "AttachResult", "LayerFit",
           "export_weights", "load_kept", "load_mapping", "read_weights"]
