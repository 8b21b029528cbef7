#!/usr/bin/env python
"""Write a deterministic, seeded synthetic fp32 model larger than 2 GB, with external data, for testing the
>2 GB paths (protobuf's 2 GiB limit) of the tools:

    python models/third_party/make_big.py [--out DIR] [--hidden 8192] [--layers 9]

-> <out>/big_mlp/{model.onnx, model.onnx.data, calib.npz, eval.npz, info.json, build_stats.json}
(default out: <repo>/.cache/third_party).  The model is a wide MLP: input [N, 256] -> MatMul/Add/Relu to 8192 ->
9 x (MatMul 8192x8192, Add, Relu) -> MatMul to 10 logits: 608M float32 weights, 2.43 GB of external data.
Weights are He-normal from numpy's PCG64 (seed 20240601; after the first layer each weight column is
centred, so the ReLU mean cancels and the logits still depend on the input), generated and written ONE tensor
at a time straight
into model.onnx.data, so peak memory stays near one 268 MB tensor (plus onnxruntime's own copy when the fp32
reference outputs are computed at the end; --no-reference skips that).  It is not a trained model: the data is
seeded Gaussian inputs and the recorded metric is fidelity only.  It is marked "synthetic": true in info.json,
so bench/zoo.py skips it unless it is named with --models big_mlp.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from zoo.common import DEFAULT_OUT, dump_json, inspect_model, save_npz, sha256_file  # noqa: E402

SEED = 20240601
IN, OUT = 256, 10
ALIGN = 4096


def layer_shapes(hidden: int, layers: int) -> list[tuple[int, int]]:
    return [(IN, hidden)] + [(hidden, hidden)] * layers + [(hidden, OUT)]


def write_weights(data_path: Path, shapes, rng) -> list[dict]:
    """Each weight then its bias, float32, 4096-aligned; returns (name, shape, offset, length) records."""
    recs = []
    with open(data_path, "wb") as f:
        for i, (fin, fout) in enumerate(shapes):
            for name, shape, scale in ((f"w{i}", (fin, fout), np.sqrt(2.0 / fin)), (f"b{i}", (fout,), 0.01)):
                pad = (-f.tell()) % ALIGN
                f.write(b"\0" * pad)
                offset = f.tell()
                arr = rng.standard_normal(shape, dtype=np.float32)
                if name[0] == "w" and i > 0:  # zero column sums cancel the ReLU mean, so outputs stay input-dependent
                    arr -= arr.mean(axis=0, keepdims=True)
                arr *= np.float32(scale)
                f.write(arr.tobytes())
                recs.append({"name": name, "shape": shape, "offset": offset, "length": arr.nbytes})
                del arr
    return recs


def build_graph(recs, data_name: str):
    from onnx import TensorProto, helper

    inits = []
    for r in recs:
        t = TensorProto(name=r["name"], data_type=TensorProto.FLOAT, dims=list(r["shape"]))
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", data_name), ("offset", str(r["offset"])), ("length", str(r["length"]))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
    nodes, x = [], "input"
    n_layers = len(recs) // 2
    for i in range(n_layers):
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"mm{i}"], name=f"MatMul_{i}"))
        y = "logits" if i == n_layers - 1 else f"add{i}"
        nodes.append(helper.make_node("Add", [f"mm{i}", f"b{i}"], [y], name=f"Add_{i}"))
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"], name=f"Relu_{i}"))
            x = f"relu{i}"
    graph = helper.make_graph(nodes, "big_mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", IN])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", OUT])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxcompress-zoo",
                              producer_version="make_big.py")
    model.ir_version = 8
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--hidden", type=int, default=8192)
    ap.add_argument("--layers", type=int, default=9, help="hidden x hidden layers")
    ap.add_argument("--no-reference", action="store_true", help="skip the fp32 onnxruntime check")
    args = ap.parse_args(argv)
    t0 = time.time()
    d = Path(args.out) / "big_mlp"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    shapes = layer_shapes(args.hidden, args.layers)
    recs = write_weights(d / "model.onnx.data", shapes, rng)
    model = build_graph(recs, "model.onnx.data")
    (d / "model.onnx").write_bytes(model.SerializeToString())
    t_write = time.time() - t0
    xr = np.random.default_rng(SEED + 1)
    calib = {"input": xr.standard_normal((64, IN), dtype=np.float32)}
    evals = {"input": xr.standard_normal((100, IN), dtype=np.float32)}
    save_npz(d / "calib.npz", calib)
    save_npz(d / "eval.npz", evals)
    n_params = sum(int(np.prod(r["shape"])) for r in recs)
    info = {
        "name": "big_mlp", "module": None, "synthetic": True,
        "family": "synthetic wide MLP (MatMul/Add/Relu chain), > 2 GB external data",
        "task": "none (seeded random weights; fidelity only)",
        "description": __doc__.split("\n\n")[1].replace("\n", " "),
        "source": {"package": None, "generator": "models/third_party/make_big.py", "seed": SEED,
                   "sha256": sha256_file(d / "model.onnx"), "data_sha256": sha256_file(d / "model.onnx.data"),
                   "license": "generated here (Apache-2.0, this project)"},
        "io": {"inputs": [{"name": "input", "type": "float", "shape": ["N", IN], "batch_axis": 0}],
               "outputs": [{"name": "logits", "type": "float", "shape": ["N", OUT], "batch_axis": 0,
                            "kind": "class_logits", "classes": OUT}], "fixed_batch": None},
        "model": {k: v for k, v in inspect_model(d / "model.onnx").items()
                  if k not in ("graph_inputs", "graph_outputs")},
        "params": n_params, "external_data_bytes": (d / "model.onnx.data").stat().st_size,
        "layers": [list(s) for s in shapes],
        "quirks": ["> 2 GiB: weights in model.onnx.data (external data, 4096-aligned offsets); model.onnx itself "
                   "is tiny", "load with onnx.load(path) from its folder, or load_external_data=False"],
        "data": {"calib": {"file": "calib.npz", "n": 64}, "eval": {"file": "eval.npz", "n": 100},
                 "source": f"seeded standard normal inputs (seed {SEED + 1})"},
    }
    stats = {"write_seconds": round(t_write, 1)}
    if not args.no_reference:
        import onnxruntime as ort

        t1 = time.time()
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(d / "model.onnx"), so, providers=["CPUExecutionProvider"])
        logits = sess.run(None, evals)[0]
        info["fp32_metric"] = {"fidelity_only": True, "logit_std": float(logits.std()),
                               "class_histogram": np.bincount(logits.argmax(1), minlength=OUT).tolist()}
        stats["reference_seconds"] = round(time.time() - t1, 1)
    dump_json(d / "info.json", info)
    stats["total_seconds"] = round(time.time() - t0, 1)
    stats["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (d / "build_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"{d}: {n_params / 1e6:.0f}M params, {info['external_data_bytes'] / 1e9:.2f} GB external data; {stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
