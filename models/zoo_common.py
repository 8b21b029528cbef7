"""Shared helpers for the model-zoo build scripts (training, export, checks).

Only the build scripts import this module; it needs ``torch`` (the ``models``
extra), ``onnx``, ``onnxruntime`` and ``mlxtend``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import os
import random
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CALIB_DIR = os.path.join(ROOT, "calibration")
MANIFEST = os.path.join(HERE, "MANIFEST.json")
OPSET = 17

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def seed_everything(seed: int = 0, threads: int = 2) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def augment(x01: torch.Tensor, gen: torch.Generator, max_rot_deg=12.0,
            max_shift_px=2.5, scale=(0.9, 1.1)) -> torch.Tensor:
    """Random small rotation / shift / scale of a [0,1] image batch (N,1,28,28)."""
    n = x01.shape[0]
    u = torch.rand(n, 4, generator=gen)
    ang = (u[:, 0] * 2 - 1) * math.radians(max_rot_deg)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    tx = (u[:, 2] * 2 - 1) * max_shift_px * 2 / 28
    ty = (u[:, 3] * 2 - 1) * max_shift_px * 2 / 28
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1),
                         torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def train(model, splits, *, epochs, lr, weight_decay, batch_size=64,
          label_smoothing=0.05, warmup_epochs=1, seed=0, aug_kwargs=None,
          log=print):
    """AdamW + linear warmup + cosine decay, augmented training on train split."""
    from mnist_data import MEAN, STD

    xtr = torch.from_numpy(splits["train_x01"])
    ytr = torch.from_numpy(splits["train_y"])
    xev = torch.from_numpy((splits["eval_x01"] - MEAN) / STD)
    yev = splits["eval_y"]
    gen = torch.Generator().manual_seed(seed)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "pos_embed" in name or "cls_token" in name
         else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    steps_per_epoch = math.ceil(len(xtr) / batch_size)
    total = epochs * steps_per_epoch
    warm = warmup_epochs * steps_per_epoch

    def lr_at(step):
        if step < warm:
            return lr * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return lr * 0.5 * (1 + math.cos(math.pi * t))

    step = 0
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        tot_loss = 0.0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            xb = augment(xtr[idx], gen, **(aug_kwargs or {}))
            xb = (xb - MEAN) / STD
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(model(xb), ytr[idx],
                                   label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(idx)
            step += 1
        acc = torch_accuracy(model, xev, yev)
        log(f"epoch {ep + 1:3d}/{epochs}  loss {tot_loss / len(xtr):.4f}  "
            f"eval(torch) {acc * 100:.2f}%  [{time.time() - t0:.0f}s]")
    model.eval()
    return time.time() - t0


@torch.no_grad()
def torch_logits(model, x, bs=500):
    model.eval()
    return torch.cat([model(x[i:i + bs]) for i in range(0, len(x), bs)])


def torch_accuracy(model, x, y):
    return float((torch_logits(model, x).argmax(1).numpy() == y).mean())


def export_onnx(model, path):
    """Legacy TorchScript exporter, opset 17, dynamic batch, BN kept unfused."""
    import onnx

    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), path, dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            # PRESERVE (model in eval mode) skips the eval-mode Conv+BN fusion
            # peephole, so BatchNormalization stays a separate inference-mode node.
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True, export_params=True,
            keep_initializers_as_inputs=False)
    m = onnx.load(path)
    m = clean_graph(m)
    m.producer_name = "onnxcompress-model-zoo"
    m.producer_version = f"torch {torch.__version__}"
    onnx.save(m, path)  # single file, weights embedded
    return m


def clean_graph(m):
    """Remove Identity nodes that merely alias initializers, turn Constant nodes
    into initializers, drop unused initializers, then topologically keep order."""
    import onnx

    g = m.graph
    inits = {i.name: i for i in g.initializer}
    rename = {}
    keep = []
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in [o.name for o in g.output]:
            rename[n.output[0]] = n.input[0]
            continue
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
            inits[t.name] = t
            continue
        keep.append(n)
    for n in keep:
        for i, name in enumerate(n.input):
            while name in rename:
                name = rename[name]
            n.input[i] = name
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    unused = [i for i in g.initializer if i.name not in used]
    for i in unused:
        g.initializer.remove(i)
    del g.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    return m


def ort_logits(path, x, bs=250):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"input": x[i:i + bs]})[0]
                           for i in range(0, len(x), bs)])


def verify_onnx(path, model, log=print):
    """checker(full_check), ORT batch 1 / 32, ORT-vs-torch parity, ORT eval top-1."""
    import onnx

    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["input"], m.graph.input
    assert [o.name for o in m.graph.output] == ["logits"], m.graph.output
    assert not any(n.op_type == "BatchNormalization" and len(n.output) > 1
                   for n in m.graph.node), "training-mode BatchNormalization"
    assert not any(d.external_data for d in m.graph.initializer)
    ev = np.load(os.path.join(CALIB_DIR, f"{model_name(path)}_eval.npz"))
    x, y = ev["input"], ev["labels"]
    for b in (1, 32):
        out = ort_logits(path, x[:b], bs=b)
        assert out.shape == (b, 10), out.shape
    o = ort_logits(path, x)
    t = torch_logits(model, torch.from_numpy(x)).numpy()
    maxdiff = float(np.abs(o - t).max())
    log(f"max |ORT - torch(eval)| over eval set = {maxdiff:.2e}")
    assert maxdiff < 1e-4, maxdiff
    acc = float((o.argmax(1) == y).mean())
    log(f"ORT top-1 on {len(y)} eval images: {acc * 100:.2f}%")
    return acc, maxdiff


def model_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def op_histogram(path):
    import onnx

    m = onnx.load(path)
    return dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items()))


def io_desc(vis):
    out = []
    for v in vis:
        tt = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tt.shape.dim]
        out.append({"name": v.name, "dtype": "float32" if tt.elem_type == 1 else str(tt.elem_type),
                     "shape": dims})
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def update_manifest(path, *, description, build_script, param_count, eval_top1,
                    max_abs_diff, train_seconds, hyperparams):
    import mnist_data as md
    import onnx

    m = onnx.load(path)
    name = model_name(path)
    entry = {
        "file": f"models/{os.path.basename(path)}",
        "sha256": sha256(path),
        "size_bytes": os.path.getsize(path),
        "description": description,
        "opset": OPSET,
        "ir_version": m.ir_version,
        "inputs": io_desc(m.graph.input),
        "outputs": io_desc(m.graph.output),
        "parameter_count": int(param_count),
        "op_histogram": op_histogram(path),
        "eval_top1": round(eval_top1, 4),
        "eval_top1_measured_with": f"onnxruntime {__import__('onnxruntime').__version__} "
                                    "CPUExecutionProvider on calibration/"
                                    f"{name}_eval.npz",
        "max_abs_diff_ort_vs_torch": max_abs_diff,
        "calibration_file": f"calibration/{name}_calib.npz",
        "eval_file": f"calibration/{name}_eval.npz",
        "data": {
            "provenance": md.PROVENANCE,
            "split_seed": md.SEED,
            "train_size": md.N_TRAIN,
            "calib_size": md.N_CALIB,
            "eval_size": md.N_EVAL,
            "normalization": f"x/255, then (x - {md.MEAN}) / {md.STD}",
        },
        "training": dict(hyperparams, wall_seconds=round(train_seconds, 1),
                         threads=torch.get_num_threads()),
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "exporter": "torch.onnx.export(dynamo=False, training=TrainingMode.PRESERVE)",
        "rebuild": [
            "pip install -e .[models]",
            "python calibration/make_mnist_sets.py",
            f"python {build_script}",
        ],
    }
    data = {}
    if os.path.exists(MANIFEST):
        with open(MANIFEST) as f:
            data = json.load(f)
    data.setdefault("models", {})[name] = entry
    data["models"] = dict(sorted(data["models"].items()))
    with open(MANIFEST, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    return entry


TRAIN_KEYS = ("epochs", "lr", "weight_decay", "batch_size", "label_smoothing", "warmup_epochs", "seed")


def build(model, splits, out, hp, *, description, build_script, n_params, check_ops):
    """Train, export, verify the exported model with ORT, check its op histogram, record the manifest entry."""
    secs = train(model, splits, **{k: v for k, v in hp.items() if k in TRAIN_KEYS})
    print(f"training wall time {secs:.1f}s")
    export_onnx(model, out)
    acc, maxdiff = verify_onnx(out, model)
    hist = op_histogram(out)
    print("op histogram:", hist)
    check_ops(hist)
    entry = update_manifest(out, description=description, build_script=build_script, param_count=n_params,
                            eval_top1=acc, max_abs_diff=maxdiff, train_seconds=secs, hyperparams=hp)
    print(f"wrote {out} ({entry['size_bytes']} bytes, sha256 {entry['sha256'][:16]}...)")
