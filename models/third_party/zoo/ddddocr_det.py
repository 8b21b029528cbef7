"""ddddocr_det: ddddocr's click-captcha character detector (YOLOX-style, 416x416), from ddddocr.

Data: click captchas rendered here: 3-5 Chinese characters (from ddddocr's own CHARSET_BETA) in the WenQuanYi
Zen Hei font (Debian package fonts-wqy-zenhei; without it, Latin letters in Pillow's built-in font), coloured
with an outline and rotated, on random crops of skimage.data's real photos; ground-truth boxes recorded.
Preprocessing as ddddocr.core.detection_engine.DetectionEngine.preproc (letterbox top-left, pad 114, BGR, 0-255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics
from .common import Spec

SIZE = 416
MAX_BOXES = 6
OUT = "output"
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")


def _glyph_source(ctx):
    from PIL import ImageFont

    if CJK_FONT.exists():
        from .ddddocr import charset

        cjk = [c for c in charset(ctx) if len(c) == 1 and "\u4e00" <= c <= "\u9fff"]
        return (lambda size: ImageFont.truetype(str(CJK_FONT), size)), cjk, "WenQuanYi Zen Hei (fonts-wqy-zenhei)"
    import string

    return (lambda size: ImageFont.load_default(size=size)), list(string.ascii_uppercase), "Pillow built-in (Latin)"


def letterbox(bgr: np.ndarray) -> np.ndarray:
    """DetectionEngine.preproc: scale to fit 416x416 (cv2 INTER_LINEAR, numpy re-implementation), paste top-left
    on 114-grey, HWC->CHW float32 0..255."""
    from .text import cv2_resize_linear

    r = min(SIZE / bgr.shape[0], SIZE / bgr.shape[1])
    resized = cv2_resize_linear(bgr, int(bgr.shape[1] * r), int(bgr.shape[0] * r))
    out = np.full((SIZE, SIZE, 3), 114, np.uint8)
    out[:resized.shape[0], :resized.shape[1]] = resized
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32), r


def captcha(photos, font_of, glyphs, rng):
    from PIL import Image, ImageDraw

    ph = photos[int(rng.integers(len(photos)))]
    w, h = int(rng.integers(300, 420)), int(rng.integers(150, 240))  # click captchas are wide
    s = min(ph.shape[0] / h, ph.shape[1] / w) * rng.uniform(0.5, 1.0)
    cw, ch = int(w * s), int(h * s)
    y0, x0 = int(rng.integers(0, ph.shape[0] - ch + 1)), int(rng.integers(0, ph.shape[1] - cw + 1))
    img = Image.fromarray(ph[y0:y0 + ch, x0:x0 + cw]).resize((w, h), Image.BILINEAR).convert("RGB")
    boxes = []
    for _ in range(int(rng.integers(3, MAX_BOXES))):
        size = int(rng.integers(26, 46))
        g = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
        fill = tuple(int(v) for v in rng.integers(0, 256, size=3)) + (255,)
        ImageDraw.Draw(g).text((size // 2, size // 2), glyphs[int(rng.integers(len(glyphs)))], font=font_of(size),
                               fill=fill, stroke_width=int(rng.integers(0, 3)), stroke_fill=(255, 255, 255, 255))
        g = g.rotate(float(rng.uniform(-40, 40)), resample=Image.BILINEAR)
        bb = g.getbbox()
        if bb is None:
            continue
        g = g.crop(bb)
        for _ in range(20):  # a spot that does not overlap the other characters
            px, py = int(rng.integers(0, w - g.width)), int(rng.integers(0, h - g.height))
            cand = np.array([[px, py, px + g.width, py + g.height]], np.float32)
            if not boxes or metrics.box_iou(cand, np.array(boxes)).max() == 0:
                img.paste(g, (px, py), g)
                boxes.append(cand[0])
                break
    return np.asarray(img)[:, :, ::-1], np.asarray(boxes, np.float32).reshape(-1, 4)


def split(n, rng, photos, font_of, glyphs):
    xs = np.empty((n, 3, SIZE, SIZE), np.float32)
    gt = np.full((n, MAX_BOXES, 4), -1.0, np.float32)
    for i in range(n):
        bgr, boxes = captcha(photos, font_of, glyphs, rng)
        xs[i], r = letterbox(np.ascontiguousarray(bgr))
        gt[i, :len(boxes)] = boxes * r  # in network-input pixels
    return xs, gt


def make_data(ctx):
    import skimage

    from . import pages

    font_of, glyphs, font_name = _glyph_source(ctx)
    photos = [p for p in pages.photos() if min(p.shape[:2]) >= 200]
    x_cal, _ = split(ctx.spec.n_calib, ctx.rng(60), photos, font_of, glyphs)
    x_ev, gt = split(ctx.spec.n_eval, ctx.rng(61), photos, font_of, glyphs)
    info = {"source": f"click captchas 300-420 x 150-240 px: crops of skimage.data photos (scikit-image "
                      f"{skimage.__version__}) with 3-5 non-overlapping characters, 26-45 px, rotated +-40 deg, "
                      f"random colour, white stroke 0-2 px; glyph font: {font_name}",
            "gt_boxes": f"eval.npz['gt_boxes'] float32 [N, {MAX_BOXES}, 4] xyxy in network-input (416) pixels, "
                        "-1 rows are padding"}
    return {"images": x_cal}, {"images": x_ev, "gt_boxes": gt}, info


def decode(pred: np.ndarray, score_thr: float = 0.1, nms_thr: float = 0.45) -> np.ndarray:
    """DetectionEngine.demo_postprocess + class-agnostic NMS; boxes xyxy in input pixels."""
    grids, strides = [], []
    for st in (8, 16, 32):
        n = SIZE // st
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), st))
    grids, strides = np.concatenate(grids), np.concatenate(strides)
    xy = (pred[:, :2] + grids) * strides
    wh = np.exp(np.minimum(pred[:, 2:4], 20)) * strides
    scores = pred[:, 4] * pred[:, 5]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    keep = scores > score_thr
    boxes, scores = boxes[keep], scores[keep]
    return boxes[metrics.nms(boxes, scores, nms_thr)] if len(boxes) else boxes


def metric(outputs, extras):
    dets = [decode(p) for p in outputs[OUT]]
    return metrics.detection_pr(dets, metrics.gt_boxes(extras["gt_boxes"]), 0.5)


SPEC = Spec(
    name="ddddocr_det",
    family="YOLO-style detector (YOLOX-nano-like: CSP-Darknet with SiLU, PAN, decoupled head)",
    task="character detection in click captchas (1 class + objectness)",
    package="ddddocr", version="1.6.1",
    wheel_file="ddddocr/common_det.onnx",
    sha256="6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
    license="MIT (wheel METADATA and LICENSE file, sml2h3)",
    homepage="https://github.com/sml2h3/ddddocr",
    description="ddddocr's detection model (DdddOcr(det=True)): raw YOLOX predictions for 3549 anchors "
                "(52x52 + 26x26 + 13x13), decoded and NMS-ed in Python by the package.",
    make_data=make_data, metric=metric,
    inputs={"images": {"batch_axis": 0}},
    outputs={OUT: {"kind": "dense_map", "note": "[1, 3549, 6]: (x, y, log w, log h) offsets, objectness, class "
                                                "score (already sigmoid); decode with grids/strides 8,16,32"}},
    fixed_batch=1, n_calib=100, n_eval=150,
    quirks=[
        "fixed input [1, 3, 416, 416]",
        "opset 11, IR 6, PyTorch 1.9 export; Focus-style Slice stem (8 Slice), SiLU as Sigmoid + Mul",
        "input in raw 0..255 (no normalization), letterbox pad value 114",
        "output mixes box regressions and probabilities in one tensor",
    ],
    preprocessing={"reference": "ddddocr/core/detection_engine.py::DetectionEngine.preproc / get_bbox (1.6.1)",
                   "channel_order": "BGR",
                   "steps": "r = min(416/h, 416/w); cv2 INTER_LINEAR resize (bit-exact numpy) to (w*r, h*r); paste "
                            "top-left on a 416x416 canvas of 114; HWC->CHW float32 (0..255)"},
    labels={"gt_boxes": "character boxes; metric: decode + NMS (score 0.1, IoU 0.45, as the package), then "
                        "precision / recall / F1 at IoU >= 0.5"},
)
