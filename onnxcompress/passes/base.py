"""The pass contract (after onnx-ir's): ``Pass.__call__(graph, ctx) -> PassResult``.

A pass instance holds configuration only. ``__call__`` runs ``requires -> call -> ensures``, times itself and
appends one :class:`PassRecord` to the context. Per-run state lives in the :class:`PassContext`: the seed, the
calibration data, the decisions and records, and typed *artifacts* (a pass's result that a later pass consumes,
e.g. the kept-channel record pruning leaves for distillation), stored and fetched by their class.
:class:`Sequential` composes passes without a record of its own (each pass records itself once) and wraps a
failure with the pass name and the passes that ran before it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import onnx
import onnx_graphsurgeon as gs

from onnxcompress.errors import InternalError, PassError, UserError
from onnxcompress.ir.graph import to_graph, to_model
from onnxcompress.passes.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from onnxcompress.data.inputs import InputData

log = logging.getLogger(__name__)

A = TypeVar("A")


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
    """One pass run: its name, the pipeline stage it ran in, whether it changed the graph, time and stats."""

    name: str
    modified: bool
    seconds: float
    stats: dict[str, Any]
    stage: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "modified": self.modified, "seconds": round(self.seconds, 6), "stats": self.stats}
        if self.stage:
            out["stage"] = self.stage
        return out


@dataclass
class PassContext:
    """Per-run state shared by the passes of one run."""

    seed: int = 0
    calibration: InputData | None = None
    evaluation: InputData | None = None  # held-out data an accuracy goal is checked on (else the calibration data)
    stage: str = ""  # the pipeline stage now running (recorded with every pass)
    records: list[PassRecord] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)  # written into the output model's metadata_props
    progress: Progress = NO_PROGRESS  # where long steps report progress (the CLI's bar or plain lines)
    _artifacts: dict[type, Any] = field(default_factory=dict)

    def decide(self, pass_name: str, subject: str, action: str, reason: str) -> None:
        self.decisions.append(Decision(pass_name, subject, action, reason))

    def put(self, artifact: A) -> A:
        """Store ``artifact`` under its class (replacing an earlier one of the same class)."""
        self._artifacts[type(artifact)] = artifact
        return artifact

    def get(self, kind: type[A]) -> A | None:
        value = self._artifacts.get(kind)
        return value if isinstance(value, kind) else None

    def require(self, kind: type[A], consumer: str) -> A:
        value = self.get(kind)
        if value is None:
            raise InternalError(f"{consumer} needs a {kind.__name__}, which no earlier pass produced")
        return value

    def discard(self, kind: type) -> None:
        self._artifacts.pop(kind, None)


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
        ctx.records.append(PassRecord(self.name, result.modified, seconds, dict(result.stats), ctx.stage))
        log.info("%s%s: %s in %.3f s", f"{ctx.stage}/" if ctx.stage else "", self.name,
                 "modified" if result.modified else "unchanged", seconds)
        log.debug("%s stats: %s", self.name, result.stats)
        return result


class Sequential(Pass):
    """Run passes in order; ``modified`` is True if any of them modified the graph. A Sequential adds no record
    of its own: every pass it runs records itself, once."""

    def __init__(self, *passes: Pass):
        self.passes = tuple(passes)

    @property
    def name(self) -> str:
        return "Sequential(" + ", ".join(p.name for p in self.passes) + ")"

    def __call__(self, graph: gs.Graph, ctx: PassContext | None = None) -> PassResult:
        ctx = ctx if ctx is not None else PassContext()
        self.requires(graph, ctx)
        result = self.call(graph, ctx)
        self.ensures(result.graph, ctx)
        return result

    def call(self, graph: gs.Graph, ctx: PassContext) -> PassResult:
        modified = False
        ran: list[str] = []
        stats: dict[str, Any] = {}
        for p in self.passes:
            try:
                result = p(graph, ctx)
            except (PassError, UserError):
                raise  # a user error stays the user's: one message with its hint, exit 3
            except Exception as e:  # a bug: wrapped with the pass and the passes that ran before it
                raise PassError(p.name, ran, e) from e
            graph = result.graph
            modified |= result.modified
            stats[p.name] = result.stats
            ran.append(p.name)
        return PassResult(graph, modified, stats)


def apply_to_model(model: onnx.ModelProto, pass_: Pass, ctx: PassContext | None = None
                   ) -> tuple[onnx.ModelProto, PassResult]:
    """Run ``pass_`` on a copy of ``model`` (an onnx.ModelProto); return (new model, PassResult)."""

    ctx = ctx if ctx is not None else PassContext()
    result = pass_(to_graph(model), ctx)
    return to_model(result.graph, like=model), result
