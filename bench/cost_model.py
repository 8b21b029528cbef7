#!/usr/bin/env python
"""Fit the placement cost model from onnxruntime's per-kernel profiles of real models, and write it as data.

For every model (the bundled MNIST models and the fetched zoo, models/third_party/fetch.py): the quantizer's own
float graph (pre-processing + quantization rewrites, nodes named as the quantizer names them), its full-INT8 QDQ
model and a "linear-only" INT8 model (only Conv/Gemm/MatMul quantized: more Q/DQ boundaries and standalone float
kernels to learn from) are each profiled by onnxruntime (runtime.profiling.profile_kernels: batch 32 or the
model's fixed batch, one intra-op thread, ORT_ENABLE_ALL, 3 warm-up + N timed runs). Every kernel with a cost rule
(ops.cost_rules.KERNEL_COSTS) becomes a sample (cost key, MACs, elements, microseconds); quantization.costs.fit
fits ``us = per_node + per_mac * MACs + per_element * elements`` per key (non-negative least squares).

Writes the table (``--write``: onnxcompress/quantization/cost_models/<name>.json, with the CPU and onnxruntime
it was measured on) and the raw samples (bench/out/cost_samples_<name>.json), and prints per model how well the
fitted table predicts the measured total of each variant.

Usage: .venv/bin/python bench/cost_model.py [--models a,b] [--runs 5] [--name x86-vnni] [--write]
       .venv/bin/python bench/cost_model.py --from-samples bench/out/cost_samples_x86-vnni.json --write
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models" / "third_party"))
sys.path.insert(0, str(ROOT / "bench"))
import zoo_index  # noqa: E402

import onnxcompress as oc  # noqa: E402
from onnxcompress.ir.edit import name_nodes  # noqa: E402
from onnxcompress.ir.graph import to_graph, to_model  # noqa: E402
from onnxcompress.ops.cost_rules import Work, kernel_work  # noqa: E402
from onnxcompress.passes.base import PassContext, Sequential  # noqa: E402
from onnxcompress.pipeline import preprocessed  # noqa: E402
from onnxcompress.quantization import costs  # noqa: E402
from onnxcompress.quantization.stage import rewrite_passes  # noqa: E402
from onnxcompress.quantization.upcast import UpcastHalfPass  # noqa: E402
from onnxcompress.recipe import Recipe  # noqa: E402
from onnxcompress.runtime.profiling import KernelEvent, profile_kernels  # noqa: E402
from onnxcompress.runtime.session import SessionOptions  # noqa: E402

LINEAR = ("Conv", "Gemm", "MatMul")


def _zoo_bench():
    """bench/zoo.py (its model list and CPU flags), loaded by path: models/third_party has a `zoo` package too."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("zoo_bench", ROOT / "bench" / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def float_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph the quantizer works on: pre-processed, rewritten, topologically sorted, every node named."""
    pre = preprocessed(model, Recipe(), PassContext())
    graph = Sequential(UpcastHalfPass(), *rewrite_passes(oc.QuantizeConfig()))(to_graph(pre), PassContext()).graph
    graph.toposort()
    name_nodes(graph)
    return to_model(graph, like=pre)


def variants(entry, fp32: onnx.ModelProto, extra: dict) -> dict[str, onnx.ModelProto]:
    out = {"fp32": fp32}
    base = dict(target="cpu-vnni", verify=False, placement="fixed", **extra)
    out["int8"], _ = oc.quantize(fp32, str(entry.calib), oc.QuantizeConfig(**base))
    ops = {n.op_type for n in fp32.graph.node}
    linear = tuple(op for op in LINEAR if op in ops)
    if linear and ops - set(LINEAR):
        out["linear"], _ = oc.quantize(fp32, str(entry.calib), oc.QuantizeConfig(include=linear, **base))
    return out


