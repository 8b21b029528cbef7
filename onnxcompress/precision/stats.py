"""Per-tensor statistics of a float32 graph on calibration data, for the fp16/bf16 decisions: max |x|, how many
nonzero values would round to zero in the target format, non-finite values, and the shapes seen.

The element type of every intermediate tensor comes from onnxruntime (the graph with every tensor exposed as an
output), so no tensor is guessed. Batches are streamed and dropped; the tensors are fetched in chunks of
``CHUNK`` per run so that memory holds one chunk's activations, never the whole graph's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from onnxcompress.data.inputs import InputData, model_input_specs
from onnxcompress.errors import EmptyDataError, InputMismatchError
from onnxcompress.ir.edit import expose_outputs
from onnxcompress.ir.graph import to_model
from onnxcompress.runtime.session import SessionOptions, make_session

log = logging.getLogger(__name__)
CHUNK = 64
FLOAT = "tensor(float)"


@dataclass
class TensorStat:
    absmax: float = 0.0
    nonzero: int = 0
    flushed: int = 0  # nonzero values whose magnitude rounds to zero in the target format
    energy: float = 0.0  # sum of x^2
    flushed_energy: float = 0.0  # sum of x^2 over the values that round to zero
    nonfinite: int = 0
    shape: tuple[int, ...] | None = None

    def update(self, x: np.ndarray, flush: float) -> None:
        x = np.asarray(x)
        finite = np.isfinite(x)
        if finite.all():
            a = np.abs(x).reshape(-1)
        else:
            self.nonfinite += int(x.size - finite.sum())
            a = np.abs(np.where(finite, x, 0)).reshape(-1)
        self.shape = tuple(int(d) for d in x.shape)
        if not a.size:
            return
        self.absmax = max(self.absmax, float(a.max()))
        self.nonzero += int(np.count_nonzero(a))
        energy = float(np.dot(a, a))  # float32 is exact enough for a share; float64 where it would overflow
        self.energy += energy if np.isfinite(energy) else float(np.dot(a.astype(np.float64), a.astype(np.float64)))
        if float(a.min()) < flush:
            tiny = a[(a > 0) & (a < flush)].astype(np.float64)
            self.flushed += int(tiny.size)
            self.flushed_energy += float(np.dot(tiny, tiny))

    @property
    def flushed_fraction(self) -> float:
        """Fraction of the nonzero values that round to zero."""
        return self.flushed / self.nonzero if self.nonzero else 0.0

    @property
    def flushed_energy_fraction(self) -> float:
        """Fraction of the tensor's energy (sum of x^2) carried by values that round to zero."""
        return self.flushed_energy / self.energy if self.energy > 0 else (1.0 if self.flushed else 0.0)


@dataclass
class GraphStats:
    """Element types of every tensor (onnxruntime type strings) and, with data, the statistics of the float ones."""

    types: dict[str, str] = field(default_factory=dict)
    stats: dict[str, TensorStat] = field(default_factory=dict)
    samples: int = 0
    source: str | None = None

    def is_float32(self, name: str) -> bool:
        return self.types.get(name) == FLOAT

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {n: s.shape for n, s in self.stats.items() if s.shape is not None}


def _exposed(graph: gs.Graph) -> tuple[onnx.ModelProto, list[str]]:
    names = list(dict.fromkeys(t.name for n in graph.nodes for t in n.outputs if t.name))
    return expose_outputs(to_model(graph), names), names


def tensor_types(graph: gs.Graph) -> tuple[dict[str, str], object, onnx.ModelProto]:
    """{tensor: onnxruntime type string} of graph inputs and every node output; the session and exposed model."""
    model, _ = _exposed(graph)
    session = make_session(model, SessionOptions(providers="cpu", opt_level="disable"))
    types = {o.name: o.type for o in session.get_outputs()}
    types.update({i.name: i.type for i in session.get_inputs()})
    return types, session, model


def collect_stats(graph: gs.Graph, data: InputData | None, flush: float, *, samples: int | None = None,
                  batch_size: int = 8) -> GraphStats:
    """Types of every tensor; with ``data``, the statistics of every float32 tensor over at most ``samples``."""
    types, session, model = tensor_types(graph)
    out = GraphStats(types=types)
    if data is None:
        return out
    inputs = {i.name for i in session.get_inputs()}
    fetch = [o.name for o in session.get_outputs() if o.type == FLOAT]
    names = [n for n in inputs if types[n] == FLOAT] + fetch
    out.stats = {n: TensorStat() for n in names}
    bound = data.limited(samples).batched(_batch(model, batch_size)).bind(model_input_specs(model))
    for feeds in bound.feeds():
        out.samples += len(next(iter(feeds.values()))) if feeds else 0
        for name, value in feeds.items():
            if name in out.stats:
                out.stats[name].update(np.asarray(value, np.float32), flush)
        for i in range(0, len(fetch), CHUNK):
            chunk = fetch[i:i + CHUNK]
            for name, value in zip(chunk, _run(session, chunk, feeds)):
                out.stats[name].update(np.asarray(value), flush)
    if out.samples == 0:
        raise EmptyDataError(f"{data.source} contains no samples", hint="give at least one calibration sample")
    out.source = data.source
    log.debug("precision statistics of %d tensors on %d samples", len(names), out.samples)
    return out


def _batch(model: onnx.ModelProto, default: int) -> int:
    static = {s.shape[0] for s in model_input_specs(model) if s.shape and isinstance(s.shape[0], int)}
    return next(iter(static)) if len(static) == 1 else default


def _run(session, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    try:
        return session.run(names, feeds)
    except Exception as e:  # onnxruntime raises its own classes for shape/type mismatches
        raise InputMismatchError(f"the model failed on the calibration data: {str(e).splitlines()[0]}",
                                 hint="check that the calibration data matches the model's inputs") from e
