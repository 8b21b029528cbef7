"""Latency profiling: warm-up, interleaved timed runs, statistics, per-op-type time and node placement.

The statistics and the timing loop take an injected ``clock`` (seconds as float) so they can be tested with a
fake clock. Models compared in one run get sessions with identical options and are timed interleaved
(A B B A A B ...), so drift on a shared machine hits both alike; two models are timed in repeated A/B rounds
until the speed-up's confidence interval is narrow or the time budget is spent (validation.speed). The
per-op-type share and the execution provider of each node come from a separate profiling session (profiling
slows the timed sessions down).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxcompress.data.inputs import model_input_specs, random_data
from onnxcompress.errors import DataError
from onnxcompress.passes.progress import Progress, track
from onnxcompress.runtime.session import SessionOptions, make_session, resolve_providers, run
from onnxcompress.validation.speed import SpeedupEstimate, ab_rounds

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MEMCPY_OPS = ("MemcpyToHost", "MemcpyFromHost")


# --- pure statistics --------------------------------------------------------------------------------------------
def latency_stats(samples_s: Sequence[float], batch_size: int = 1) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/std in milliseconds and throughput in samples per second."""
    if not len(samples_s):
        raise ValueError("no latency samples")
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    mean = float(ms.mean())
    return {
        "runs": len(ms), "batch_size": int(batch_size),
        "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": mean,
        "min_ms": float(ms.min()), "max_ms": float(ms.max()), "std_ms": float(ms.std()),
        "throughput_per_s": batch_size * 1e3 / mean if mean > 0 else float("inf"),
    }


def time_interleaved(fns: Mapping[str, Callable[[], Any]], *, warmup: int, iterations: int,
                     clock: Clock = time.perf_counter, on_round: Callable[[], None] | None = None
                     ) -> dict[str, list[float]]:
    """Warm each function up, then time ``iterations`` rounds; the order alternates every round (ABBA...).
    ``on_round`` is called after every timed round (progress)."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(iterations):
        for name in (names if i % 2 == 0 else names[::-1]):
            start = clock()
            fns[name]()
            samples[name].append(clock() - start)
        if on_round is not None:
            on_round()
    return samples


def speedup(reference: dict[str, float], candidate: dict[str, float], key: str = "p50_ms") -> float:
    return reference[key] / candidate[key] if candidate[key] > 0 else float("inf")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


# --- ORT profiling JSON -----------------------------------------------------------------------------------------
def parse_ort_profile(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Op-type time share and node -> provider placement from onnxruntime's profiling events."""
    by_op: dict[str, float] = {}
    placement: dict[str, dict[str, str]] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not str(ev.get("name", "")).endswith("_kernel_time"):
            continue
        args = ev.get("args", {})
        op, provider = args.get("op_name", "?"), args.get("provider", "?")
        node = str(ev["name"])[: -len("_kernel_time")]
        by_op[op] = by_op.get(op, 0.0) + float(ev.get("dur", 0))
        placement[node] = {"op_type": op, "provider": provider}
    total = sum(by_op.values())
    share = {op: {"us": round(us, 1), "share": (us / total if total else 0.0)}
             for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])}
    providers: dict[str, int] = {}
    for p in placement.values():
        providers[p["provider"]] = providers.get(p["provider"], 0) + 1
    return {"op_type_time": share, "total_kernel_us": round(total, 1), "nodes_by_provider": providers,
            "placement": placement}


def placement_warnings(parsed: dict[str, Any], providers: list[str]) -> list[str]:
    """Warn when an accelerator was asked for and nodes fell back to CPU, or memcpy nodes were inserted."""
    if providers == ["CPUExecutionProvider"]:
        return []
    warnings = []
    cpu = sorted(n for n, p in parsed["placement"].items()
                 if p["provider"] == "CPUExecutionProvider" and p["op_type"] not in MEMCPY_OPS)
    if cpu:
        warnings.append(f"{len(cpu)} node(s) fell back to CPUExecutionProvider under {providers[0]}: "
                        + ", ".join(cpu[:10]) + (" ..." if len(cpu) > 10 else ""))
    memcpy = sorted(n for n, p in parsed["placement"].items() if p["op_type"] in MEMCPY_OPS)
    if memcpy:
        warnings.append(f"{len(memcpy)} memcpy node(s) between devices: " + ", ".join(memcpy[:10]))
    return warnings


