"""ppocr_cls: PaddleOCR v2.0 mobile text-line direction classifier (0 / 180 degrees), from rapidocr-onnxruntime.

Data and preprocessing are unchanged from the first fetcher (identical arrays): English text lines from
scikit-learn's dataset descriptions, rendered with Pillow's built-in font, half of them rotated by 180 degrees,
preprocessed like rapidocr_onnxruntime.ch_ppocr_cls.TextClassifier.resize_norm_img.
"""

from __future__ import annotations

from . import metrics
from .common import Spec

SHAPE = (3, 48, 192)  # rapidocr_onnxruntime/config.yaml, Cls.cls_image_shape
RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4")
RAPIDOCR_LICENSE = ("Apache-2.0 (wheel METADATA 'License:' field; the wheel has no LICENSE file; original models: "
                    "PaddleOCR, Apache-2.0)")


def make_data(ctx):
    import PIL
    import sklearn

    from . import text

    seed = ctx.seed
    rng = ctx.rng(0)
    chunks = text.load_text_chunks(rng)
    order = rng.permutation(len(chunks))
    n_eval, n_calib = ctx.spec.n_eval, ctx.spec.n_calib  # always the full split: small copies take a prefix
    if len(chunks) < n_eval + n_calib:
        raise RuntimeError(f"only {len(chunks)} text lines available")
    eval_texts = [chunks[i] for i in order[:n_eval]]
    calib_texts = [chunks[i] for i in order[n_eval:n_eval + n_calib]]
    x_eval, y_eval = text.make_split(eval_texts, ctx.rng(1), SHAPE)
    x_cal, _ = text.make_split(calib_texts, ctx.rng(2), SHAPE)
    info = {
        "source": f"sklearn/datasets/descr/*.rst (scikit-learn {sklearn.__version__}), 1-{text.MAX_WORDS} word "
                  "lines, duplicates removed, calib and eval lines disjoint",
        "font": f"PIL.ImageFont.load_default(size=16..40) (Aileron Regular, Pillow {PIL.__version__})",
        "augment": "random gray/tinted fg/bg, margins, gaussian blur<=0.8, noise sigma<=6; exactly half of each "
                   "full split rotated by 180 degrees",
        "seed_note": f"text order rng seed {seed}, eval render seed {seed + 1}, calib render seed {seed + 2}",
    }
    return {"x": x_cal}, {"x": x_eval, "labels": y_eval}, info


def metric(outputs, extras):
    return metrics.top1(outputs["save_infer_model/scale_0.tmp_1"], extras["labels"])


SPEC = Spec(
    name="ppocr_cls",
    family="mobile CNN (MobileNetV3-small x0.35, squeeze-excite, hard-swish), image classifier",
    task="text-line direction classification (2 classes)",
    package=RAPIDOCR[0], version=RAPIDOCR[1],
    wheel_file="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
    sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    license=RAPIDOCR_LICENSE,
    homepage="https://github.com/RapidAI/RapidOCR",
    description="PaddleOCR v2.0 mobile text-line direction classifier (MobileNetV3-small, scale 0.35), used by "
                "RapidOCR between detection and recognition to flip upside-down text lines.",
    make_data=make_data, metric=metric,
    inputs={"x": {"batch_axis": 0, "fed_shape": [None, *SHAPE]}},
    outputs={"save_infer_model/scale_0.tmp_1": {"kind": "class_probabilities", "classes": 2}},
    n_calib=200, n_eval=500, small=(32, 64),
    quirks=[
        "0 initializers: every weight, BN statistic and bias is a Constant node (about 134k values)",
        "BatchNormalization not folded into Conv",
        "hard-swish written out as Add, Clip(0,6), Mul, Div; 9 squeeze-excite blocks with HardSigmoid",
        "flatten before the FC is Reshape(x, Concat(Cast(Slice(Shape(x))), ...)): shape inference loses the shape",
        "batch written as dim_value -1 instead of a dim_param; H and W both named '?'",
        "opset 11 (below 13)",
    ],
    preprocessing={
        "reference": "rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py::TextClassifier.resize_norm_img (1.4.4)",
        "channel_order": "BGR",
        "steps": "bilinear resize (cv2 INTER_LINEAR semantics, numpy re-implementation, bit-exact) to H=48 keeping "
                 "aspect, W=min(192, ceil(48*w/h)); x/255; (x-0.5)/0.5; CHW; zero-pad right to W=192",
    },
    labels={"0": "text upright (rapidocr label '0')", "1": "text rotated by 180 degrees (rapidocr label '180')",
            "rapidocr_label_list": ["0", "180"]},
)
