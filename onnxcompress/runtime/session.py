"""The ONLY place that creates onnxruntime sessions.

Providers: ``auto`` (CUDA when onnxruntime offers it, else CPU), ``cpu``, ``cuda``, ``tensorrt``, or onnxruntime's
full names (``CPUExecutionProvider``, ``CUDAExecutionProvider``, ``TensorrtExecutionProvider``; any case),
comma-separated in order of preference. Asking for a provider that this onnxruntime build does not have is a
:class:`ProviderError`, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.external_data_helper import uses_external_data

from onnxcompress.errors import ModelFormatError, ModelRunError, ProviderError, RecipeError
from onnxcompress.runtime.providers import GPU_INSTALL_HINT, PROVIDER_NAMES, check_provider_spec

log = logging.getLogger(__name__)

OPT_LEVELS = ("disable", "basic", "extended", "all")
#: Lazily loaded models (ir/external.py) locate their external tensors relative to the file system root.
EXTERNAL_ROOT = Path(os.path.abspath(os.sep))
#: The session option that tells onnxruntime where external data lives for a model given as bytes.
EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
#: Where an optimized model written by a session puts its initializers (>= the minimum size), beside the model.
OPTIMIZED_DATA_KEY = "session.optimized_model_external_initializers_file_name"
OPTIMIZED_DATA_MIN_KEY = "session.optimized_model_external_initializers_min_size_in_bytes"


@dataclass(frozen=True)
class SessionOptions:
    """How sessions are made; identical options for every model compared in one run."""

    providers: str = "auto"
    threads: int = 0  # 0 = onnxruntime's default
    opt_level: str = "all"
    profile: bool = False
    optimized_model_path: str | None = None
    profile_prefix: str | None = None  # where ORT writes its profiling JSON (default: the current folder)
    memory_arena: bool = True  # off for one-shot probe sessions (calibration): memory goes back after each run

    def __post_init__(self):
        if self.opt_level not in OPT_LEVELS:
            raise RecipeError(f"unknown graph optimization level '{self.opt_level}'", hint=f"use one of {OPT_LEVELS}")
        if self.threads < 0:
            raise RecipeError(f"threads must be >= 0, got {self.threads}", hint="0 means onnxruntime's default")
        resolve_providers(self.providers, check=False)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(spec: str, *, check: bool = True) -> list[str]:
    """Turn ``auto``/``cpu``/``cuda``/``tensorrt`` or full provider names (comma-separated allowed) into
    onnxruntime provider names."""
    names = check_provider_spec(spec)
    if not check:
        return []
    available = available_providers()
    if names == ["auto"]:
        return ([PROVIDER_NAMES["cuda"]] if PROVIDER_NAMES["cuda"] in available else []) + [PROVIDER_NAMES["cpu"]]
    wanted = [PROVIDER_NAMES[n] for n in names if n != "auto"]
    missing = [w for w in wanted if w not in available]
    if missing:
        raise ProviderError(
            f"execution provider(s) {missing} are not available in this onnxruntime (it has {available})",
            hint=GPU_INSTALL_HINT,
        )
    if PROVIDER_NAMES["cpu"] not in wanted:
        wanted.append(PROVIDER_NAMES["cpu"])  # ORT needs CPU for the nodes other providers do not take
    return wanted


def make_session(model: onnx.ModelProto | str | os.PathLike | bytes, options: SessionOptions = SessionOptions()):
    """Create an onnxruntime InferenceSession."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.opt_level]
    if options.threads:
        so.intra_op_num_threads = options.threads
        so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = options.memory_arena
    if options.profile:
        so.enable_profiling = True
        if options.profile_prefix:
            so.profile_file_prefix = str(options.profile_prefix)
    if options.optimized_model_path:
        so.optimized_model_filepath = str(options.optimized_model_path)
        so.add_session_config_entry(OPTIMIZED_DATA_KEY, Path(options.optimized_model_path).name + ".data")
        so.add_session_config_entry(OPTIMIZED_DATA_MIN_KEY, "1024")
    providers = resolve_providers(options.providers)
    if isinstance(model, onnx.ModelProto) and _has_external(model):
        so.add_session_config_entry(EXTERNAL_FOLDER_KEY, str(EXTERNAL_ROOT))
    source = _session_source(model)
    try:
        return ort.InferenceSession(source, sess_options=so, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented classes
        raise ModelFormatError(
            f"onnxruntime could not load the model: {str(e).strip().splitlines()[0]}",
            hint="check that the model is valid (onnxcompress inspect) and that onnxruntime supports its ops/opset",
        ) from e


def _has_external(model: onnx.ModelProto) -> bool:
    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        if any(uses_external_data(t) for t in g.initializer):
            return True
        for node in g.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR and uses_external_data(a.t):
                    return True
                graphs += [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
    return False


def _session_source(model: Any):
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, (str, os.PathLike)):
        return str(Path(model))
    return model


def batch_for_budget(session, feeds: dict[str, np.ndarray], outputs: list[str], budget_bytes: int, cap: int) -> int:
    """The largest batch (<= ``cap``) whose ``outputs`` and inputs fit in ``budget_bytes``, measured on ``feeds``
    (one sample): calibration memory is bounded by the batch, not by the data."""
    values = session.run(outputs, feeds)
    per_sample = sum(v.nbytes for v in values if v is not None) + sum(np.asarray(v).nbytes for v in feeds.values())
    return int(max(1, min(cap, budget_bytes // max(per_sample, 1))))


def release_memory() -> None:
    """Give memory freed by closed sessions back to the system (glibc keeps freed heap pages otherwise, so a
    large model's calibration session would stay in the process's footprint for the rest of the run)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)


def run(session, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``session``; onnxruntime refusing the inputs or failing inside the model is a :class:`ModelRunError`."""
    import onnxruntime as ort

    names = outputs or [o.name for o in session.get_outputs()]
    errors = tuple(getattr(ort.capi.onnxruntime_pybind11_state, n) for n in _ORT_ERRORS)
    try:
        return dict(zip(names, session.run(names, feeds)))
    except errors as e:
        raise ModelRunError(f"onnxruntime could not run the model: {' '.join(str(e).split())[:500]}",
                            hint="check the model (onnxcompress inspect) and that the data fits its inputs") from e


_ORT_ERRORS = ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NotImplemented", "EPFail")


def versions() -> dict[str, str]:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "numpy": np.__version__}


def optimized_model(model: onnx.ModelProto | str | os.PathLike, options: SessionOptions = SessionOptions()) -> onnx.ModelProto:
    """The graph onnxruntime actually runs, as structure: a session at ``options.opt_level`` saves its optimized
    model with the weights in a side file, and only the graph is read back (tensor values are not loaded -- the
    callers count ops and read initializer names -- so this costs no second copy of a large model's weights)."""
    import dataclasses
    import tempfile

    with tempfile.TemporaryDirectory(prefix="onnxcompress-opt-") as tmp:
        path = Path(tmp) / "optimized.onnx"
        make_session(model, dataclasses.replace(options, optimized_model_path=str(path)))
        return onnx.load(str(path), load_external_data=False)
