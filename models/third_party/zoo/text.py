"""Real English text lines and their rendering, shared by the OCR members.

Text: sentences from the dataset descriptions that ship with scikit-learn (``sklearn/datasets/descr/*.rst``),
rst markup stripped, split into short lines.  Rendering: Pillow's built-in scalable font
(``ImageFont.load_default(size=...)``, Aileron Regular, embedded in Pillow >= 10.1).  ``cv2_resize_linear`` is a
bit-exact numpy re-implementation of ``cv2.resize`` (INTER_LINEAR, uint8), so OpenCV is not needed.
Moved unchanged from the first version of fetch.py, so ppocr_cls's data is identical.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

MAX_WORDS = 7  # words per rendered text line


# --------------------------------------------------------------------------
# real text
# --------------------------------------------------------------------------
_RST_SKIP = re.compile(r"^\s*(\.\.|:[A-Za-z ]+:|[=\-~^*#+|]{3,}|>>>|\|)")


def load_text_chunks(rng: np.random.Generator, max_words: int = MAX_WORDS) -> list[str]:
    """Sentences from scikit-learn's bundled dataset descriptions, split into
    short text lines of 1-max_words words (like OCR detection crops)."""
    import sklearn

    descr = Path(sklearn.__file__).parent / "datasets" / "descr"
    words: list[str] = []
    for f in sorted(descr.glob("*.rst")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip() or _RST_SKIP.match(line):
                continue
            if re.search(r"={3,}|-{3,}", line):  # table rules
                continue
            line = re.sub(r":[a-z]+:`[~!]?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", line)  # :role:`x`
            line = re.sub(r"`([^`<]*?)\s*<[^>]*>`_*", r"\1", line)  # `text <url>`_
            line = re.sub(r"[`*]+", "", line)  # remaining rst inline markup
            line = "".join(ch for ch in line if 32 <= ord(ch) < 127)
            words.extend(line.split())
    chunks: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(words):
        n = int(rng.integers(1, max_words + 1))
        chunk = " ".join(words[i : i + n])
        i += n
        if sum(ch.isalnum() for ch in chunk) >= 3 and chunk not in seen:  # unique lines
            seen.add(chunk)
            chunks.append(chunk)
    return chunks


# --------------------------------------------------------------------------
# rendering & rapidocr-identical preprocessing
# --------------------------------------------------------------------------
def render_line(text: str, rng: np.random.Generator) -> np.ndarray:
    """Render one text line as an RGB uint8 crop (HxWx3), like a detector crop."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    size = int(rng.integers(16, 41))
    font = ImageFont.load_default(size=size)
    bg_level = int(rng.integers(170, 256))
    fg_level = int(rng.integers(0, 90))
    tint = rng.integers(-25, 26, size=3)
    bg = tuple(int(np.clip(bg_level + t, 0, 255)) for t in tint)
    fg = tuple(int(np.clip(fg_level + t, 0, 255)) for t in rng.integers(-20, 21, size=3))

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    mx = int(rng.integers(1, max(2, size // 3)))
    my_top = int(rng.integers(1, max(2, size // 4)))
    my_bot = int(rng.integers(1, max(2, size // 4)))
    w = (right - left) + 2 * mx
    h = (bottom - top) + my_top + my_bot
    img = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(img).text((mx - left, my_top - top), text, font=font, fill=fg)
    blur = float(rng.uniform(0.0, 0.8))
    if blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0.0, float(rng.uniform(0.0, 6.0)), size=arr.shape)
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _linear_coefs(n_in: int, n_out: int, clamp_frac: bool):
    """Source indices and 11-bit fixed-point weights of OpenCV's INTER_LINEAR
    (cv::resize, uint8 path) along one axis.  OpenCV zeroes the fraction at
    clamped borders along x but only clamps the row index along y."""
    scale = 1.0 / (n_out / n_in)
    f = ((np.arange(n_out) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    if clamp_frac:
        neg = s < 0
        f[neg] = 0
        s[neg] = 0
        hi = s >= n_in - 1
        f[hi] = 0
        s[hi] = n_in - 1
    c0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)
    c1 = np.rint(f * np.float32(2048)).astype(np.int64)
    return np.clip(s, 0, n_in - 1), np.clip(s + 1, 0, n_in - 1), c0, c1


def cv2_resize_linear(img: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """numpy re-implementation of ``cv2.resize(img, (out_w, out_h))`` (default
    INTER_LINEAR) for uint8 HxWxC images.  Bit-exact against
    opencv-python-headless 4.10.0 and 5.0.0 on the crops generated here and on
    random sizes (checked while writing this script), so OpenCV is not needed."""
    h, w = img.shape[:2]
    x = img.astype(np.int64)
    x0, x1, a0, a1 = _linear_coefs(w, out_w, clamp_frac=True)
    d = x[:, x0] * a0[None, :, None] + x[:, x1] * a1[None, :, None]  # horizontal pass
    y0, y1, b0, b1 = _linear_coefs(h, out_h, clamp_frac=False)
    b0 = b0[:, None, None]
    b1 = b1[:, None, None]
    r = (((b0 * (d[y0] >> 4)) >> 16) + ((b1 * (d[y1] >> 4)) >> 16) + 2) >> 2  # vertical pass
    return np.clip(r, 0, 255).astype(np.uint8)


def resize_norm_img(img_bgr: np.ndarray, shape=(3, 48, 192)) -> np.ndarray:
    """Same as rapidocr_onnxruntime TextClassifier.resize_norm_img (1.4.4)."""
    img_c, img_h, img_w = shape
    h, w = img_bgr.shape[:2]
    ratio = w / float(h)
    if math.ceil(img_h * ratio) > img_w:
        resized_w = img_w
    else:
        resized_w = int(math.ceil(img_h * ratio))
    resized = cv2_resize_linear(img_bgr, resized_w, img_h).astype("float32")
    resized = resized.transpose((2, 0, 1)) / 255
    resized -= 0.5
    resized /= 0.5
    out = np.zeros((img_c, img_h, img_w), dtype=np.float32)
    out[:, :, :resized_w] = resized
    return out


def make_split(texts: list[str], rng: np.random.Generator, shape) -> tuple[np.ndarray, np.ndarray]:
    n = len(texts)
    labels = np.zeros(n, dtype=np.int64)
    labels[rng.permutation(n)[: n // 2]] = 1  # exactly half rotated by 180 deg
    xs = np.empty((n, *shape), dtype=np.float32)
    for i, t in enumerate(texts):
        rgb = render_line(t, rng)
        if labels[i] == 1:
            rgb = np.ascontiguousarray(rgb[::-1, ::-1])  # 180 degree rotation
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # rapidocr feeds cv2 BGR images
        xs[i] = resize_norm_img(bgr, shape)
    return xs, labels
