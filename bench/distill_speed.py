#!/usr/bin/env python
"""Distillation speed on zoo models: wall time and peak RSS of `onnxcompress distill` (CLI, a subprocess each) on a
student pruned by `onnxcompress prune --ratio 0.3`, at two memory settings, and whether their outputs are
byte-identical (the windowed teacher passes and the stored student activations must not change the result).

Usage: .venv/bin/python bench/distill_speed.py [--models ppocr_cls,ppocr_rec] [--memory 1024,64]
Members come from models/third_party/fetch.py (the ignored .cache/third_party folder).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("onnxcompress")
ZOO = ROOT / ".cache" / "third_party"


def timed(args: list[str]) -> tuple[int, float, int, str]:
    """(exit code, wall s, peak RSS MB, last output line) of one CLI call."""
    time_bin = shutil.which("time") or "/usr/bin/time"
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as t:
        start = time.perf_counter()
        p = subprocess.run([time_bin, "-f", "%M", "-o", t.name, str(CLI), *args], capture_output=True, text=True)
        wall = time.perf_counter() - start
        tail = t.read().strip().splitlines()
        rss = int(tail[-1]) // 1024 if tail and tail[-1].isdigit() else 0
    lines = (p.stdout + p.stderr).strip().splitlines()
    return p.returncode, wall, rss, lines[-1] if lines else ""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ppocr_cls,ppocr_rec")
    ap.add_argument("--memory", default="1024,64", help="--memory-mb settings to compare")
    a = ap.parse_args()
    print("| model | prune s | --memory-mb | distill rc | distill s | peak RSS MB | output sha256 |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models.split(","):
            member = ZOO / name
            model, calib = member / "model.onnx", member / "calib.npz"
            student = Path(tmp) / f"{name}.p.onnx"
            rc, wall, _, last = timed(["prune", str(model), "-o", str(student), "--ratio", "0.3", "--calib", str(calib)])
            if rc:
                print(f"| {name} | prune exit {rc}: {last} | | | | | |")
                continue
            for mb in a.memory.split(","):
                out = Path(tmp) / f"{name}.{mb}.onnx"
                drc, dwall, rss, dlast = timed(["distill", str(model), str(student), "-o", str(out), "--calib", str(calib),
                                                "--memory-mb", mb])
                digest = sha(out) if drc == 0 else dlast
                print(f"| {name} | {wall:.1f} | {mb} | {drc} | {dwall:.1f} | {rss} | {digest} |", flush=True)


if __name__ == "__main__":
    main()