def samples_of(entry, models: dict[str, onnx.ModelProto], runs: int) -> dict[str, list]:
    arrays = zoo_index.load(entry.eval)
    batch = entry.fixed_batch or min(32, zoo_index.n_samples(entry, arrays))
    feeds = zoo_index.slice_feeds(entry, arrays, 0, batch)
    nodes = {n.name: n for n in to_graph(models["fp32"]).nodes}
    options = SessionOptions(providers="cpu", threads=1, opt_level="all")
    out: dict[str, list] = {}
    for name, model in models.items():
        events = profile_kernels(model, feeds, options, runs=runs, warmup=3)
        rows = []
        for ev in events:  # the raw event is kept, so a later cost-rule change can reclassify it (--from-samples)
            kw = kernel_work(ev, nodes.get)
            rows.append({"node": ev.node, "op": ev.op, "us": ev.best_us, "median_us": ev.us,
                         "inputs": ev.inputs, "outputs": ev.outputs,
                         "key": None if kw is None else kw[0],
                         "macs": 0.0 if kw is None else kw[1].macs, "elements": 0.0 if kw is None else kw[1].elements})
        out[name] = rows
    return {"batch": batch, "variants": out}


def collect(args) -> dict:
    import tempfile

    td = tempfile.TemporaryDirectory(prefix="costs-")
    bench = _zoo_bench()
    entries = bench.bundled_entries(Path(td.name)) + zoo_index.entries()
    entries = [e for e in entries if not e.info.get("synthetic") and (not args.models or e.name in args.models)]
    data = {"cpu": bench.cpu_info(), "onnxruntime": __import__("onnxruntime").__version__, "python": platform.python_version(),
            "runs": args.runs, "models": {}}
    for entry in entries:
        t0 = time.perf_counter()
        try:
            fp32 = float_graph(onnx.load(str(entry.model)))
            data["models"][entry.name] = samples_of(entry, variants(entry, fp32, {}), args.runs)
            print(f"{entry.name}: profiled in {time.perf_counter() - t0:.0f} s", flush=True)
        except Exception as e:  # a model the quantizer refuses or that fails to run is skipped, with the reason
            print(f"{entry.name}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:160]})", flush=True)
    return data


def reclassify(data: dict) -> None:
    """Apply the current cost rules to saved raw events (a kernel that needs the graph, QLinearConv, keeps the
    classification it got when it was profiled)."""
    for m in data["models"].values():
        for rows in m["variants"].values():
            for r in rows:
                if "inputs" not in r:
                    continue
                ev = KernelEvent(r["node"], r["op"], r["us"], tuple((d, tuple(s)) for d, s in r["inputs"]),
                                 tuple((d, tuple(s)) for d, s in r["outputs"]))
                kw = kernel_work(ev, lambda name: None)
                if kw is not None:
                    r["key"], r["macs"], r["elements"] = kw[0], kw[1].macs, kw[1].elements
                elif r["key"] in ("conv.int8", "conv_thin.int8") and r["elements"]:  # QLinearConv: NHWC output
                    cout, k = r["outputs"][0][1][-1], r["macs"] / r["elements"]
                    r["key"] = "conv_thin.int8" if cout <= 16 or k <= 32 else "conv.int8"


def all_samples(data: dict, scales: dict[str, float] | None = None) -> list[costs.Sample]:
    out = []
    for name, m in data["models"].items():
        s = (scales or {}).get(name, 1.0)
        for rows in m["variants"].values():
            out += [(r["key"], Work(r["macs"], r["elements"]), r["us"] / s) for r in rows if r["key"]]
    return out


def fit_normalized(data: dict, rounds: int = 4) -> tuple[dict, dict[str, float]]:
    """Fit, then give every model a speed factor (its measured / predicted total) and refit on the samples divided
    by it, a few rounds: the models were profiled minutes apart on a machine other jobs share, so one model's
    kernels may all run slower than another's; the factor absorbs that, the table keeps what differs between
    kernels. The factors are normalized to a geometric mean of 1."""
    scales: dict[str, float] = {}
    table = costs.fit(all_samples(data))
    for _ in range(rounds):
        model = costs.CostModel("fit", "", table)
        for name, m in data["models"].items():
            rows = [r for rs in m["variants"].values() for r in rs if r["key"] and model.has(r["key"])]
            pred = sum(model.us(r["key"], Work(r["macs"], r["elements"])) for r in rows)
            meas = sum(r["us"] for r in rows)
            if pred > 0 and meas > 1000:  # models under 1 ms in all are too small to say anything
                scales[name] = meas / pred
        if scales:
            g = float(np.exp(np.mean(np.log(list(scales.values())))))
            scales = {k: v / g for k, v in scales.items()}
        table = costs.fit(all_samples(data, scales))
    return table, scales


