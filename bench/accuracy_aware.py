#!/usr/bin/env python
"""Accuracy-aware mixed precision vs full INT8 vs onnxruntime's static and dynamic quantizers, in one run.

For every available model (bundled resnet_mnist / vit_mnist, third-party ppocr_cls) the evaluation set is split:
the first half is what the search checks its goal on (--eval), the second half is held out and every number in
the table comes from it. Variants:
  ours-int8      onnxcompress static INT8 (target cpu, minmax, per-channel; 7-bit weights on non-VNNI x86)
  ours-mixed     onnxcompress quantize --max-drop D --metric M (the mixed-precision search; default 0.005 top1)
  ours-dynamic   onnxcompress quantize --mode dynamic (MatMul/Gemm)
  ort-static-u8  onnxruntime.quantization.quantize_static (QDQ, per-channel, QUInt8 activations, QInt8 weights)
  ort-static-s8  same with QInt8 activations
  ort-dynamic    onnxruntime.quantization.quantize_dynamic (QInt8 weights, defaults)
Latency: ORT CPU, 1 intra-op thread, opt level all, batch 32, all variants timed in interleaved rounds, medians;
x = fp32 / variant in the same run.

Usage: .venv/bin/python bench/accuracy_aware.py [--models resnet_mnist,vit_mnist,ppocr_cls] [--rounds 7]
       [--max-drop 0.005] [--metric top1|agreement|cosine] [--budget 600]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from quantize_vs_ort import available_models, latencies, ort_static  # noqa: E402

import onnxcompress as oc  # noqa: E402
from onnxcompress.ir.io import load_model, save_model  # noqa: E402
from onnxcompress.quantization import QuantizeConfig  # noqa: E402
from onnxcompress.runtime.session import SessionOptions, make_session  # noqa: E402
from onnxcompress.tuning import TuneConfig  # noqa: E402

log = logging.getLogger("bench")


def split_eval(evalf: Path) -> tuple[dict, dict]:
    ev = dict(np.load(evalf))
    half = len(ev["labels"]) // 2
    return {k: v[:half] for k, v in ev.items()}, {k: v[half:] for k, v in ev.items()}


def ort_dynamic(model_path: Path, out: Path) -> Path:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_qd

    ort_qd(str(model_path), str(out), weight_type=QuantType.QInt8)
    return out


def outputs(path: Path, x: np.ndarray) -> np.ndarray:
    sess = make_session(path, SessionOptions(providers="cpu", opt_level="all", threads=1))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0] for b in np.array_split(x, max(len(x) // 64, 1))])


def _kept(choice: dict) -> str:
    """The higher-precision nodes, summarised when many (a preset keeps every non-linear node float)."""
    if len(choice) <= 3:
        return str(choice)
    ops: dict[str, int] = {}
    for node in choice:
        op = node.rsplit("/", 1)[-1].split("_")[0]
        ops[op] = ops.get(op, 0) + 1
    return f"{len(choice)} float ({', '.join(f'{k} {v}' for k, v in sorted(ops.items()))})"


def build_variants(name, model_path, calib, tune_split, tmp: Path, args) -> tuple[dict[str, Path], dict]:
    model = load_model(model_path)
    paths, info = {"fp32": Path(model_path)}, {}
    start = time.perf_counter()
    q, _ = oc.quantize(model, calib, QuantizeConfig(verify=False))
    paths["ours-int8"], info["ours-int8"] = save_model(q, tmp / f"{name}-int8.onnx"), {"s": time.perf_counter() - start}
    start = time.perf_counter()
    tune = TuneConfig(metric=args.metric, max_drop=args.max_drop, time_budget=args.budget, eval_samples=None,
                      threads=1)
    out = tmp / f"{name}-mixed.onnx"
    _, rep = oc.quantize(model, calib, QuantizeConfig(), tune=tune, eval=tune_split, output=out,
                         trace=tmp / f"{name}-mixed.trace.json")
    paths["ours-mixed"] = out
    t = rep.to_dict()["tune"]
    info["ours-mixed"] = {"s": time.perf_counter() - start, "trials": len(t["trials"]), "goal_met": t["goal_met"],
                          "kept": _kept(t["higher_precision"]), "stopped": t["stopped"], "tune_drop": t["best"]["drop"],
                          "picked": f"{t['best']['phase']} ({t['mode']})"}
    start = time.perf_counter()
    q, _ = oc.quantize(model, None, QuantizeConfig(mode="dynamic", verify=False))
    paths["ours-dynamic"], info["ours-dynamic"] = save_model(q, tmp / f"{name}-dyn.onnx"), {"s": time.perf_counter() - start}
    for act in ("u8", "s8"):
        start = time.perf_counter()
        paths[f"ort-static-{act}"] = ort_static(Path(model_path), calib, tmp / f"{name}-ort-{act}.onnx", "minmax", act)
        info[f"ort-static-{act}"] = {"s": time.perf_counter() - start}
    start = time.perf_counter()
    paths["ort-dynamic"] = ort_dynamic(Path(model_path), tmp / f"{name}-ort-dyn.onnx")
    info["ort-dynamic"] = {"s": time.perf_counter() - start}
    return paths, info


def bench_model(name: str, files, tmp: Path, args) -> list[dict]:
    model_path, calib, evalf = files
    tune_split, held = split_eval(evalf)
    paths, info = build_variants(name, model_path, calib, tune_split, tmp, args)
    xkey = next(k for k in held if k != "labels")
    x, labels = held[xkey], held["labels"]
    ref = outputs(paths["fp32"], x)
    rows = []
    for variant, path in paths.items():
        y = outputs(path, x)
        cos = np.sum(y * ref, 1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))
        rows.append({"model": name, "variant": variant, "top1": float((y.argmax(1) == labels).mean()),
                     "agree": float((y.argmax(1) == ref.argmax(1)).mean()), "cos": float(np.mean(cos)),
                     "size_kb": path.stat().st_size / 1024, **info.get(variant, {})})
    med = latencies(paths, x, 32, args.rounds, 3)
    for row in rows:
        row["ms_b32"], row["x_b32"] = med[row["variant"]], med["fp32"] / med[row["variant"]]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet_mnist,vit_mnist,ppocr_cls")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--max-drop", type=float, default=0.005)
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--metric", default="top1", choices=("top1", "agreement", "cosine"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="aabench-") as tmpdir:
        tmp = Path(tmpdir)
        header = (f"{'model':<13} {'variant':<14} {'top-1':>6} {'agree':>6} {'cos':>7} {'size KB':>8} "
                  f"{'b32 ms':>8} {'b32 x':>6} {'quant s':>8}  notes")
        print(header)
        print("-" * len(header))
        for name, files in available_models(tmp, args.models.split(",")).items():
            for r in bench_model(name, files, tmp, args):
                notes = ""
                if "trials" in r:
                    notes = (f"goal {'met' if r['goal_met'] else 'NOT met'} (tune-split drop {r['tune_drop']:.4f}), "
                             f"{r['trials']} trials, picked {r['picked']}, kept {r['kept']}; {r['stopped']}")
                print(f"{r['model']:<13} {r['variant']:<14} {r['top1']:>6.3f} {r['agree']:>6.3f} {r['cos']:>7.4f} "
                      f"{r['size_kb']:>8.0f} {r['ms_b32']:>8.2f} {r['x_b32']:>6.2f} {r.get('s', 0.0):>8.1f}  {notes}",
                      flush=True)


if __name__ == "__main__":
    main()
