#!/usr/bin/env python
"""onnxcompress quantize vs onnxruntime.quantization.quantize_static, in one process and one run.

For every bundled model (models/*.onnx with calibration/<name>_{calib,eval}.npz) and the third-party model
(.cache/third_party/ppocr_cls, converted to opset 17) it quantizes with:
  ours-minmax, ours-entropy                      (target cpu: uint8 activations, int8 per-channel weights)
  ort-{minmax,entropy}-{s8,u8}                   (QDQ, per_channel=True, weights QInt8, activations QInt8/QUInt8)
and prints one table: quantization wall time and peak RSS (above the process baseline, sampled every 2 ms), size,
top-1 vs labels, top-1 agreement and cosine vs fp32, ORT CPU latency at batch 1 and 32 as fp32/quantized ratios
(interleaved rounds, medians, identical session options).

Usage: .venv/bin/python bench/quantize_vs_ort.py [--models resnet_mnist,vit_mnist,ppocr_cls] [--rounds 7]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnxcompress as oc  # noqa: E402
from onnxcompress.ir.io import convert_opset, load_model, save_model  # noqa: E402
from onnxcompress.quantization import QuantizeConfig  # noqa: E402
from onnxcompress.runtime.session import SessionOptions, make_session  # noqa: E402

log = logging.getLogger("bench")


# --- models -----------------------------------------------------------------------------------------------------
def available_models(tmp: Path, wanted: list[str]) -> dict[str, tuple[Path, Path, Path]]:
    out = {}
    for name in ("resnet_mnist", "vit_mnist"):
        m, c, e = ROOT / "models" / f"{name}.onnx", ROOT / f"calibration/{name}_calib.npz", ROOT / f"calibration/{name}_eval.npz"
        if name in wanted and m.exists():
            out[name] = (m, c, e)
    tp = ROOT / ".cache/third_party/ppocr_cls"
    if "ppocr_cls" in wanted and (tp / "model.onnx").exists():
        model = convert_opset(load_model(tp / "model.onnx"), 17)
        for i, d in enumerate(model.graph.input[0].type.tensor_type.shape.dim):  # '?' dims are distinct symbols
            if d.dim_param == "?" or not (d.dim_param or d.dim_value > 0):
                d.dim_param = f"dim{i}"
        out["ppocr_cls"] = (save_model(model, tmp / "ppocr_cls.onnx"), tp / "calib.npz", tp / "eval.npz")
    return out


# --- measuring --------------------------------------------------------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(fn):
    """(result, wall seconds, peak RSS above the baseline in bytes)."""
    import gc

    gc.collect()
    base, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - start
        stop.set()
        t.join()
    return result, seconds, max(peak[0], _rss()) - base


def ours(model_path: Path, calib: Path, out: Path, calibrator: str) -> Path:
    qmodel, _ = oc.quantize(load_model(model_path), calib, QuantizeConfig(calibrator=calibrator, verify=False))
    return save_model(qmodel, out)


def ort_static(model_path: Path, calib: Path, out: Path, calibrator: str, act: str) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    data = np.load(calib)
    name = onnx.load(str(model_path), load_external_data=False).graph.input[0].name
    x = data[name] if name in data else data[next(iter(data.keys()))]

    class Reader(CalibrationDataReader):
        def __init__(self):
            bs = max(d for d in range(1, 33) if len(x) % d == 0)  # equal batches (ORT's histograms need them)
            self.it = iter(np.split(x, len(x) // bs))

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: b}

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[calibrator]
    quantize_static(str(model_path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8 if act == "s8" else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=method)
    return out


def predictions(path: Path, x: np.ndarray) -> np.ndarray:
    sess = make_session(path, SessionOptions(providers="cpu", opt_level="all"))
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: b})[0] for b in np.array_split(x, max(len(x) // 64, 1))])


def latencies(paths: dict[str, Path], x: np.ndarray, batch: int, rounds: int, iters: int) -> dict[str, float]:
    """Median ms per run, rounds interleaved across models; identical session options (1 thread)."""
    sessions = {k: make_session(p, SessionOptions(providers="cpu", opt_level="all", threads=1)) for k, p in paths.items()}
    feeds = {k: {s.get_inputs()[0].name: x[:batch]} for k, s in sessions.items()}
    for k, s in sessions.items():  # warm-up
        for _ in range(3):
            s.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            start = time.perf_counter()
            for _ in range(iters):
                s.run(None, feeds[k])
            times[k].append((time.perf_counter() - start) / iters * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


# --- main -------------------------------------------------------------------------------------------------------
VARIANTS = [("ours-minmax", "ours", "minmax", None), ("ours-entropy", "ours", "entropy", None)] + [
    (f"ort-{c}-{a}", "ort", c, a) for c in ("minmax", "entropy") for a in ("s8", "u8")]


def bench_model(name: str, files, tmp: Path, rounds: int) -> list[dict]:
    model_path, calib, evalf = files
    ev = np.load(evalf)
    x = ev[next(k for k in ev.files if k != "labels")]
    labels = ev["labels"] if "labels" in ev.files else None
    paths, rows = {"fp32": Path(model_path)}, []
    for vname, who, calibrator, act in VARIANTS:
        out = tmp / f"{name}-{vname}.onnx"
        fn = functools.partial(ours, model_path, calib, out, calibrator) if who == "ours" else \
            functools.partial(ort_static, model_path, calib, out, calibrator, act)
        _, seconds, rss = measured(fn)
        paths[vname] = out
        rows.append({"model": name, "variant": vname, "quant_s": seconds, "rss_mb": rss / 2**20,
                     "size_kb": out.stat().st_size / 1024})
    ref = predictions(paths["fp32"], x)
    fp32_row = {"model": name, "variant": "fp32", "quant_s": 0.0, "rss_mb": 0.0,
                "size_kb": Path(model_path).stat().st_size / 1024}
    for row in [fp32_row] + rows:
        y = predictions(paths[row["variant"]], x)
        row["top1"] = float((y.argmax(1) == labels).mean()) if labels is not None else float("nan")
        row["agree"] = float((y.argmax(1) == ref.argmax(1)).mean())
        row["cos"] = float(np.mean(np.sum(y * ref, 1) / (np.linalg.norm(y, axis=1) * np.linalg.norm(ref, axis=1))))
    for batch, iters in ((1, 50), (32, 5)):
        med = latencies(paths, x, batch, rounds, iters)
        for row in [fp32_row] + rows:
            row[f"ms_b{batch}"] = med[row["variant"]]
            row[f"x_b{batch}"] = med["fp32"] / med[row["variant"]]
    return [fp32_row] + rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet_mnist,vit_mnist,ppocr_cls")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="qbench-") as tmpdir:
        tmp = Path(tmpdir)
        models = available_models(tmp, args.models.split(","))
        header = (f"{'model':<13} {'variant':<18} {'quant s':>8} {'RSS MB':>7} {'size KB':>8} {'top-1':>6} "
                  f"{'agree':>6} {'cos':>7} {'b1 ms':>7} {'b1 x':>5} {'b32 ms':>7} {'b32 x':>5}")
        print(header)
        print("-" * len(header))
        for name, files in models.items():
            for r in bench_model(name, files, tmp, args.rounds):
                print(f"{r['model']:<13} {r['variant']:<18} {r['quant_s']:>8.2f} {r['rss_mb']:>7.0f} "
                      f"{r['size_kb']:>8.0f} {r['top1']:>6.3f} {r['agree']:>6.3f} {r['cos']:>7.4f} "
                      f"{r['ms_b1']:>7.3f} {r['x_b1']:>5.2f} {r['ms_b32']:>7.2f} {r['x_b32']:>5.2f}", flush=True)


if __name__ == "__main__":
    main()
