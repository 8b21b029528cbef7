"""Distillation benchmark: how much of the accuracy that pruning lost does layer-wise reconstruction recover?

For each model and pruning setting: top-1 and agreement with fp32 for fp32, pruned, pruned+reconstructed, and
+INT8 (QDQ, CPU target) on top of the reconstructed model; wall time and peak RSS of the reconstruction (measured in
a forked child process so the figure is the reconstruction's own).

Usage:  .venv/bin/python bench/distill.py [--models resnet_mnist,vit_mnist,ppocr_cls] [--settings r0.3,r0.5,m0.5]
                                          [--round-to 8] [--samples 256] [--ridge 1e-3]
        .venv/bin/python bench/distill.py --quant-bias [--models ...]   (quantization-aware bias correction only:
        INT8 vs INT8 + bias correction against the float model, no pruning)
Settings: rX = prune ratio X per group (l1, local); mX = --target-macs X (keep X of the MACs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import sources

import onnxcompress as oc
from onnxcompress import pipeline
from onnxcompress.distillation import DistillConfig
from onnxcompress.errors import RecipeError
from onnxcompress.ir.io import load_model
from onnxcompress.passes import PassContext
from onnxcompress.pruning import PruneConfig
from onnxcompress.quantization import QuantizeConfig
from onnxcompress.runtime.session import SessionOptions, make_session, run


def teacher_of(path: Path):
    return pipeline.preprocessed(load_model(path), oc.Recipe(), PassContext())


def logits(model, x: np.ndarray, name: str) -> np.ndarray:
    sess = make_session(model, SessionOptions(providers="cpu", threads=2))
    out = sess.get_outputs()[0].name
    return np.concatenate([run(sess, {name: x[i:i + 100]})[out] for i in range(0, len(x), 100)])


def prune_config(setting: str, round_to: int) -> PruneConfig:
    value = float(setting[1:])
    if setting[0] == "r":
        return PruneConfig(ratio=value, round_to=round_to)
    return PruneConfig(target_macs=value, round_to=round_to)


def reconstruct_in_child(teacher, student, calib: Path, cfg: DistillConfig, kept) -> tuple[object, float, float]:
    """Run reconstruction in a forked child; return (model, wall seconds, child peak RSS MB)."""
    fd, out_path = tempfile.mkstemp(suffix=".onnx")
    os.close(fd)
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            t = time.perf_counter()
            model, _ = oc.distill(teacher, student, str(calib), cfg, kept=kept)
            Path(out_path).write_bytes(model.SerializeToString())
            Path(out_path + ".s").write_text(str(time.perf_counter() - t))
        except BaseException as e:  # report and exit non-zero; the parent raises
            print(f"child failed: {e!r}", file=sys.stderr)
            code = 1
        os._exit(code)
    _, status, usage = os.wait4(pid, 0)
    if status != 0:
        raise RuntimeError("reconstruction failed in the child process")
    import onnx

    model = onnx.load(out_path)
    seconds = float(Path(out_path + ".s").read_text())
    os.unlink(out_path)
    os.unlink(out_path + ".s")
    return model, seconds, usage.ru_maxrss / 1024


def bench_model(name: str, settings: list[str], args) -> list[dict]:
    path, calib, evaluation = sources(name)
    teacher = teacher_of(path)
    z = np.load(evaluation)
    input_name = teacher.graph.input[0].name
    x, labels = z[input_name], z["labels"]
    ref = logits(teacher, x, input_name).argmax(1)
    rows = [{"model": name, "setting": "fp32", "variant": "fp32", "top1": float((ref == labels).mean()),
             "agreement": 1.0}]
    for setting in settings:
        try:
            pruned, result = oc.prune(teacher, prune_config(setting, args.round_to))
            rep = result.to_dict()
        except RecipeError as e:  # e.g. a MACs target this architecture cannot reach
            print(f"{name} {setting}: {e.message}", file=sys.stderr)
            rows.append({"model": name, "setting": setting, "variant": f"not reachable: {e.message}",
                         "top1": float("nan"), "agreement": float("nan")})
            continue
        kept = result.kept_channels()
        cfg = DistillConfig(ridge=args.ridge, samples=args.samples)
        recon, seconds, rss = reconstruct_in_child(teacher, pruned, calib, cfg, kept)
        quant, _ = oc.quantize(recon, str(calib), QuantizeConfig(verify=False))
        macs_kept = rep["after"]["macs"] / rep["before"]["macs"]
        for variant, model in (("pruned", pruned), ("+reconstructed", recon), ("+reconstructed+int8", quant)):
            pred = logits(model, x, input_name).argmax(1)
            row = {"model": name, "setting": setting, "variant": variant, "top1": float((pred == labels).mean()),
                   "agreement": float((pred == ref).mean()), "macs_kept": macs_kept}
            if variant == "+reconstructed":
                row.update(seconds=round(seconds, 2), peak_rss_mb=round(rss, 1))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def bench_quant_bias(name: str) -> list[dict]:
    """INT8 with and without quantization-aware bias correction: top-1, agreement and logit MSE vs fp32."""
    path, calib, evaluation = sources(name)
    teacher = teacher_of(path)
    z = np.load(evaluation)
    input_name = teacher.graph.input[0].name
    x, labels = z[input_name], z["labels"]
    ref = logits(teacher, x, input_name)
    rows = []
    for corrected in (False, True):
        t = time.perf_counter()
        quant, _ = oc.quantize(teacher, str(calib), QuantizeConfig(verify=False, bias_correction=corrected))
        seconds = time.perf_counter() - t
        out = logits(quant, x, input_name)
        rows.append({"model": name, "variant": "int8 + bias correction" if corrected else "int8",
                     "top1": float((out.argmax(1) == labels).mean()),
                     "agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
                     "mse": float(((out - ref) ** 2).mean()), "seconds": round(seconds, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def quant_bias_table(rows: list[dict]) -> str:
    lines = ["| model | variant | top-1 | agreement | logit MSE vs fp32 | quantize s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['variant']} | {r['top1']:.4f} | {r['agreement']:.4f} | {r['mse']:.3g} | "
              f"{r['seconds']} |" for r in rows]
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = ["| model | setting | variant | MACs kept | top-1 | agreement | recon s | recon peak RSS MB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        macs = f"{r['macs_kept']:.3f}" if isinstance(r.get("macs_kept"), float) else ""
        lines.append(f"| {r['model']} | {r['setting']} | {r['variant']} | {macs} | {r['top1']:.4f} | "
                     f"{r['agreement']:.4f} | {r.get('seconds', '')} | {r.get('peak_rss_mb', '')} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet_mnist,vit_mnist")
    p.add_argument("--settings", default="r0.3,r0.5,m0.5")
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--ridge", type=float, default=1e-3)
    p.add_argument("--quant-bias", action="store_true", help="only INT8 vs INT8 + bias correction")
    args = p.parse_args()
    rows = []
    for name in args.models.split(","):
        if not sources(name)[0].exists():
            print(f"skipping {name}: {sources(name)[0]} not found", file=sys.stderr)
            continue
        rows += bench_quant_bias(name) if args.quant_bias else bench_model(name, args.settings.split(","), args)
    print(quant_bias_table(rows) if args.quant_bias else table(rows))


if __name__ == "__main__":
    main()
