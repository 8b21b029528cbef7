"""Benchmark of the one-command pipeline: `onnxcompress optimize` on every available real model.

For each model: the exact command, its wall time, the verdict line, and from report.json the interleaved
p50 latencies (fp32 original vs optimized, same process, identical session options), top-1 and agreement.
Run: .venv/bin/python bench/optimize_pipeline.py [--out /tmp/bench] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]


def models(work: Path) -> list[tuple[str, Path, Path, Path]]:
    found = []
    for name in ("resnet_mnist", "vit_mnist"):
        m = ROOT / "models" / f"{name}.onnx"
        if m.exists():
            found.append((name, m, ROOT / "calibration" / f"{name}_calib.npz", ROOT / "calibration" / f"{name}_eval.npz"))
    tp = ROOT / ".cache" / "third_party" / "ppocr_cls"
    if (tp / "model.onnx").exists():
        found.append(("ppocr_cls", _named_dims(tp / "model.onnx", work / "ppocr_cls.onnx"), tp / "calib.npz",
                      tp / "eval.npz"))
    return found


def _named_dims(src: Path, dst: Path) -> Path:
    """The Paddle export names both spatial dims '?' and the batch -1; give them distinct names (N, H, W)."""
    m = onnx.load(str(src))
    for vi in m.graph.input:
        for d, name in zip(vi.type.tensor_type.shape.dim, ("N", None, "H", "W")):
            if name and (d.dim_param == "?" or d.dim_value <= 0):
                d.Clear()
                d.dim_param = name
    onnx.save(m, str(dst))
    return dst


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/onnxcompress-bench")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).parent / "onnxcompress")
    rows = []
    for name, model, calib, evaluation in models(work):
        recipe = work / f"{name}.recipe.toml"
        recipe.write_text(f"[validate]\nthreads = {args.threads}\n[validate.profile]\nbatch_sizes = [1, 32]\n"
                          "iterations = 200\nwarmup = 20\n")
        cmd = [exe, "optimize", str(model), "-o", str(work / f"{name}.opt.onnx"), "--calib", str(calib),
               "--eval", str(evaluation), "--recipe", str(recipe), "--report-dir", str(work / f"{name}-report")]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        verdict = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
        rep = json.loads((work / f"{name}-report" / "report.json").read_text()) if proc.returncode in (0, 1) else {}
        rows.append((name, " ".join(shlex.quote(c) for c in cmd), proc.returncode, wall, verdict, rep))
    for name, cmd, rc, wall, verdict, rep in rows:
        print(f"### {name}\n\n`{cmd}`\n\nexit {rc}, {wall:.1f} s wall\n\n`{verdict}`\n")
        for b in (rep.get("profile") or {}).get("batches", []):
            m = b["models"]
            print(f"- batch {b['batch_size']}: p50 {m['reference']['p50_ms']:.3f} -> {m['candidate']['p50_ms']:.3f} ms "
                  f"({b['speedup_p50']:.2f}x), p99 {m['reference']['p99_ms']:.3f} -> {m['candidate']['p99_ms']:.3f} ms")
        if rep.get("stages", {}).get("quantize"):
            print(f"- int8 kernel coverage {rep['stages']['quantize'].get('coverage')}")
        for c in (rep.get("gate") or {}).get("criteria", []):
            print(f"- gate {'pass' if c['passed'] else 'FAIL'}: {c['message']}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
