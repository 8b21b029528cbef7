"""Task-aware output kinds: what each graph output *is*, inferred from its producer op, shape, name and values.

The kind decides how fidelity is measured (validation.kind_metrics): class logits/probabilities by top-1 agreement
(plus top-5 agreement and KL), embeddings by cosine, dense maps by IoU (values in [0, 1]) or the relative error
of their worst channel,
per-timestep sequences (CTC) by per-step argmax agreement, decisions by agreement of the thresholded values,
regression values and recurrent state by relative error. Inference is one ordered table of rules
(:data:`RULES`), each a test on the :class:`Evidence` of one output and the reason it gives; the first rule that
holds decides. The op knowledge behind the evidence lives in ops.output_rules. A user override
(``[validate.outputs.NAME] kind = ...`` or ``--output-kind NAME=KIND``) replaces the inference for that output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from onnxcompress.errors import RecipeError
from onnxcompress.ops.output_rules import output_hint
from onnxcompress.ops.registry import norm_domain
from onnxcompress.validation.config import OUTPUT_KINDS, OutputSpec

DEFAULT_THRESHOLD = 0.5
CLASS_KINDS = ("class_logits", "class_probabilities")
#: how much to prefer each kind as the primary output (the one task metrics and the verdict use); lower first
PRIMARY_RANK = {"class_logits": 0, "class_probabilities": 0, "sequence": 1, "decision": 2, "embedding": 3,
                "dense_map": 4, "regression": 5, "state": 9}
#: the metric each kind is judged by (dense maps: "iou" when their values are probabilities, else relative error)
JUDGED_BY = {"class_logits": "top1_agreement", "class_probabilities": "top1_agreement", "embedding": "cosine",
             "dense_map": "channel_relative_error", "sequence": "step_agreement", "decision": "decision_agreement",
             "regression": "relative_error", "state": "relative_error"}
_EMBEDDING_WORDS = frozenset({"embedding", "embeddings", "embed", "emb", "feature", "features", "pooled", "pooler",
                              "encoding", "encodings", "vector", "vectors", "descriptor", "descriptors"})
_GENERIC_WORDS = frozenset({"input", "output", "in", "out", "x", "y", "n", "new", "next", "prev", "t", "tmp"})


@dataclass(frozen=True)
class KindDecision:
    """The kind of one output, the metric it is judged by, and why (``source``: ``inferred`` or ``override``)."""

    output: str
    kind: str
    metric: str
    reason: str
    source: str = "inferred"
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "reason": self.reason, "source": self.source,
                "threshold": self.threshold}


# --- evidence ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evidence:
    """What is known about one output from the graph and from the reference model's values on one batch."""

    name: str
    words: frozenset[str]
    dtype_kind: str  # numpy dtype kind: "f" float, "i"/"u" integer, "b" bool
    shape: tuple[int, ...]
    producer: str | None  # the op that made the values (walking back through transparent ops)
    role: str | None  # that op's role (ops.output_rules)
    state_output: bool  # the output is a recurrent op's state output
    in_unit_interval: bool
    rows_sum_to_one: bool  # along the last axis
    unit_norm: bool  # vectors along the last axis have L2 norm 1
    input_twin: str | None  # a model input with the same shape and a related name

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def width(self) -> int:
        """Extent of the last axis (1 for a rank-1 output)."""
        return self.shape[-1] if self.rank >= 2 else 1


