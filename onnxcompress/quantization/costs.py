"""Cost models: microseconds for a node in float or int8, and for a QuantizeLinear / DequantizeLinear.

``us = per_node + per_mac * macs + per_element * elements`` for every cost key (``<class>.<precision>`` or
``quantize`` / ``dequantize``; classes and work in :mod:`onnxcompress.ops.cost_rules`). The coefficients are
fitted to onnxruntime's profiled kernel times of real models (:func:`fit`, non-negative least squares per key):

- the committed tables (``cost_models/<name>.json``) were fitted by ``bench/cost_model.py`` on the zoo models
  (fp32 and full-INT8 versions, batch 32, one intra-op thread; the file says on which CPU and onnxruntime);
  they are data, read without looking at the host, so the placement they drive is the same on every machine;
- measured placement (``placement = "measure"``) profiles the model at hand on this host and rescales each key
  of the table to what it measured (:func:`rescaled`).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onnxcompress.errors import RecipeError
from onnxcompress.ops.cost_rules import Work

log = logging.getLogger(__name__)

TABLES = Path(__file__).with_name("cost_models")
#: deployment target -> the cost table its placement uses (None: no table; placement keeps every node int8)
TARGET_TABLES: dict[str, str | None] = {"cpu": "x86-vnni", "cpu-vnni": "x86-vnni", "arm64": "x86-vnni",
                                        "cpu-avx2": "x86-avx2", "cuda": None, "tensorrt": None}


@dataclass(frozen=True)
class Coefficients:
    """``us = per_node + per_mac * macs + per_element * elements`` (all >= 0)."""

    per_node: float = 0.0
    per_mac: float = 0.0
    per_element: float = 0.0
    samples: int = 0

    def us(self, work: Work) -> float:
        return self.per_node + self.per_mac * work.macs + self.per_element * work.elements

    def scaled(self, factor: float) -> Coefficients:
        return Coefficients(self.per_node * factor, self.per_mac * factor, self.per_element * factor, self.samples)

    def to_dict(self) -> dict[str, float]:
        return {"per_node_us": self.per_node, "per_mac_us": self.per_mac, "per_element_us": self.per_element,
                "samples": self.samples}


@dataclass(frozen=True)
class CostModel:
    """Coefficients per cost key, and where they come from."""

    name: str
    source: str
    table: Mapping[str, Coefficients] = field(default_factory=dict)

    def has(self, key: str) -> bool:
        return key in self.table

    def us(self, key: str, work: Work) -> float:
        """Estimated microseconds; a key the table lacks is an error (callers check :meth:`has` first)."""
        return self.table[key].us(work)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source,
                "classes": {k: v.to_dict() for k, v in sorted(self.table.items())}}


def from_dict(data: Mapping[str, Any]) -> CostModel:
    table = {k: Coefficients(float(v.get("per_node_us", 0.0)), float(v.get("per_mac_us", 0.0)),
                             float(v.get("per_element_us", 0.0)), int(v.get("samples", 0)))
             for k, v in dict(data["classes"]).items()}
    return CostModel(str(data["name"]), str(data.get("source", "")), table)


def load_table(name: str) -> CostModel:
    """A committed cost table by name (``cost_models/<name>.json``)."""
    path = TABLES / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in TABLES.glob("*.json"))
        raise RecipeError(f"no cost model named '{name}'", hint=f"the committed cost models are {known}")
    return from_dict(json.loads(path.read_text(encoding="utf-8")))


def table_for_target(target: str) -> CostModel | None:
    """The committed cost model a target's placement uses (None: none for that target)."""
    name = TARGET_TABLES.get(target)
    return None if name is None else load_table(name)


# --- fitting ----------------------------------------------------------------------------------------------------
Sample = tuple[str, Work, float]  # (cost key, work, measured microseconds)


def _nnls_small(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares for a handful of columns: the best non-negative solution over every subset
    of active columns (exact for 3 columns: 7 small solves)."""
    n = a.shape[1]
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)
    a = a / scale
    best, best_err = np.zeros(n), float(np.sum(y * y))
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            sol, *_ = np.linalg.lstsq(a[:, cols], y, rcond=None)
            if np.any(sol < 0):
                continue
            x = np.zeros(n)
            x[list(cols)] = sol
            err = float(np.sum((a @ x - y) ** 2))
            if err < best_err - 1e-12 * max(best_err, 1.0):
                best, best_err = x, err
    return best / scale


def _overhead(macs: np.ndarray, elems: np.ndarray, y: np.ndarray, per_mac: float, per_element: float) -> float:
    """The per-node overhead the small kernels show: the median, over the fifth of the kernels with the least
    work, of what the per-MAC and per-element terms leave unexplained (an absolute fit puts ~0 there: the large
    kernels decide it, and tiny models would look free)."""
    work = macs * per_mac + elems * per_element
    small = np.argsort(macs + elems, kind="stable")[: max(1, len(y) // 5)]
    return float(max(0.0, np.median(y[small] - work[small])))


def fit(samples: Iterable[Sample]) -> dict[str, Coefficients]:
    """Coefficients per key by non-negative least squares on (1, macs, elements) in absolute microseconds: the
    kernels that make up most of a model's time weigh most (weighting rows by 1/time or 1/sqrt(time) was tried
    on the zoo profiles: the model totals came out 0.6-0.7x of the measured ones, against 0.9-1.1x unweighted
    on the large models); the per-node term is then raised to the overhead the smallest kernels show
    (:func:`_overhead`). Keys without MACs get no per-MAC term."""
    by_key: dict[str, list[tuple[Work, float]]] = {}
    for key, work, us in samples:
        by_key.setdefault(key, []).append((work, us))
    out = {}
    for key, rows in sorted(by_key.items()):
        macs = np.array([w.macs for w, _ in rows], np.float64)
        elems = np.array([w.elements for w, _ in rows], np.float64)
        y = np.array([us for _, us in rows], np.float64)
        columns = [np.ones_like(y), elems] + ([macs] if macs.any() else [])
        x = _nnls_small(np.stack(columns, axis=1), y)
        per_mac, per_element = (float(x[2]) if len(x) > 2 else 0.0), float(x[1])
        out[key] = Coefficients(max(float(x[0]), _overhead(macs, elems, y, per_mac, per_element)), per_mac,
                                per_element, len(rows))
    return out


def rescaled(model: CostModel, samples: Iterable[Sample], source: str, *, limits: tuple[float, float] = (0.05, 20.0)
             ) -> tuple[CostModel, dict[str, float]]:
    """``model`` with each key scaled so its estimates of ``samples`` add up to what was measured (keys with no
    sample keep their coefficients). Returns the new model and the factor per key."""
    measured: dict[str, float] = {}
    predicted: dict[str, float] = {}
    for key, work, us in samples:
        if not model.has(key):
            continue
        measured[key] = measured.get(key, 0.0) + us
        predicted[key] = predicted.get(key, 0.0) + model.us(key, work)
    factors = {k: float(np.clip(measured[k] / predicted[k], *limits)) for k in measured if predicted[k] > 0}
    table = {k: (c.scaled(factors[k]) if k in factors else c) for k, c in model.table.items()}
    return CostModel(f"{model.name}+measured", source, table), factors