# --- feeds ------------------------------------------------------------------------------------------------------
def batch_axis(shape: tuple | None) -> int | None:
    """The axis an input's samples lie on: 0, or the one dynamic axis of an input whose axis 0 is static (an RNN
    state [layers, N, hidden]); None for a 0-d input (fed as given)."""
    if not shape:
        return None
    dynamic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
    return dynamic[0] if isinstance(shape[0], int) and len(dynamic) == 1 else 0


def feeds_for_batch(sample: Mapping[str, np.ndarray], specs: list[Any], batch: int) -> dict[str, np.ndarray]:
    """``batch`` samples for every input, taken from ``sample`` (in the model's layout; repeated cyclically when it
    holds fewer)."""
    feeds = {}
    for spec in specs:
        arr = sample[spec.name]
        axis = batch_axis(spec.shape)
        if axis is None or np.ndim(arr) == 0:
            feeds[spec.name] = arr
            continue
        fixed = spec.shape[axis] if isinstance(spec.shape[axis], int) else None
        if fixed is not None and fixed != batch:
            raise DataError(f"input '{spec.name}' has a static batch dimension of {fixed}; cannot time batch {batch}",
                            hint=f"use --batch {fixed}, or export the model with a dynamic batch axis")
        feeds[spec.name] = np.take(arr, np.arange(batch) % arr.shape[axis], axis=axis)
    return feeds


# --- the measurement --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchTiming:
    """Latency statistics of every model at one batch size (name -> latency_stats, over every timed run), and the
    speed-up of the candidate (second model) over the reference (first) when two models were timed: the ratio of
    the pooled p50s and means, and ``speedup`` (the median over A/B rounds with its confidence interval)."""

    batch_size: int
    models: dict[str, dict[str, float]]
    speedup_p50: float | None = None
    speedup_mean: float | None = None
    speedup: SpeedupEstimate | None = None
    samples_ms: dict[str, tuple[float, ...]] = field(default_factory=dict)  # every timed run, for the plots

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"batch_size": self.batch_size, "models": {k: dict(v) for k, v in self.models.items()}}
        if self.speedup_p50 is not None:
            out.update(speedup_p50=self.speedup_p50, speedup_mean=self.speedup_mean)
        if self.speedup is not None:
            out["speedup"] = self.speedup.to_dict()
        if self.samples_ms:
            out["samples_ms"] = {k: [round(v, 4) for v in vs] for k, vs in self.samples_ms.items()}
        return out


@dataclass(frozen=True)
class ProfileResult:
    providers: list[str]
    threads: int
    opt_level: str
    warmup: int
    iterations: int
    session_create_ms: dict[str, float]
    batches: tuple[BatchTiming, ...]
    warnings: tuple[str, ...] = ()
    op_profile: dict[str, dict[str, Any]] | None = None
    peak_rss_mb: float = 0.0
    inputs: str = ""

    @property
    def speedup(self) -> float | None:
        """Candidate over reference at the first profiled batch size (None with one model)."""
        return self.batches[0].speedup_p50 if self.batches else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "providers": list(self.providers), "threads": self.threads, "opt_level": self.opt_level,
            "warmup": self.warmup, "iterations": self.iterations, "session_create_ms": dict(self.session_create_ms),
            "batches": [b.to_dict() for b in self.batches], "warnings": list(self.warnings)}
        if self.op_profile is not None:
            out["op_profile"] = self.op_profile
        out["peak_rss_mb"] = self.peak_rss_mb
        out["inputs"] = self.inputs
        return out


def profile_sessions(models: Mapping[str, Any], sample: Mapping[str, np.ndarray], specs: list[Any], config,
                     options, *, clock: Clock = time.perf_counter, inputs: str = "",
                     progress: Progress | None = None) -> ProfileResult:
    """Time ``models`` (name -> ModelProto/path) interleaved with identical session ``options``."""

    providers = resolve_providers(options.providers)
    sessions, created = {}, {}
    for name, model in models.items():
        start = clock()
        sessions[name] = make_session(model, options)
        created[name] = clock() - start
    batches = [time_batch(sessions, feeds_for_batch(sample, specs, batch), batch, config, clock, progress)
               for batch in config.batch_sizes]
    warnings: list[str] = []
    op_profiles = None
    if config.op_profile:
        op_profiles = {}
        with track(progress, "profile per-op time", len(models), "models") as step:
            for name, model in models.items():
                parsed = op_profile(model, sample, specs, config, options)
                op_profiles[name] = parsed
                warnings += [f"{name}: {w}" for w in placement_warnings(parsed, providers)]
                step.advance()
    return ProfileResult(providers, options.threads, options.opt_level, config.warmup, config.iterations,
                         {n: s * 1e3 for n, s in created.items()}, tuple(batches), tuple(warnings), op_profiles,
                         peak_rss_bytes() / 2**20, inputs)