def name_words(name: str) -> frozenset[str]:
    """Lower-case words of a tensor name: split at non-alphanumerics and camelCase boundaries."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return frozenset(w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w)


def _related(a: str, b: str) -> bool:
    """Two names that belong together (state / stateN, h0 / hn, past_key / present_key)."""
    la, lb = a.lower(), b.lower()
    if min(len(la), len(lb)) >= 3 and (la.startswith(lb) or lb.startswith(la)):
        return True
    return bool((name_words(a) & name_words(b)) - _GENERIC_WORDS - {str(i) for i in range(10)})


class GraphFacts:
    """The producer of every top-level tensor, the constant tensors and the opsets of one model."""

    def __init__(self, model: onnx.ModelProto):
        self.opsets = {norm_domain(o.domain): o.version for o in model.opset_import}
        self.producer: dict[str, tuple[onnx.NodeProto, int]] = {}
        self.constants = {t.name for t in model.graph.initializer}
        for node in model.graph.node:
            for i, out in enumerate(node.output):
                self.producer[out] = (node, i)
            if node.op_type == "Constant":
                self.constants.update(node.output)
        self.output_names = [o.name for o in model.graph.output]

    def origin(self, tensor: str) -> tuple[str | None, str | None, bool]:
        """(producer op, its role, is a recurrent state output), walking back through transparent ops."""
        for _ in range(64):  # a bound on the walk (graphs are acyclic; this guards odd ones)
            found = self.producer.get(tensor)
            if found is None:
                return None, None, False
            node, index = found
            hint = output_hint(node.op_type, node.domain, self.opsets.get(norm_domain(node.domain)))
            role = hint.role if hint is not None else None
            nxt = self._follow(node, role)
            if nxt is None:
                state = hint is not None and index in hint.state_outputs
                return node.op_type, role, state
            tensor = nxt
        return None, None, False

    def _follow(self, node: onnx.NodeProto, role: str | None) -> str | None:
        """The input the walk continues through, or None when ``node`` made the values."""
        if role == "transparent" and node.input:
            return node.input[0]
        if role == "affine" and len(node.input) == 2:
            dynamic = [t for t in node.input if t not in self.constants]
            return dynamic[0] if len(dynamic) == 1 else None
        return None


def _value_facts(values: np.ndarray) -> tuple[bool, bool, bool]:
    """(all in [0, 1], rows along the last axis sum to 1, vectors along the last axis have unit norm)."""
    v = np.asarray(values)
    if v.dtype.kind != "f" or v.size == 0 or not np.isfinite(v).all():
        return False, False, False
    v64 = v.astype(np.float64)
    unit = bool(v64.min() >= 0.0 and v64.max() <= 1.0)
    if v64.ndim < 2 or v64.shape[-1] < 2:
        return unit, False, False
    rows = v64.reshape(-1, v64.shape[-1])
    sums = bool(unit and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))
    norms = bool(np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-3))
    return unit, sums, norms


def evidence(facts: GraphFacts, name: str, values: np.ndarray, feeds: Mapping[str, np.ndarray]) -> Evidence:
    arr = np.asarray(values)
    producer, role, state = facts.origin(name)
    unit, sums, norms = _value_facts(arr)
    twin = next((k for k, v in feeds.items() if np.shape(v) == arr.shape and arr.ndim >= 2 and _related(k, name)),
                None)
    return Evidence(name, name_words(name), arr.dtype.kind, tuple(arr.shape), producer, role, state, unit, sums,
                    norms, twin)


# --- the rules --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """``kind`` when ``test(evidence)`` holds; ``reason`` is formatted with the evidence's fields."""

    kind: str
    test: Callable[[Evidence], bool]
    reason: str


def _is_int(e: Evidence) -> bool:
    return e.dtype_kind in "iub"


#: ordered: the first rule whose test holds decides
RULES: tuple[Rule, ...] = (
    Rule("decision", _is_int, "integer/boolean output: class ids or decisions, compared exactly"),
    Rule("decision", lambda e: e.role == "decision", "made by {producer}: a decision"),
    Rule("state", lambda e: e.state_output, "a recurrent state output of {producer}"),
    Rule("state", lambda e: e.input_twin is not None,
         "same shape as input '{input_twin}' and a related name: state passed back to the next call"),
    Rule("class_probabilities", lambda e: e.role == "probabilities" and e.rank <= 2,
         "made by {producer} over {width} classes"),
    Rule("class_logits", lambda e: e.role == "log_probabilities" and e.rank <= 2,
         "made by {producer} over {width} classes (log-probabilities)"),
    Rule("sequence", lambda e: e.role in ("probabilities", "log_probabilities") and e.rank == 3,
         "made by {producer} over the last axis of a rank-3 output: class scores per time step"),
    Rule("class_probabilities", lambda e: e.rank == 2 and e.width >= 2 and e.rows_sum_to_one,
         "every row is a probability distribution over {width} classes"),
    Rule("embedding", lambda e: e.rank >= 2 and e.width >= 2 and e.unit_norm,
         "every vector along the last axis has unit L2 norm"),
    Rule("embedding", lambda e: e.role in ("layer_norm", "normalized") and e.rank in (2, 3),
         "made by {producer}: hidden states"),
    Rule("embedding", lambda e: e.rank in (2, 3) and bool(e.words & _EMBEDDING_WORDS),
         "its name says it holds embeddings"),
    Rule("decision", lambda e: e.role == "sigmoid" and e.rank <= 2,
         "made by {producer}: independent scores in (0, 1), thresholded"),
    Rule("dense_map", lambda e: e.rank >= 3 and e.role == "sigmoid", "made by {producer}: a probability map"),
    Rule("decision", lambda e: e.rank <= 2 and e.width == 1 and e.in_unit_interval,
         "one value in [0, 1] per sample: a score that is thresholded"),
    Rule("class_logits", lambda e: e.rank == 2 and e.width >= 2,
         "[N, {width}] scores without a softmax: class logits (override if they are not)"),
    Rule("regression", lambda e: e.rank <= 2, "one unbounded value per sample"),
    Rule("sequence", lambda e: e.rank == 3 and e.role == "linear" and e.width >= 2,
         "made by {producer} over the last axis of a rank-3 output: class scores per time step"),
    Rule("dense_map", lambda e: e.rank >= 3, "a rank-{rank} map (spatial or per-anchor values)"),
)


