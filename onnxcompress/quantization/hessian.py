"""Second moments of layer inputs from the calibration data, streamed: the Gram matrix X^T X of a MatMul/Gemm
input (rows = every position of the last axis) and the per-channel sum of squares of a Conv input.

Data-aware weight compression needs them: GPTQ rounds against X^T X, weight sharing refits its centroids by
least squares against the layer's output and weights its k-means by the input energy. One run of the float
graph serves every requested tensor; memory holds one K x K matrix (float64) per Gram tensor, never the data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import InputData, model_input_specs
from onnxcompress.errors import EmptyDataError, InputMismatchError, NonFiniteDataError
from onnxcompress.ir.edit import expose_outputs
from onnxcompress.ir.graph import to_model
from onnxcompress.runtime.session import SessionOptions, make_session

log = logging.getLogger(__name__)


@dataclass
class Moments:
    """Per tensor: ``gram`` [K, K] (sum of x x^T over rows) or ``channel`` [C] (sum of x^2 per channel)."""

    gram: dict[str, np.ndarray] = field(default_factory=dict)
    channel: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def has(self, tensor: str) -> bool:
        return tensor in self.gram or tensor in self.channel


@dataclass
class MomentsCache:
    """What one run computed, kept across the trials of a search (stored in the PassContext by class)."""

    moments: Moments = field(default_factory=Moments)
    layers: dict[tuple, object] = field(default_factory=dict)  # (node, weight digest, settings) -> compressed layer


def collect_moments(graph: gs.Graph, data: InputData, gram: list[str], channel: list[str], *,
                    samples: int | None = None, batch_size: int = 16, into: Moments | None = None) -> Moments:
    """Stream ``data`` through the float graph and accumulate the moments of ``gram`` and ``channel`` tensors
    (those already in ``into`` are not measured again)."""
    out = into if into is not None else Moments()
    gram = [t for t in dict.fromkeys(gram) if t not in out.gram]
    channel = [t for t in dict.fromkeys(channel) if t not in out.channel]
    names = list(dict.fromkeys(gram + channel))
    if not names:
        return out
    model = expose_outputs(to_model(graph), names, keep_existing=False)
    session = make_session(model, SessionOptions(providers="cpu", opt_level="basic"))
    specs = model_input_specs(model)
    static = {s.shape[0] for s in specs if s.shape and isinstance(s.shape[0], int)}
    batch = next(iter(static)) if len(static) == 1 else batch_size  # a static batch dim wins
    bound = data.limited(samples).batched(batch).bind(specs)
    seen = 0
    for feeds in bound.feeds():
        values = _run(session, names, feeds)
        seen += len(next(iter(feeds.values()))) if feeds else 0
        for name in gram:
            _add_gram(out, name, values[name])
        for name in channel:
            _add_channel(out, name, values[name])
    if seen == 0:
        raise EmptyDataError(f"{data.source} contains no samples", hint="give at least one calibration sample")
    out.samples = max(out.samples, seen)
    log.debug("moments of %d tensors from %d samples", len(names), seen)
    return out


def _run(session, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        return dict(zip(names, session.run(names, feeds)))
    except Exception as e:  # onnxruntime raises its own classes for shape/type mismatches
        raise InputMismatchError(f"the model failed on the calibration data: {str(e).splitlines()[0]}",
                                 hint="check that the calibration data matches the model's inputs") from e


def _finite(name: str, x: np.ndarray) -> None:
    if not np.isfinite(x).all():
        raise NonFiniteDataError(f"tensor '{name}' has non-finite values on the calibration data",
                                 hint="check the calibration data and the model")


def _add_gram(out: Moments, name: str, x: np.ndarray) -> None:
    rows = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    _finite(name, rows)
    g = rows.T @ rows
    out.gram[name] = g if name not in out.gram else out.gram[name] + g
    out.rows[name] = out.rows.get(name, 0) + rows.shape[0]


def _add_channel(out: Moments, name: str, x: np.ndarray) -> None:
    a = np.asarray(x, np.float64)
    _finite(name, a)
    axes = tuple(i for i in range(a.ndim) if i != 1)
    s = (a * a).sum(axis=axes)
    out.channel[name] = s if name not in out.channel else out.channel[name] + s
    out.rows[name] = out.rows.get(name, 0) + a.size // max(a.shape[1], 1)