def time_batch(sessions: Mapping[str, Any], feeds: dict[str, np.ndarray], batch: int, config, clock: Clock,
               progress: Progress | None = None) -> BatchTiming:
    """One model: ``iterations`` timed runs. Two (reference, candidate): warm-up, then A/B rounds."""
    fns = {name: (lambda s=s, f=feeds: run(s, f)) for name, s in sessions.items()}
    if len(fns) != 2:
        with track(progress, f"profile batch {batch} ({len(fns)} model(s))", config.iterations, "runs") as step:
            samples = time_interleaved(fns, warmup=config.warmup, iterations=config.iterations, clock=clock,
                                       on_round=step.advance)
        return BatchTiming(batch, {n: latency_stats(v, batch) for n, v in samples.items()},
                           samples_ms=_milliseconds(samples))
    time_interleaved(fns, warmup=config.warmup, iterations=0, clock=clock)
    with track(progress, f"profile batch {batch} (2 models, interleaved A/B rounds)", config.max_rounds,
               "rounds") as step:
        samples, estimate = ab_rounds(fns, config, clock=clock, on_round=step.advance)
    stats = {n: latency_stats(v, batch) for n, v in samples.items()}
    ref, cand = (stats[n] for n in sessions)
    return BatchTiming(batch, stats, speedup(ref, cand, "p50_ms"), speedup(ref, cand, "mean_ms"), estimate,
                       samples_ms=_milliseconds(samples))


def _milliseconds(samples: Mapping[str, list[float]]) -> dict[str, tuple[float, ...]]:
    return {n: tuple(s * 1e3 for s in v) for n, v in samples.items()}


def profile_sample(model, data, batch: int, seed: int) -> tuple[dict[str, np.ndarray], str]:
    """A batch of inputs for timing: the first ``batch`` samples of ``data``, else seeded random inputs."""

    specs = model_input_specs(model)
    if data is None:
        data = random_data(specs, batch, seed=seed)
        note = f"latency measured on random inputs (seed {seed})"
    else:
        note = f"latency measured on {data.source}"
    feeds = next(data.batched(batch).bind(specs).feeds())
    return feeds, note


def profile_models(models: Mapping[str, Any], data, config, providers: str, threads: int, seed: int, *,
                   clock: Clock = time.perf_counter, progress: Progress | None = None) -> ProfileResult:
    """Time ``models`` (reference first) on the first samples of ``data`` (else seeded random inputs)."""

    first = next(iter(models.values()))
    sample, note = profile_sample(first, data, max(config.batch_sizes), seed)
    options = SessionOptions(providers=providers, threads=threads)
    return profile_sessions(models, sample, model_input_specs(first), config, options, clock=clock, inputs=note,
                            progress=progress)


def op_profile(model: Any, sample: Mapping[str, np.ndarray], specs: list[Any], config, options) -> dict[str, Any]:
    """Run a profiling session for ``config.op_profile_runs`` runs and parse its JSON (then delete it)."""


    feeds = feeds_for_batch(sample, specs, config.batch_sizes[0])
    with tempfile.TemporaryDirectory(prefix="onnxcompress-prof-") as tmp:
        sess = make_session(model, replace(options, profile=True, profile_prefix=str(Path(tmp) / "ort")))
        for _ in range(config.op_profile_runs):
            run(sess, feeds)
        path = Path(sess.end_profiling())
        events = json.loads((path if path.is_absolute() else Path.cwd() / path).read_text())
    parsed = parse_ort_profile(events)
    parsed["batch_size"] = config.batch_sizes[0]
    parsed["runs"] = config.op_profile_runs
    return parsed
