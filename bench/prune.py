"""Pruning benchmark: MACs/params reduction, ORT CPU latency ratio (batch 32, interleaved A/B medians) and
top-1 / agreement with the fp32 model, per model, criterion and ratio; plus the resnet_mnist MACs-halving target.

Usage:  .venv/bin/python bench/prune.py [--models resnet_mnist,vit_mnist,ppocr_cls] [--ratios 0.2,0.3,0.5]
                                        [--criteria l1,l2,bn_scale,activation,reconstruction,random] [--rounds 30]
                                        [--threads 1] [--write]
No fine-tuning / distillation: the accuracy columns are what the cut alone keeps (+bias-corr: with
--bias-correction, the calibration mean of removed channels folded into the next layer's bias).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, sources

import onnxcompress as oc
from onnxcompress.data.inputs import from_npz
from onnxcompress.ir.io import load_model
from onnxcompress.pruning import PruneConfig
from onnxcompress.runtime.session import SessionOptions, make_session, run


def predictions(model, x: np.ndarray, name: str) -> np.ndarray:
    sess = make_session(model, SessionOptions(providers="cpu", threads=2))
    outs = [run(sess, {name: x[i:i + 100]})[sess.get_outputs()[0].name] for i in range(0, len(x), 100)]
    return np.concatenate(outs).argmax(axis=1)


def latency_ratio(base, pruned, feeds, rounds: int, threads: int) -> tuple[float, float, float]:
    """Median ms of base and pruned (interleaved, identical session options) and the speed-up."""
    opts = SessionOptions(providers="cpu", threads=threads)
    sessions = [make_session(base, opts), make_session(pruned, opts)]
    for s in sessions:
        for _ in range(3):
            run(s, feeds)
    times = [[], []]
    for _ in range(rounds):
        for i, s in enumerate(sessions):
            t = time.perf_counter()
            run(s, feeds)
            times[i].append((time.perf_counter() - t) * 1e3)
    a, b = statistics.median(times[0]), statistics.median(times[1])
    return a, b, a / b


def bench_model(name, ratios, criteria, rounds, threads, lines):
    model_path, calib_path, eval_path = sources(name)
    if not model_path.exists():
        print(f"skip {name}: {model_path} missing")
        return
    model = load_model(model_path)
    calib = from_npz(calib_path)
    ev = np.load(eval_path)
    in_name = next(i.name for i in model.graph.input if i.name in ev.files)
    x, labels = ev[in_name][:1000], ev["labels"][:1000]
    x, labels = (x[:500], labels[:500]) if x.shape[-1] > 64 else (x, labels)  # big inputs: 500 samples
    ref = predictions(model, x, in_name)
    feeds = {in_name: x[:32]}
    lines.append(f"\n### {name} (fp32 top-1 {np.mean(ref == labels):.4f}, {len(x)} eval samples)\n")
    lines.append("| criterion | ratio | MACs kept | params kept | p50 fp32 ms | p50 pruned ms | speed-up | top-1 | "
                 "agreement | prune s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    speed: dict[float, tuple] = {}
    for crit, bc in [(c, b) for c in criteria for b in (False, True)]:
        for r in ratios:
            t = time.perf_counter()
            pruned, result = oc.prune(model, PruneConfig(ratio=r, criterion=crit, bias_correction=bc), calib)
            rep = result.to_dict()
            secs = time.perf_counter() - t
            if r not in speed:
                speed[r] = latency_ratio(model, pruned, feeds, rounds, threads)
            a, b, s = speed[r]
            pred = predictions(pruned, x, in_name)
            lines.append(f"| {crit}{' +bias-corr' if bc else ''} | {r} | {rep['after']['macs'] / rep['before']['macs']:.3f} | "
                         f"{rep['after']['params'] / rep['before']['params']:.3f} | {a:.2f} | {b:.2f} | {s:.2f}x | "
                         f"{np.mean(pred == labels):.4f} | {np.mean(pred == ref):.4f} | {secs:.1f} |")
            print(lines[-1], flush=True)
    for round_to, bc in ((1, False), (8, False), (8, True)):
        target_line(name, model, calib, x, labels, ref, feeds, rounds, threads, round_to, bc, lines)


def target_line(name, model, calib, x, labels, ref, feeds, rounds, threads, round_to, bc, lines):
    from onnxcompress.errors import RecipeError

    try:
        pruned, result = oc.prune(model, PruneConfig(target_macs=0.5, round_to=round_to, bias_correction=bc), calib)
        rep = result.to_dict()
    except RecipeError as e:  # e.g. round_to=8 on a narrow model: the target is out of reach, say so and go on
        lines.append(f"\n{name} --target-macs 0.5 --round-to {round_to}{' --bias-correction' if bc else ''}: "
                     f"not reachable: {str(e).splitlines()[0]}")
        print(lines[-1], flush=True)
        return
    a, b, s = latency_ratio(model, pruned, feeds, rounds, threads)
    pred = predictions(pruned, x, in_name_of(model, feeds))
    flags = f"--target-macs 0.5 --round-to {round_to}{' --bias-correction' if bc else ''}"
    lines.append(f"\n{name} {flags} (l1, local): MACs kept {rep['target']['achieved']:.3f} at ratio "
                 f"{rep['target']['ratio']:.3f}; batch 32 p50 {a:.2f} -> {b:.2f} ms = **{s:.2f}x** "
                 f"(threads={threads}, {rounds} interleaved rounds); top-1 {np.mean(pred == labels):.4f}, "
                 f"agreement {np.mean(pred == ref):.4f}")
    print(lines[-1], flush=True)


def in_name_of(model, feeds) -> str:
    return next(i.name for i in model.graph.input if i.name in feeds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet_mnist,vit_mnist,ppocr_cls")
    ap.add_argument("--ratios", default="0.2,0.3,0.5")
    ap.add_argument("--criteria", default="l1,l2,bn_scale,activation,reconstruction,random")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="append the tables to bench/RESULTS.md")
    args = ap.parse_args()
    lines = ["\n## Channel pruning (bench/prune.py)\n",
             f"Command: `.venv/bin/python bench/prune.py --models {args.models} --ratios {args.ratios} "
             f"--criteria {args.criteria} --rounds {args.rounds} --threads {args.threads}`  ",
             "ORT CPU, batch 32, interleaved A/B medians with identical session options; no fine-tuning."]
    for name in args.models.split(","):
        bench_model(name, [float(r) for r in args.ratios.split(",")], args.criteria.split(","), args.rounds,
                    args.threads, lines)
    if args.write:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
