"""ddddocr: the ddddocr "beta" captcha / text-line reader (conv backbone + LSTM + CTC), from ddddocr.

Data: text captchas rendered here: 4-6 random characters from [a-zA-Z0-9] in Pillow's built-in font, each glyph
jittered (size, offset, rotation, colour), with interference lines and dots, on a random light background;
rendered at 200x80, then preprocessed exactly like ddddocr.core.ocr_engine.OCREngine._preprocess_image.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np

from . import metrics
from .common import Spec

ALPHABET = string.ascii_letters + string.digits
OUT = "387"
W, H = 200, 80


def charset(ctx, which: str = "CHARSET_BETA") -> list[str]:
    from .common import wheel_text

    ns: dict = {}
    exec(wheel_text("ddddocr", "1.6.1", "ddddocr/charsets.py"), ns)  # a plain list literal module
    return ns[which]


def captcha(label: str, rng) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    bg = tuple(int(v) for v in rng.integers(190, 256, size=3))
    img = Image.new("RGB", (W, H), bg)
    step = (W - 14) / len(label)  # every glyph fits in the image
    for i, ch in enumerate(label):
        size = int(rng.integers(30, 46))
        font = ImageFont.load_default(size=size)
        glyph = Image.new("RGBA", (size + 10, size + 16), (0, 0, 0, 0))
        color = tuple(int(v) for v in rng.integers(0, 150, size=3)) + (255,)
        ImageDraw.Draw(glyph).text((5, 2), ch, font=font, fill=color)
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR, expand=True)
        y = int(rng.integers(0, max(1, H - glyph.height + 8)))
        x = int(4 + i * step + rng.integers(-3, 4))
        img.paste(glyph, (x, y), glyph)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 4))):
        pts = [(int(rng.integers(0, W)), int(rng.integers(0, H))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(v) for v in rng.integers(0, 200, size=3)), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(20, 120))):
        p = (int(rng.integers(0, W)), int(rng.integers(0, H)))
        draw.point(p, fill=tuple(int(v) for v in rng.integers(0, 256, size=3)))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    return preprocess(img)


def preprocess(img) -> np.ndarray:
    """OCREngine._preprocess_image (default model): resize to height 64 keeping aspect (PIL LANCZOS),
    convert('L'), /255, [1, 1, 64, w]."""
    from PIL import Image

    tw = int(img.size[0] * (64 / img.size[1]))
    g = img.resize((tw, 64), Image.LANCZOS).convert("L")
    return (np.asarray(g).astype(np.float32) / 255.0)[None]


def split(n: int, rng):
    labels = ["".join(rng.choice(list(ALPHABET), int(rng.integers(4, 7)))) for _ in range(n)]
    xs = np.stack([captcha(t, rng) for t in labels]).astype(np.float32)
    return xs, np.array(labels, dtype="<U6")


def make_data(ctx, which: str = "CHARSET_BETA"):
    cs = charset(ctx, which)
    missing = [c for c in ALPHABET if c not in cs]
    if missing:
        raise RuntimeError(f"characters {missing} are not in ddddocr's {which}")
    (ctx.out_dir / "charset.json").write_text(json.dumps(cs, ensure_ascii=False) + "\n", encoding="utf-8")
    x_cal, _ = split(ctx.spec.n_calib, ctx.rng(50))
    x_ev, y_ev = split(ctx.spec.n_eval, ctx.rng(51))
    info = {"source": "captchas rendered here with PIL.ImageFont.load_default(size=30..45), evenly spaced with "
                      "+-3 px jitter: 4-6 characters of "
                      "[a-zA-Z0-9], glyph rotation +-25 deg, 1-3 lines, 20-120 dots, optional blur; 200x80 -> 160x64",
            "side_files": {"charset.json": f"ddddocr {which} (8210 entries, index 0 = '' = CTC blank)"}}
    return {"input1": x_cal}, {"input1": x_ev, "labels": y_ev}, info


def metric(outputs, extras):
    cs = json.loads((Path(extras["_dir"]) / "charset.json").read_text(encoding="utf-8"))
    logits = outputs[OUT]  # [T, N, C]
    pred = ["".join(cs[i] for i in row) for row in metrics.ctc_greedy(logits.argmax(-1).T, blank=0)]
    truth = [str(t) for t in extras["labels"]]
    res = metrics.text_scores(pred, truth)
    res["exact_match_case_insensitive"] = float(np.mean([p.lower() == t.lower() for p, t in zip(pred, truth)]))
    return res


SPEC = Spec(
    name="ddddocr",
    family="conv + LSTM captcha reader (CRNN-style: conv backbone with SiLU, 1 LSTM, Gemm classifier, CTC)",
    task="captcha / short text recognition (CTC over 8210 symbols)",
    package="ddddocr", version="1.6.1",
    wheel_file="ddddocr/common.onnx",
    sha256="33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
    license="MIT (wheel METADATA and LICENSE file, sml2h3)",
    homepage="https://github.com/sml2h3/ddddocr",
    description="ddddocr's 'beta' OCR model (DdddOcr(beta=True)); the package's default is common_old.onnx, an "
                "already dynamically-quantized (ConvInteger / DynamicQuantizeLSTM) variant, not used here.",
    make_data=make_data, metric=metric,
    inputs={"input1": {"batch_axis": 0}},
    outputs={OUT: {"kind": "sequence", "batch_axis": 1, "time_axis": 0, "blank_index": 0, "classes": 8210,
                   "charset_file": "charset.json",
                   "note": "raw logits [T, N, 8210] (T = W/8 = 20 at W=160): sequence-first, no softmax"}},
    fixed_batch=1, n_calib=200, n_eval=300,
    quirks=[
        "fixed batch 1 (input1 [1, 1, 64, 'image_width'])",
        "output '387' is declared [1, 'seqlen'] but is really [T, 1, 8210] (ORT warns on every run)",
        "sequence-first output layout (time on axis 0, batch on axis 1)",
        "opset 12, IR 6, exported by PyTorch 1.9; 54 MB, mostly the LSTM and the 8210-way Gemm",
        "SiLU written out as Sigmoid + Mul",
    ],
    preprocessing={"reference": "ddddocr/core/ocr_engine.py::OCREngine._preprocess_image (1.6.1, default model "
                                "path)",
                   "steps": "PIL resize to (int(w*64/h), 64) with LANCZOS, convert('L'), /255, [1, 1, 64, W]"},
    labels={"labels": "the captcha text (fixed-width unicode <U6, case-sensitive)",
            "metric": "CTC greedy decoding (merge repeats, drop index 0) with CHARSET_BETA; CER, exact match"},
)