def _reason(rule: Rule, e: Evidence) -> str:
    return rule.reason.format(producer=e.producer, width=e.width, rank=e.rank, input_twin=e.input_twin)


def _judged_by(kind: str, e: Evidence | None) -> str:
    if kind == "dense_map" and e is not None and e.in_unit_interval:
        return "iou"
    return JUDGED_BY[kind]


def infer_kind(e: Evidence) -> KindDecision:
    rule = next(r for r in RULES if r.test(e))
    threshold = None
    if rule.kind == "decision" and not _is_int(e) and e.role != "decision":  # made by ArgMax/Greater: exact
        threshold = DEFAULT_THRESHOLD
    if rule.kind == "dense_map" and e.in_unit_interval:
        threshold = DEFAULT_THRESHOLD
    return KindDecision(e.name, rule.kind, _judged_by(rule.kind, e), _reason(rule, e), "inferred", threshold)


def overridden(name: str, spec: OutputSpec, e: Evidence | None) -> KindDecision:
    threshold = spec.threshold
    probability_map = spec.kind == "dense_map" and (threshold is not None or (e is not None and e.in_unit_interval))
    if threshold is None and (probability_map or (spec.kind == "decision" and (e is None or not _is_int(e)))):
        threshold = DEFAULT_THRESHOLD
    metric = "iou" if probability_map else JUDGED_BY[spec.kind]
    return KindDecision(name, spec.kind, metric, "set by the user", "override", threshold)


def infer_kinds(model: onnx.ModelProto, outputs: Mapping[str, Any], feeds: Mapping[str, np.ndarray],
                overrides: Mapping[str, OutputSpec] | None = None) -> dict[str, KindDecision]:
    """The kind of every output in ``outputs`` (the reference model's values on one batch, fed ``feeds``)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(outputs))
    if unknown:
        raise RecipeError(f"output kind given for {unknown}, which the model does not have (outputs: {list(outputs)})",
                          hint="name the model's outputs in [validate.outputs] / --output-kind")
    facts = GraphFacts(model)
    out: dict[str, KindDecision] = {}
    for name, values in outputs.items():
        e = evidence(facts, name, values, feeds) if isinstance(values, np.ndarray) else None
        if name in overrides:
            out[name] = overridden(name, overrides[name], e)
        elif e is not None:
            out[name] = infer_kind(e)
    return out


def primary_output(kinds: Mapping[str, KindDecision], outputs: Mapping[str, Any]) -> str:
    """The output task metrics and the verdict use: the most task-like kind (PRIMARY_RANK); among equals, the one
    of lowest rank (a pooled embedding before per-token states), then graph order."""
    names = list(outputs)
    if not kinds:
        return names[0]

    def key(name: str) -> tuple[int, int, int]:
        return PRIMARY_RANK[kinds[name].kind], np.ndim(outputs[name]), names.index(name)

    return min(kinds, key=key)


def check_kinds_known() -> None:
    """Every kind has a primary rank and a metric (guards the tables above against drift)."""
    missing = [k for k in OUTPUT_KINDS if k not in PRIMARY_RANK or k not in JUDGED_BY]
    if missing or any(r.kind not in OUTPUT_KINDS for r in RULES):
        raise AssertionError(f"output kind tables out of sync: {missing}")


check_kinds_known()
