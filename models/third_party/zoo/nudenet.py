"""nudenet: NudeNet v3 detector (Ultralytics YOLOv8n, 18 body-part classes, 320x320), from nudenet.

Data: augmented crops (seeded scale / crop / flip / colour jitter) of skimage.data's photos, people among them
(astronaut: FACE_FEMALE, camera: FACE_MALE) and scenes without people (coffee, chelsea, rocket, ...).  There
are no ground-truth boxes: the recorded fp32 metric describes the detections (fidelity-only member); the bench
compares a compressed model's raw output and detections with fp32's.  Preprocessing as nudenet._read_image
(pad right/bottom to a square with black, cv2.dnn.blobFromImage: resize 320 bilinear, /255, BGR->RGB).
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .common import Spec

SIZE = 320
OUT = "output0"
LABELS = ["FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
          "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
          "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
          "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED"]
PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")


def preprocess(bgr: np.ndarray) -> np.ndarray:
    from .text import cv2_resize_linear

    m = max(bgr.shape[:2])
    sq = np.zeros((m, m, 3), np.uint8)
    sq[:bgr.shape[0], :bgr.shape[1]] = bgr
    rgb = cv2_resize_linear(sq, SIZE, SIZE)[:, :, ::-1]
    return (rgb.astype(np.float32) * np.float32(1 / 255.0)).transpose(2, 0, 1)


def augment(img: np.ndarray, rng) -> np.ndarray:
    h, w = img.shape[:2]
    s = rng.uniform(0.55, 1.0)
    ch, cw = int(h * s * rng.uniform(0.8, 1.0)), int(w * s * rng.uniform(0.8, 1.0))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = img[y:y + ch, x:x + cw].astype(np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    out = out * rng.uniform(0.75, 1.25, size=3) + rng.uniform(-20, 20)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def split(n: int, rng, photos: list[np.ndarray]) -> np.ndarray:
    xs = np.empty((n, 3, SIZE, SIZE), np.float32)
    for i in range(n):
        rgb = augment(photos[i % len(photos)] if i < len(photos) else photos[int(rng.integers(len(photos)))], rng)
        xs[i] = preprocess(np.ascontiguousarray(rgb[:, :, ::-1]))
    return xs


def make_data(ctx):
    import skimage
    from skimage import data

    photos = []
    for name in PHOTOS:
        img = np.asarray(getattr(data, name)())
        photos.append(np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3])
    info = {"source": f"seeded augmentations (crop 55-100%, flip, per-channel gain, offset) of skimage.data "
                      f"{PHOTOS} (scikit-image {skimage.__version__}); no labels (fidelity-only member)"}
    return {"images": split(ctx.spec.n_calib, ctx.rng(110), photos)}, \
        {"images": split(ctx.spec.n_eval, ctx.rng(111), photos)}, info


def detections(out: np.ndarray, score_thr: float = 0.2, nms_thr: float = 0.45):
    """nudenet._postprocess in input pixels: [N, 22, A] -> per image (boxes xyxy, class ids)."""
    res = []
    for o in out:
        o = o.T
        cls = o[:, 4:].argmax(1)
        sc = o[:, 4:].max(1)
        keep = sc >= score_thr
        xywh, sc, cls = o[keep, :4], sc[keep], cls[keep]
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
        k = metrics.nms(boxes, sc, nms_thr) if len(boxes) else []
        res.append((boxes[k], cls[k]))
    return res


def metric(outputs, extras):
    dets = detections(outputs[OUT])
    counts = np.bincount(np.concatenate([c for _, c in dets]).astype(int), minlength=len(LABELS))
    return {"fidelity_only": True, "mean_detections_per_image": float(np.mean([len(b) for b, _ in dets])),
            "detections_by_class": {LABELS[i]: int(c) for i, c in enumerate(counts) if c}}


SPEC = Spec(
    name="nudenet",
    family="YOLO-style detector: Ultralytics YOLOv8n (C2f, SPPF, anchor-free DFL head)",
    task="detection of 18 body-part classes (used here on benign photos: faces, scenes)",
    package="nudenet", version="3.4.2",
    wheel_file="nudenet/320n.onnx",
    sha256="c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
    license="AGPL-3.0 (wheel LICENSE file and the model's own metadata 'license': Ultralytics AGPL-3.0; the wheel "
            "METADATA field says MIT). Not redistributed here: fetched at run time only.",
    homepage="https://github.com/notAI-tech/NudeNet",
    description="NudeNet 3.4 320n detector, an Ultralytics 8.2.46 YOLOv8n export (opset 17) with dynamic batch "
                "and spatial dims.",
    make_data=make_data, metric=metric,
    inputs={"images": {"batch_axis": 0, "fed_shape": [None, 3, SIZE, SIZE]}},
    outputs={OUT: {"kind": "dense_map", "note": "[N, 22, A]: xywh (input px) + 18 class scores (sigmoid) per "
                                                "anchor, A = 2100 at 320x320"}},
    n_calib=64, n_eval=100,
    quirks=[
        "output dim is a symbolic expression of height/width ('(floor(floor(floor(height/2 - 1/2)/2)/2) + 1)*...')",
        "dynamic batch, height and width; anchors / strides computed in-graph (Shape, Range, Expand, "
        "ConstantOfShape)",
        "DFL head: Softmax over 16 bins + 1x1 Conv with fixed weights; SiLU as Sigmoid + Mul",
        "license conflict between the wheel METADATA (MIT) and its LICENSE file / model metadata (AGPL-3.0)",
    ],
    preprocessing={"reference": "nudenet/nudenet.py::_read_image (3.4.2)",
                   "steps": "BGR image padded right/bottom to a square (black), cv2.dnn.blobFromImage(1/255, "
                            "(320, 320), swapRB=True): bilinear resize (bit-exact numpy cv2 INTER_LINEAR), RGB, "
                            "/255, NCHW"},
    labels={"none": "no ground truth; class names: " + ", ".join(LABELS)},
)
