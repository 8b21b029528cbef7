"""Index of the fetched third-party zoo, for benches and tests (numpy + onnxruntime only; no onnxcompress).

    import sys; sys.path.insert(0, "models/third_party")
    import zoo_index
    for e in zoo_index.entries():                 # .cache/third_party/<name>/ with an info.json
        print(e.name, e.info["family"], e.model)
    for e in zoo_index.entries(zoo_index.SMALL):  # the committed small copies

Each entry directory holds model.onnx, calib.npz, eval.npz and info.json (see README.md in this folder).
`run(entry, session, arrays)` feeds npz arrays to a session batch by batch (respecting the batch axis of each
input, fixed batch sizes and 0-d inputs such as silero's `sr`) and concatenates each output along its own batch
axis; `task_metric(entry, outputs, extras)` scores outputs with the member's own metric.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT = REPO_ROOT / ".cache" / "third_party"
SMALL = HERE / "small"


@dataclass(frozen=True)
class Entry:
    name: str
    dir: Path
    info: dict

    @property
    def model(self) -> Path:
        return self.dir / "model.onnx"

    @property
    def calib(self) -> Path:
        return self.dir / "calib.npz"

    @property
    def eval(self) -> Path:
        return self.dir / "eval.npz"

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.info["io"]["inputs"]]

    def batch_axis(self, name: str):
        for io in self.info["io"]["inputs"] + self.info["io"]["outputs"]:
            if io["name"] == name:
                return io.get("batch_axis", 0)
        return 0

    @property
    def fixed_batch(self):
        return self.info["io"].get("fixed_batch")

    def output_kind(self, name: str) -> str:
        return next(o["kind"] for o in self.info["io"]["outputs"] if o["name"] == name)


def entries(root: Path | str | None = None, names=None) -> list[Entry]:
    """Every <root>/<name>/info.json (sorted by name), optionally only `names`."""
    root = Path(root) if root is not None else DEFAULT
    out = []
    for info_path in sorted(root.glob("*/info.json")):
        info = json.loads(info_path.read_text())
        if names is None or info["name"] in names:
            out.append(Entry(info["name"], info_path.parent, info))
    return out


def get(name: str, root: Path | str | None = None) -> Entry:
    found = entries(root, [name])
    if not found:
        raise KeyError(f"zoo entry {name!r} not found under {root or DEFAULT} (run models/third_party/fetch.py)")
    return found[0]


# --------------------------------------------------------------------------------------------------------------
def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def n_samples(entry: Entry, arrays: dict[str, np.ndarray]) -> int:
    name = entry.input_names[0]
    return int(arrays[name].shape[entry.batch_axis(name)])


def slice_feeds(entry: Entry, arrays: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    feeds = {}
    for name in entry.input_names:
        v, ax = arrays[name], entry.batch_axis(name)
        feeds[name] = v if ax is None else np.take(v, np.arange(start, stop), axis=ax)
    return feeds


def batches(entry: Entry, arrays: dict[str, np.ndarray], batch: int):
    n = n_samples(entry, arrays)
    b = entry.fixed_batch or batch
    for s in range(0, n - (n % b if entry.fixed_batch else 0), b):
        yield slice_feeds(entry, arrays, s, min(n, s + b))


def to_array(value) -> np.ndarray:
    """ORT outputs as arrays; a ZipMap output (list of {class: prob}) becomes [N, classes] in sorted key order."""
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            keys = sorted(value[0])
            return np.asarray([[d[k] for k in keys] for d in value], dtype=np.float32)
        return np.asarray(value)
    return np.asarray(value)


def run(entry: Entry, session, arrays: dict[str, np.ndarray], batch: int = 32, output_names=None):
    """Outputs of `session` on all samples of `arrays`, each concatenated along its own batch axis."""
    names = output_names or [o.name for o in session.get_outputs()]
    parts: dict[str, list] = {n: [] for n in names}
    for feeds in batches(entry, arrays, batch):
        for n, v in zip(names, session.run(names, feeds)):
            parts[n].append(to_array(v))
    return {n: np.concatenate(p, axis=entry.batch_axis(n) or 0) for n, p in parts.items()}


def extras(entry: Entry, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The non-input keys of an eval npz (labels, targets, ...)."""
    return {k: v for k, v in arrays.items() if k not in entry.input_names}


def task_metric(entry: Entry, outputs: dict[str, np.ndarray], extra: dict[str, np.ndarray]) -> dict:
    """The member's own task metric (its zoo module's `metric`), e.g. top-1, CER, frame accuracy."""
    if entry.info.get("module") is None:  # synthetic (make_big.py): no task
        return {"fidelity_only": True}
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    mod = importlib.import_module(f"zoo.{entry.info.get('module', entry.name)}")
    return mod.SPEC.metric(outputs, {**extra, "_dir": entry.dir})


def session(path: Path, threads: int = 0):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
