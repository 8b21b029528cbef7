"""Structured channel pruning on the ONNX graph.

``groups`` analyses (which positions must go together; read-only), ``importance`` scores units,
``prune_channels`` holds the one cutting pass (:class:`PruneChannelsPass`), ``result`` the typed record.
"""

from onnxcompress.pruning.config import ALLOCATIONS, CRITERIA, PruneConfig
from onnxcompress.pruning.groups import analyze_groups
from onnxcompress.pruning.prune_channels import PruneChannelsPass
from onnxcompress.pruning.result import PruneResult

__all__ = ["PruneConfig", "PruneChannelsPass", "PruneResult", "analyze_groups", "CRITERIA", "ALLOCATIONS"]
