"""Per-kernel timing on a real onnxruntime session (its profiler), for cost models and latency-aware placement.

:func:`profile_kernels` runs a model ``warmup + runs`` times in a profiling session (made by
:func:`onnxcompress.runtime.session.make_session`, the only place sessions are created) and returns one
:class:`KernelEvent` per node of onnxruntime's *optimized* graph: the op type it ran as, its mean kernel time over
the timed runs (the warm-up runs are dropped) and the dtypes and shapes of its inputs and outputs as the profiler
recorded them. The profiler's JSON file goes to a temporary folder and is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxcompress.runtime.session import SessionOptions, make_session

SUFFIX = "_kernel_time"

Shape = tuple[int, ...]


@dataclass(frozen=True)
class KernelEvent:
    """One node of onnxruntime's optimized graph: name, op type, mean microseconds per run, input/output types."""

    node: str
    op: str
    us: float  # median over the timed runs
    inputs: tuple[tuple[str, Shape], ...]
    outputs: tuple[tuple[str, Shape], ...]
    provider: str = ""
    best_us: float = 0.0  # the fastest timed run: the least disturbed by other work on a shared machine

    def input_shape(self, i: int) -> Shape | None:
        return self.inputs[i][1] if i < len(self.inputs) else None

    def output_shape(self, i: int = 0) -> Shape | None:
        return self.outputs[i][1] if i < len(self.outputs) else None


def _typed(items: Any) -> tuple[tuple[str, Shape], ...]:
    out = []
    for entry in items or []:
        for dtype, shape in dict(entry).items():
            out.append((str(dtype), tuple(int(d) for d in shape)))
    return tuple(out)


def parse_kernel_events(events: list[dict[str, Any]], skip_runs: int = 0) -> list[KernelEvent]:
    """Median (and fastest) kernel time per node over the runs after the first ``skip_runs`` (the profiler
    records every run)."""
    durations: dict[str, list[float]] = defaultdict(list)
    first: dict[str, dict[str, Any]] = {}
    for ev in events:
        name = str(ev.get("name", ""))
        if ev.get("cat") != "Node" or not name.endswith(SUFFIX):
            continue
        node = name[: -len(SUFFIX)]
        durations[node].append(float(ev.get("dur", 0.0)))
        first.setdefault(node, ev)
    out = []
    for node, durs in durations.items():
        timed = durs[skip_runs:] if len(durs) > skip_runs else durs
        args = first[node].get("args", {})
        out.append(KernelEvent(node, str(args.get("op_name", "?")), float(np.median(timed)),
                               _typed(args.get("input_type_shape")), _typed(args.get("output_type_shape")),
                               str(args.get("provider", "")), float(np.min(timed))))
    return out


def profile_kernels(model: Any, feeds: Mapping[str, np.ndarray], options: SessionOptions | None = None, *,
                    runs: int = 5, warmup: int = 2) -> list[KernelEvent]:
    """Kernel events of ``model`` run on ``feeds`` (``warmup`` untimed runs, then ``runs`` timed ones)."""
    options = options or SessionOptions()
    with tempfile.TemporaryDirectory(prefix="onnxcompress-kprof-") as tmp:
        session = make_session(model, dataclasses.replace(options, profile=True, profile_prefix=str(Path(tmp) / "ort")))
        feeds = dict(feeds)
        for _ in range(warmup + runs):
            session.run(None, feeds)
        path = Path(session.end_profiling())
        events = json.loads((path if path.is_absolute() else Path.cwd() / path).read_text())
    return parse_kernel_events(events, skip_runs=warmup)


def time_models(models: Mapping[str, Any], feeds: Mapping[str, np.ndarray], options: SessionOptions | None = None,
                *, warmup: int = 2, rounds: int = 10) -> dict[str, float]:
    """Median seconds per run of each model on ``feeds``: sessions with identical ``options``, warmed up, then
    ``rounds`` rounds in which every model runs once, the order alternating (ABBA...) so drift hits all alike."""
    options = options or SessionOptions()
    sessions = {name: make_session(m, options) for name, m in models.items()}
    feeds = dict(feeds)
    for _ in range(warmup):
        for s in sessions.values():
            s.run(None, feeds)
    names = list(sessions)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            sessions[name].run(None, feeds)
            samples[name].append(time.perf_counter() - start)
    return {n: statistics.median(v) for n, v in samples.items()}
