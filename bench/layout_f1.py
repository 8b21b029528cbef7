#!/usr/bin/env python
"""layout_cdla: how far a compressed model's detections are from fp32's (the zoo member has no ground truth).

Decodes every model's outputs with the member's post-processing (rapid_layout's: score > 0.4, per-class NMS 0.5)
and matches them one-to-one against fp32's detections at IoU 0.5 (F1), plus the mean relative error of the box
distributions per stride. Batch 1 (the model's fixed batch), 1 thread.

Usage: .venv/bin/python bench/layout_f1.py [--pages 32] CANDIDATE.onnx [...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models" / "third_party"))
from zoo import layout_cdla as L  # noqa: E402
from zoo import metrics  # noqa: E402

MEMBER = ROOT / ".cache" / "third_party" / "layout_cdla"


def run(path: Path, pages: np.ndarray) -> dict[str, np.ndarray]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    outs = [s.run(None, {"image": pages[i:i + 1]}) for i in range(len(pages))]
    return {n: np.concatenate([o[k] for o in outs]) for k, n in enumerate(names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--pages", type=int, default=32)
    args = ap.parse_args()
    pages = np.load(MEMBER / "eval.npz")["image"][: args.pages]
    ref = run(MEMBER / "model.onnx", pages)
    ref_boxes = [b for b, _ in L.detections(ref)]
    print(f"fp32: {np.mean([len(b) for b in ref_boxes]):.2f} detections per page on {len(pages)} pages")
    for path in args.models:
        out = run(Path(path), pages)
        boxes = [b for b, _ in L.detections(out)]
        f1 = metrics.detection_pr(boxes, ref_boxes, 0.5)["f1"]
        rel = [float(np.abs(out[n] - ref[n]).mean() / np.abs(ref[n]).mean()) for n in L.BOXES]
        print(f"{path}: {np.mean([len(b) for b in boxes]):.2f} per page, F1 vs fp32 {f1:.3f}, box-distribution "
              f"relative error per stride {', '.join(f'{r:.3f}' for r in rel)}")


if __name__ == "__main__":
    main()
