"""ppocr_det: PP-OCRv4 mobile DB text detector (probability map), from rapidocr-onnxruntime.

Data: 320x320 tiles of synthetic pages (real English text from scikit-learn's dataset descriptions in Pillow's
built-in font, some with a real photo from skimage.data as a figure), with the ground-truth text-line boxes.
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .common import Spec
from .ppocr_cls import RAPIDOCR, RAPIDOCR_LICENSE

SIZE = 320
MAX_BOXES = 8
OUT = "sigmoid_0.tmp_0"
THRESH = 0.3  # rapidocr config Det.thresh


def normalize(rgb: np.ndarray) -> np.ndarray:
    """rapidocr DetPreProcess on a BGR image already at a multiple of 32: (x/255 - 0.5)/0.5, CHW."""
    bgr = rgb[:, :, ::-1].astype(np.float32)
    return ((bgr * np.float32(1 / 255.0) - np.float32(0.5)) / np.float32(0.5)).transpose(2, 0, 1)


def split(n: int, rng, vocab, photos):
    xs = np.empty((n, 3, SIZE, SIZE), np.float32)
    boxes = np.full((n, MAX_BOXES, 4), -1.0, np.float32)
    for i in range(n):
        tile, b = _tile(vocab, photos, rng)
        xs[i] = normalize(tile)
        boxes[i, :len(b)] = b
    return xs, boxes


def _tile(vocab, photos, rng):
    from . import pages

    photo = photos[int(rng.integers(len(photos)))] if photos else None
    return pages.text_tile(SIZE, vocab, rng, photo)


def make_data(ctx):
    import sklearn
    import skimage

    from . import pages

    vocab = pages.words(ctx.rng(20))
    photos = pages.photos()
    x_cal, _ = split(ctx.spec.n_calib, ctx.rng(21), vocab, photos)
    x_ev, b_ev = split(ctx.spec.n_eval, ctx.rng(22), vocab, photos)
    info = {"source": f"synthetic 320x320 page tiles: words from sklearn/datasets/descr/*.rst (scikit-learn "
                      f"{sklearn.__version__}) in PIL.ImageFont.load_default(size=14..32), half with a skimage.data "
                      f"photo (scikit-image {skimage.__version__}) pasted in as a figure; light blur and noise",
            "gt_boxes": f"eval.npz['gt_boxes'] float32 [N, {MAX_BOXES}, 4]: text-line boxes xyxy in pixels, rows of "
                        "-1 are padding (no class labels: the task label is the boxes)",
            "deviation": "rapidocr (limit_type 'min', limit_side_len 736) would upscale a 320 px image to 736; "
                         "the tiles stand for 320x320 windows of a page at the model's working scale, to keep the "
                         "npz small (text height 14-32 px)"}
    return {"x": x_cal}, {"x": x_ev, "gt_boxes": b_ev}, info


def boxes_from_map(prob: np.ndarray, thresh: float = THRESH, min_area: int = 16) -> np.ndarray:
    """Simplified DBPostProcess: connected components of prob > thresh, each box grown by the DB unclip
    distance (area * 1.6 / perimeter).  rapidocr uses cv2 contours + pyclipper; this keeps numpy/scipy only."""
    from scipy import ndimage

    lab, n = ndimage.label(prob > thresh)
    out = []
    for sl in ndimage.find_objects(lab):
        if sl is None:
            continue
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        w, h = x1 - x0, y1 - y0
        if w * h < min_area or min(w, h) < 3:
            continue
        d = w * h * 1.6 / (2 * (w + h))
        out.append((x0 - d, y0 - d, x1 + d, y1 + d))
    return np.asarray(out, np.float32).reshape(-1, 4)


def metric(outputs, extras):
    prob = outputs[OUT][:, 0]
    gts = metrics.gt_boxes(extras["gt_boxes"])
    dets = [boxes_from_map(p) for p in prob]
    res = metrics.detection_pr(dets, gts, 0.5)
    ious = []
    for p, g in zip(prob, gts):
        mask = np.zeros(p.shape, bool)
        for x0, y0, x1, y1 in g.astype(int):
            mask[y0:y1, x0:x1] = True
        ious.append(metrics.binary_iou(p > THRESH, mask))
    return {**{f"box_{k}": v for k, v in res.items()}, "map_iou_vs_gt_boxes": float(np.mean(ious))}


SPEC = Spec(
    name="ppocr_det",
    family="segmentation-style text detector: PP-LCNetV3-ish backbone + FPN (Resize, ConvTranspose) + DB head",
    task="text detection (per-pixel text probability map, DB)",
    package=RAPIDOCR[0], version=RAPIDOCR[1],
    wheel_file="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
    sha256="d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    license=RAPIDOCR_LICENSE,
    homepage="https://github.com/RapidAI/RapidOCR",
    description="PaddleOCR PP-OCRv4 mobile text detector (Differentiable Binarization) as converted by RapidOCR.",
    make_data=make_data, metric=metric,
    inputs={"x": {"batch_axis": 0, "fed_shape": [None, 3, SIZE, SIZE]}},
    outputs={OUT: {"kind": "dense_map", "threshold": THRESH, "note": "sigmoid text probability [N, 1, H, W]"}},
    n_calib=64, n_eval=100,
    quirks=[
        "0 initializers: all weights are Constant nodes (342)",
        "opset 12; fully dynamic NCHW input named 'p2o.DynamicDimension.*'",
        "Resize (nearest, scales) and ConvTranspose in the FPN/head; only 3 BatchNormalization left (head)",
        "hard-swish written out as Add, Clip, Mul, Div; SE blocks with HardSigmoid",
    ],
    preprocessing={"reference": "rapidocr_onnxruntime/ch_ppocr_det/utils.py::DetPreProcess (1.4.4)",
                   "channel_order": "BGR",
                   "steps": "(x/255 - 0.5)/0.5, HWC->CHW; tiles are 320x320 (already a multiple of 32, no resize)"},
    labels={"gt_boxes": "text-line boxes (xyxy px, -1 padded); metric: boxes from connected components of "
                        "prob > 0.3 grown by the DB unclip distance, matched at IoU >= 0.5, plus pixel IoU of the "
                        "thresholded map vs the filled GT boxes"},
)