def report(data: dict, model: costs.CostModel, scales: dict[str, float]) -> None:
    print(f"{'model':16s} {'variant':8s} {'measured ms':>12s} {'explained ms':>13s} {'predicted ms':>13s} {'ratio':>6s}")
    for name, m in data["models"].items():
        for variant, rows in m["variants"].items():
            known = [r for r in rows if r["key"] and model.has(r["key"])]
            meas = sum(r["us"] for r in rows) / 1e3
            expl = sum(r["us"] for r in known) / 1e3
            pred = scales.get(name, 1.0) * sum(model.us(r["key"], Work(r["macs"], r["elements"])) for r in known) / 1e3
            print(f"{name:16s} {variant:8s} {meas:12.2f} {expl:13.2f} {pred:13.2f} {pred / max(expl, 1e-9):6.2f}")


#: int8 / float time per MAC on an x86 CPU without VNNI, as measured on this project's earlier development machine
#: (AVX2, no AVX-512/VNNI; bench/RESULTS.md): QLinearConv about as fast as the float NCHWc Conv on ppocr_cls
#: ("QLinearConv alone (38-56 ms) is about what fp32 Conv costs"), MatMulIntegerToFloat 2x the float MatMul on
#: vit_mnist (2.8 vs 5.6 ms), QLinearSoftmax 3.6x the float Softmax (4.9 vs 1.3 ms)
AVX2_RATIOS = {"conv": 1.0, "conv_thin": 1.0, "conv_dw": 1.0, "matmul": 0.5, "matmul_act": 1.0, "softmax": 3.6}


def derive_avx2(vnni: costs.CostModel) -> costs.CostModel:
    """The table for x86 CPUs without VNNI, derived (not measured here: this machine has VNNI): the VNNI table with
    each int8 class of AVX2_RATIOS scaled so that its cost per MAC (per element for softmax) is that ratio times
    the float class's."""
    table = dict(vnni.table)
    for cls, ratio in AVX2_RATIOS.items():
        f, q = table.get(f"{cls}.float"), table.get(f"{cls}.int8")
        if f is None or q is None:
            continue
        rate_f, rate_q = (f.per_mac, q.per_mac) if f.per_mac and q.per_mac else (f.per_element, q.per_element)
        if rate_q > 0:
            table[f"{cls}.int8"] = q.scaled(max(ratio * rate_f / rate_q, 1.0))
    source = (f"derived by bench/cost_model.py --derive-avx2 from {vnni.name} ({vnni.source}): int8 classes "
              f"scaled to the int8/float cost ratios measured without VNNI in bench/RESULTS.md {AVX2_RATIOS}")
    return costs.CostModel("x86-avx2", source, table)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=lambda s: s.split(","), default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--name", default="x86-vnni")
    ap.add_argument("--from-samples", default=None, help="refit from a saved samples file instead of profiling")
    ap.add_argument("--write", action="store_true", help="write the table into onnxcompress/quantization/cost_models")
    ap.add_argument("--derive-avx2", action="store_true", help="write x86-avx2.json derived from the x86-vnni table")
    args = ap.parse_args()
    if args.derive_avx2:
        model = derive_avx2(costs.load_table("x86-vnni"))
        path = costs.TABLES / "x86-avx2.json"
        path.write_text(json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
        return 0
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.from_samples:
        data = json.loads(Path(args.from_samples).read_text())
        reclassify(data)
    else:
        data = collect(args)
        (out_dir / f"cost_samples_{args.name}.json").write_text(json.dumps(data))
    table, scales = fit_normalized(data)
    print("per-model speed factors:", {k: round(v, 2) for k, v in sorted(scales.items())})
    flags = [f for f, on in data["cpu"].get("flags", {}).items() if on]
    source = (f"bench/cost_model.py: onnxruntime {data['onnxruntime']} kernel profiles of {len(data['models'])} models "
              f"(fp32, full INT8, linear-only INT8; batch 32 or fixed, 1 intra-op thread) on {data['cpu'].get('model')} "
              f"({', '.join(flags)})")
    model = costs.CostModel(args.name, source, table)
    report(data, model, scales)
    if args.write:
        path = costs.TABLES / f"{args.name}.json"
        doc = {**model.to_dict(), "models": sorted(data["models"]), "cpu": data["cpu"]}
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
