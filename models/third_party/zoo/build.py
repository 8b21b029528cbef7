"""Build one zoo entry: model.onnx (verified), calib.npz, eval.npz, info.json, plus any side files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import common
from .common import Context, Spec

SEED = 20240601


def build(spec: Spec, out_root: Path, force: bool = False, small: bool = False) -> dict:
    if small and spec.small is None:
        raise ValueError(f"{spec.name} has no committed small copy")
    n_calib, n_eval = spec.small if small else (spec.n_calib, spec.n_eval)
    ctx = Context(spec, Path(out_root) / spec.name, n_calib, n_eval, small, force, SEED)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    wheel = common.ensure_model(ctx)
    calib, evals, data_info = spec.make_data(ctx)
    axes = {k: v.get("batch_axis", 0) for k, v in spec.inputs.items()}
    calib = common.take(calib, n_calib, axes)
    evals = common.take(evals, n_eval, {**axes, **data_info.pop("extra_axes", {})})
    common.save_npz(ctx.out_dir / "calib.npz", calib)
    common.save_npz(ctx.out_dir / "eval.npz", evals)
    info = make_info(ctx, wheel, calib, evals, data_info)
    info["fp32_metric"] = fp32_metric(ctx.out_dir, info)
    common.dump_json(ctx.out_dir / "info.json", common.round_floats(info))
    return info


def _io(spec: Spec, model: dict) -> dict:
    inputs = []
    for gi in model["graph_inputs"]:
        extra = spec.inputs.get(gi["name"], {})
        inputs.append({**gi, "batch_axis": extra.get("batch_axis", 0), **{k: v for k, v in extra.items()
                                                                          if k != "batch_axis"}})
    outputs = []
    for go in model["graph_outputs"]:
        o = dict(spec.outputs[go["name"]])
        if o["kind"] not in common.OUTPUT_KINDS:
            raise ValueError(f"{spec.name}: unknown output kind {o['kind']}")
        outputs.append({**go, "batch_axis": o.pop("batch_axis", 0), **o})
    return {"inputs": inputs, "outputs": outputs, "fixed_batch": spec.fixed_batch}


def _shapes(arrays: dict) -> dict:
    return {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()}


def make_info(ctx: Context, wheel, calib: dict, evals: dict, data_info: dict) -> dict:
    spec = ctx.spec
    model = common.inspect_model(ctx.model_path)
    source = {"package": spec.package, "version": spec.version,
              "pip": f"{spec.package}=={spec.version}" if spec.package else None,
              "wheel": wheel or _wheel_name(spec), "file_in_wheel": spec.wheel_file,
              "sha256": spec.sha256, "license": spec.license, "homepage": spec.homepage}
    if spec.source_note:
        source["note"] = spec.source_note
    return {
        "name": spec.name,
        "module": spec.name,
        "family": spec.family,
        "task": spec.task,
        "description": spec.description,
        "source": source,
        "io": _io(spec, model),
        "labels": spec.labels,
        "preprocessing": spec.preprocessing,
        "quirks": spec.quirks,
        "model": {k: v for k, v in model.items() if k not in ("graph_inputs", "graph_outputs")},
        "data": {**data_info, "seed": ctx.seed, "small_copy": ctx.small,
                 "calib": {"file": "calib.npz", "arrays": _shapes(calib)},
                 "eval": {"file": "eval.npz", "arrays": _shapes(evals)}},
        "environment": common.environment(),
    }


def _wheel_name(spec: Spec) -> str | None:
    if not spec.package:
        return None
    cache = common.WHEEL_CACHE / f"{spec.package}=={spec.version}"
    wheels = sorted(cache.glob("*.whl"))
    return wheels[0].name if wheels else None


def fp32_metric(mdir: Path, info: dict) -> dict:
    here = str(Path(__file__).resolve().parents[1])
    if here not in sys.path:
        sys.path.insert(0, here)
    import onnxruntime
    import zoo_index

    entry = zoo_index.Entry(info["name"], mdir, info)
    arrays = zoo_index.load(entry.eval)
    sess = zoo_index.session(entry.model)
    outputs = zoo_index.run(entry, sess, arrays, batch=32)
    res = zoo_index.task_metric(entry, outputs, zoo_index.extras(entry, arrays))
    return {**res, "runtime": f"onnxruntime {onnxruntime.__version__} CPUExecutionProvider",
            "n": zoo_index.n_samples(entry, arrays)}


def as_f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)
