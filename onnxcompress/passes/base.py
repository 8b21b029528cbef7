"""The pass contract (after onnx-ir's): ``Pass.__call__(graph, ctx) -> PassResult``.

A pass instance holds configuration only. ``__call__`` runs ``requires -> call -> ensures``, times itself and
appends a :class:`PassRecord` to the context. Per-run state (calibration data, seed, decisions) lives in the
:class:`PassContext`. :class:`Sequential` composes passes and wraps a failure with the pass name and the passes
that ran before it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import onnx_graphsurgeon as gs

from onnxcompress.errors import OnnxCompressError, PassError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """One recorded decision: a skipped node, a blocked group, a folded pair."""

    pass_name: str
    subject: str
    action: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"pass": self.pass_name, "subject": self.subject, "action": self.action, "reason": self.reason}


@dataclass(frozen=True)
class PassRecord:
    name: str
    modified: bool
    seconds: float
    stats: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "modified": self.modified, "seconds": round(self.seconds, 6), "stats": self.stats}


@dataclass
class PassContext:
    """Per-run state shared by the passes of one run."""

    seed: int = 0
    calibration: Any = None  # an onnxcompress.data.InputData, when the run has calibration data
    records: list[PassRecord] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def decide(self, pass_name: str, subject: str, action: str, reason: str) -> None:
        self.decisions.append(Decision(pass_name, subject, action, reason))


@dataclass
class PassResult:
    graph: gs.Graph
    modified: bool
    stats: dict[str, Any] = field(default_factory=dict)


class Pass:
    """Base class. Subclasses implement :meth:`call` and may override :meth:`requires`/:meth:`ensures`."""

    @property
    def name(self) -> str:
        return type(self).__name__

    def requires(self, graph: gs.Graph, ctx: PassContext) -> None:
        """Raise if the pass cannot run on ``graph``."""

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        raise NotImplementedError

    def ensures(self, graph: gs.Graph, ctx: PassContext) -> None:
        """Raise if the pass left ``graph`` in a bad state."""

    def __call__(self, graph: gs.Graph, ctx: PassContext | None = None) -> PassResult:
        ctx = ctx if ctx is not None else PassContext()
        start = time.perf_counter()
        self.requires(graph, ctx)
        result = self.call(graph, ctx)
        self.ensures(result.graph, ctx)
        seconds = time.perf_counter() - start
        ctx.records.append(PassRecord(self.name, result.modified, seconds, dict(result.stats)))
        log.debug("%s: modified=%s in %.3fs %s", self.name, result.modified, seconds, result.stats)
        return result


class Sequential(Pass):
    """Run passes in order; ``modified`` is True if any of them modified the graph."""

    def __init__(self, *passes: Pass):
        self.passes = tuple(passes)

    @property
    def name(self) -> str:
        return "Sequential(" + ", ".join(p.name for p in self.passes) + ")"

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        modified = False
        ran: list[str] = []
        stats: dict[str, Any] = {}
        for p in self.passes:
            try:
                result = p(graph, ctx)
            except PassError:
                raise
            except (OnnxCompressError, Exception) as e:  # wrap with context; the cause is kept
                raise PassError(p.name, ran, e) from e
            graph = result.graph
            modified |= result.modified
            stats[p.name] = result.stats
            ran.append(p.name)
        return PassResult(graph, modified, stats)


def apply_to_model(model, pass_: Pass, ctx: PassContext | None = None):
    """Run ``pass_`` on a copy of ``model`` (an onnx.ModelProto); return (new model, PassResult)."""
    from onnxcompress.ir.graph import to_graph, to_model

    ctx = ctx if ctx is not None else PassContext()
    result = pass_(to_graph(model), ctx)
    return to_model(result.graph, like=model), result
