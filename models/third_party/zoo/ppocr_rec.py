"""ppocr_rec: PP-OCRv4 mobile text recognizer (SVTR-LCNet, CTC over 6625 symbols), from rapidocr-onnxruntime.

Data: real English text lines (scikit-learn dataset descriptions, 1-4 words, <= 24 characters) rendered with
Pillow's built-in font, preprocessed like rapidocr_onnxruntime.ch_ppocr_rec.TextRecognizer.resize_norm_img with
rec_img_shape [3, 48, 320] (a batch whose widest line is at most 320/48 wide gets exactly width 320).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import metrics
from .common import Spec
from .ppocr_cls import RAPIDOCR, RAPIDOCR_LICENSE

SHAPE = (3, 48, 320)
OUT = "softmax_11.tmp_0"
MAX_CHARS = 24


def charset_from_model(path: Path) -> list[str]:
    """rapidocr's CTCLabelDecode: ['blank'] + model metadata 'character' lines + [' ']."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ["blank"] + meta["character"].splitlines() + [" "]


def _lines(rng, charset: set, n: int) -> list[str]:
    from . import text

    chunks = [c for c in text.load_text_chunks(rng, max_words=4) if len(c) <= MAX_CHARS and set(c) <= charset]
    if len(chunks) < n:
        raise RuntimeError(f"only {len(chunks)} usable text lines")
    return [chunks[i] for i in rng.permutation(len(chunks))[:n]]


def render_split(texts: list[str], rng) -> np.ndarray:
    from . import text

    xs = np.empty((len(texts), *SHAPE), dtype=np.float32)
    for i, t in enumerate(texts):
        bgr = np.ascontiguousarray(text.render_line(t, rng)[:, :, ::-1])
        xs[i] = text.resize_norm_img(bgr, SHAPE)
    return xs


def make_data(ctx):
    import sklearn

    charset = charset_from_model(ctx.model_path)
    (ctx.out_dir / "charset.json").write_text(json.dumps(charset, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = _lines(ctx.rng(10), set(charset[1:]), ctx.spec.n_eval + ctx.spec.n_calib)
    ev, cal = lines[:ctx.spec.n_eval], lines[ctx.spec.n_eval:]
    width = max(len(t) for t in ev)
    labels = np.array(ev, dtype=f"<U{width}")
    info = {"source": f"sklearn/datasets/descr/*.rst (scikit-learn {sklearn.__version__}), 1-4 word lines of at "
                      f"most {MAX_CHARS} characters, calib and eval disjoint",
            "font": "PIL.ImageFont.load_default(size=16..40), same augmentation as ppocr_cls (no rotation)",
            "side_files": {"charset.json": "index -> symbol of the output's last axis (0 = CTC blank)"}}
    return {"x": render_split(cal, ctx.rng(12))}, {"x": render_split(ev, ctx.rng(11)), "labels": labels}, info


def decode(probs: np.ndarray, charset: list[str]) -> list[str]:
    return ["".join(charset[i] for i in row) for row in metrics.ctc_greedy(probs.argmax(-1), blank=0)]


def metric(outputs, extras):
    charset = json.loads((Path(extras["_dir"]) / "charset.json").read_text(encoding="utf-8"))
    pred = [p.strip() for p in decode(outputs[OUT], charset)]
    return metrics.text_scores(pred, [t.strip() for t in extras["labels"]])


SPEC = Spec(
    name="ppocr_rec",
    family="OCR text recognizer: PP-LCNetV3 backbone + SVTR neck + CTC head",
    task="text-line recognition (CTC over 6625 symbols: blank, 6623 dictionary characters, space)",
    package=RAPIDOCR[0], version=RAPIDOCR[1],
    wheel_file="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
    sha256="48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    license=RAPIDOCR_LICENSE,
    homepage="https://github.com/RapidAI/RapidOCR",
    description="PaddleOCR PP-OCRv4 mobile Chinese/English recognizer as converted by RapidOCR; the character "
                "dictionary is stored in the model's metadata ('character').",
    make_data=make_data, metric=metric,
    inputs={"x": {"batch_axis": 0, "fed_shape": [None, *SHAPE]}},
    outputs={OUT: {"kind": "sequence", "blank_index": 0, "charset_file": "charset.json", "time_axis": 1,
                   "classes": 6625, "note": "softmax probabilities per time step; T = W/8 = 40 at W=320"}},
    n_calib=200, n_eval=500,
    quirks=[
        "0 initializers: all weights are Constant nodes (420 of them)",
        "opset 12; input dims 'p2o.DynamicDimension.0', 3, '?', 'p2o.DynamicDimension.1' (H is '?')",
        "SVTR attention blocks: MatMul/Softmax/ReduceMean-based LayerNorm written out (Pow, Sqrt, Div)",
        "hard-swish written out as Add, Clip, Mul, Div",
        "charset lives in metadata_props['character'] (6623 lines); output is 6625 wide",
    ],
    preprocessing={"reference": "rapidocr_onnxruntime/ch_ppocr_rec/text_recognize.py::resize_norm_img (1.4.4)",
                   "channel_order": "BGR",
                   "steps": "cv2 INTER_LINEAR resize (bit-exact numpy) to H=48 keeping aspect, W=min(320, "
                            "ceil(48*w/h)); x/255; (x-0.5)/0.5; CHW; zero-pad right to W=320"},
    labels={"labels": "the rendered transcript (fixed-width unicode); scored after CTC greedy decoding with "
                      "charset.json, leading/trailing spaces stripped"},
)
