"""magika: Google's Magika file content-type classifier (standard_v3_3, 214 types, int32 byte input).

Data: real files on this machine (the Python installation, the project's dependencies, /usr/share, /etc ...),
labelled with magika's own type names through their extension; features extracted exactly like
magika.Magika._extract_features_from_seekable (first/last 4096 bytes, whitespace-stripped, 1024 + 1024 ints,
padding 256).  Which files are picked depends on what is installed; the pick is seeded and sorted, so a rerun
on the same machine gives the same bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from . import metrics
from .common import REPO_ROOT, Spec

VERSION = "1.0.3"
PLATFORM = ["manylinux_2_28_x86_64"]
CONFIG = "magika/models/standard_v3_3/config.min.json"
EXT = {"py": "python", "json": "json", "html": "html", "htm": "html", "xml": "xml", "js": "javascript",
       "css": "css", "csv": "csv", "md": "markdown", "rst": "rst", "txt": "txt", "c": "c", "h": "c",
       "cpp": "cpp", "sh": "shell", "pl": "perl", "tcl": "tcl", "sql": "sql", "svg": "svg", "png": "png",
       "jpg": "jpeg", "gif": "gif", "bmp": "bmp", "tif": "tiff", "tiff": "tiff", "wav": "wav", "ttf": "ttf",
       "gz": "gzip", "bz2": "bzip", "xz": "xz", "tar": "tar", "whl": "zip", "zip": "zip", "pdf": "pdf",
       "pem": "pem", "so": "elf", "pyc": "pythonbytecode", "java": "java", "rb": "ruby", "go": "go", "rs": "rust",
       "yaml": "yaml", "yml": "yaml", "toml": "toml", "ini": "ini", "po": "po", "ipynb": "ipynb", "onnx": "onnx",
       "npy": "npy", "npz": "npz", "pyi": "python", "cfg": "ini", "jar": "jar", "tsv": "tsv", "lua": "lua"}
SITE = Path(sys.prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")
# the base interpreter, the project's own dependencies in the venv (not whatever else is installed there) and
# Debian's shared folders; installing other tools into the venv leaves the pick unchanged
ROOTS = (Path(sys.base_prefix), *(SITE / p for p in ("numpy", "onnx", "onnxruntime", "sklearn", "skimage", "scipy",
                                                     "PIL", "typer", "rich")),
         Path("/usr/share"), Path("/usr/include"), Path("/usr/lib/python3"), Path("/etc"),
         Path("/usr/lib/x86_64-linux-gnu"))
PER_LABEL = (6, 15)  # calib, eval files per type at most


def config() -> dict:
    from .common import wheel_text

    return json.loads(wheel_text("magika", VERSION, CONFIG, PLATFORM))


def features(path: Path, cfg: dict) -> np.ndarray:
    """magika._extract_features_from_seekable for beg_size=end_size=1024, mid_size=0, block_size=4096."""
    size = path.stat().st_size
    n = min(cfg["block_size"], size)
    with open(path, "rb") as f:
        beg = f.read(n).lstrip()
        f.seek(size - n)
        end = f.read(n).rstrip()
    pad, bs, es = cfg["padding_token"], cfg["beg_size"], cfg["end_size"]
    beg_ints = list(beg[:bs]) + [pad] * max(0, bs - len(beg))
    end_ints = [pad] * max(0, es - len(end)) + list(end[len(end) - es:] if len(end) > es else end)
    return np.asarray(beg_ints + end_ints, dtype=np.int32)


def candidates() -> dict[str, list[Path]]:
    skip = (REPO_ROOT / ".cache").resolve()
    found: dict[str, set] = {}
    for root in ROOTS:
        if not root.exists():
            continue
        for p in root.rglob("*"):
            ext = p.suffix[1:].lower()
            if ext not in EXT or not p.is_file() or p.is_symlink():
                continue
            try:
                if p.resolve().is_relative_to(skip) or p.stat().st_size < 64:
                    continue
            except OSError:
                continue
            found.setdefault(EXT[ext], set()).add(p.resolve())
    return {k: sorted(v) for k, v in sorted(found.items())}


def make_data(ctx):
    cfg = config()
    space = cfg["target_labels_space"]
    (ctx.out_dir / "labels.json").write_text(json.dumps(space) + "\n")
    rng = ctx.rng(70)
    cal, ev = [], []
    for label, paths in candidates().items():
        pick = [paths[i] for i in rng.permutation(len(paths))[:sum(PER_LABEL)]]
        k = min(PER_LABEL[0], len(pick) // 3)
        cal += [(p, label) for p in pick[:k]]
        ev += [(p, label) for p in pick[k:k + PER_LABEL[1]]]
    cal = [cal[i] for i in rng.permutation(len(cal))[:ctx.spec.n_calib]]
    ev = [ev[i] for i in rng.permutation(len(ev))[:ctx.spec.n_eval]]
    xc = np.stack([features(p, cfg) for p, _ in cal])
    xe = np.stack([features(p, cfg) for p, _ in ev])
    ye = np.array([space.index(lab) for _, lab in ev], np.int64)
    counts = {lab: sum(1 for _, x in ev if x == lab) for lab in sorted({x for _, x in ev})}
    info = {"source": "real files of this machine under " + ", ".join(str(r) for r in ROOTS) + " (the repo's "
                      ".cache excluded), >= 64 bytes, type from the extension (map in zoo/magika.py)",
            "eval_types": counts, "calib_files": len(cal),
            "side_files": {"labels.json": "index -> magika content type (target_labels_space)"},
            "determinism": "depends on the installed files; seeded pick from sorted paths"}
    return {"bytes": xc}, {"bytes": xe, "labels": ye}, info


def metric(outputs, extras):
    return {k: v for k, v in metrics.top1(outputs["target_label"], extras["labels"]).items()
            if k != "per_class_recall"}


SPEC = Spec(
    name="magika",
    family="byte-sequence CNN/attention-free classifier (embedding via one-hot Equal, Conv1D, GlobalMaxPool, "
           "dense layers with LayerNorm written out)",
    task="file content-type classification (214 classes) from raw bytes",
    package="magika", version=VERSION, platform=PLATFORM,
    wheel_file="magika/models/standard_v3_3/model.onnx",
    sha256="fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c",
    license="Apache-2.0 (wheel METADATA; Google)",
    homepage="https://github.com/google/magika",
    description="Magika standard_v3_3 model (Keras, exported with tf2onnx 1.16.1), as shipped in the magika wheel "
                "(platform wheel: the model file is the same in every platform's wheel).",
    make_data=make_data, metric=metric,
    inputs={"bytes": {"batch_axis": 0}},
    outputs={"target_label": {"kind": "class_probabilities", "classes": 214, "labels_file": "labels.json",
                              "note": "softmax over target_labels_space"}},
    n_calib=200, n_eval=500,
    quirks=[
        "int32 input (byte values 0..255, 256 = padding): no float input to calibrate on the way in",
        "opset 15 plus an ai.onnx.ml opset import (tf2onnx)",
        "dims named 'unk__214' / 'unk__215'",
        "one-hot encoding built from Equal/Cast/Expand; LayerNorm as ReduceSum/Sub/Mul/Sqrt/Reciprocal",
        "mixed int32 / int64 / float initializers",
    ],
    preprocessing={"reference": "magika/magika.py::Magika._extract_features_from_seekable (1.0.3)",
                   "steps": "read min(4096, size) bytes from the start (lstrip whitespace) and from the end (rstrip); "
                            "first 1024 of the start (pad 256 at the end), last 1024 of the end (pad 256 at the "
                            "front); concatenate -> int32 [2048]"},
    labels={"labels": "index into labels.json (magika target_labels_space), from the file extension"},
)
