#!/usr/bin/env python
"""Beyond INT8: fp16/bf16 conversion, weight-only INT4 and weight sharing / ternary weights, each measured.

Sections (``--sections``):
  fp16     every model: onnxcompress convert-precision fp16 and bf16 (with the calibration data), fp16 without
           calibration data ("unguarded": no activation checks), and the peer onnxconverter-common's fp16
           converter (keep_io_types) when it is installed. Fidelity is measured two ways: on the float32 twin that
           rounds every low-precision tensor at every op boundary (what GPU kernels store; the peer's placement is
           emulated the same way from the nodes it made fp16) and on the written fp16 file as onnxruntime's CPU
           provider runs it (mostly float32 there). Latency: the fp16 file on CPU, batch 1.
  int4     transformers: INT8 dynamic (ours), weight-only INT4 RTN/GPTQ (block 32 and 128, accuracy_level 0/4),
           the mixed-precision search with the INT8-dynamic fidelity as its goal, and onnxruntime's own
           MatMulNBitsQuantizer (RTN, block 32) when onnx-ir is installed.
  sharing  CNNs (and the transformers): INT8 static (ours), weight-only INT4, 4-bit k-means codebooks (per layer and
           per channel, refit on the calibration data), ternary and binary weights (first/last layer float).
Fidelity is against the float32 model on the evaluation data: min mean cosine over outputs, top-1 agreement of the
class output, task metric (top-1 with integer labels; minilm: leave-one-out 1-NN accuracy of sentence_embedding).
Latency: onnxruntime CPU, ``--threads`` intra-op threads, opt level all, batch 1, warm-up then ``--iterations``
runs with fp32 and the variant interleaved (A B B A ...), medians; ratio = fp32 / variant (> 1: faster).

Usage: .venv/bin/python bench/precision.py [--models resnet_mnist,vit_mnist,minilm,...] [--sections fp16,int4,sharing]
       [--zoo-dir DIR] [--threads 1] [--iterations 50] [--samples 256]
Peers (bench only, not dependencies): pip install onnxconverter-common==1.16.0 onnx-ir==1.1.0
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import onnxcompress as oc  # noqa: E402
from onnxcompress import pipeline  # noqa: E402
from onnxcompress.data.inputs import load_input_data  # noqa: E402
from onnxcompress.ir.graph import to_graph, to_model  # noqa: E402
from onnxcompress.ir.io import convert_opset, file_size, load_model, save_model  # noqa: E402
from onnxcompress.ops.formats import weight_formats  # noqa: E402
from onnxcompress.ops.precision_rules import rule_for  # noqa: E402
from onnxcompress.passes.base import PassContext  # noqa: E402
from onnxcompress.precision.convert import emulate  # noqa: E402
from onnxcompress.precision.plan import PrecisionPlan  # noqa: E402
from onnxcompress.precision.stage import EmulatedModel  # noqa: E402
from onnxcompress.precision.stats import collect_stats  # noqa: E402
from onnxcompress.runtime.session import SessionOptions, make_session  # noqa: E402
from onnxcompress.validation.metrics import FidelityAccumulator  # noqa: E402
from onnxcompress.validation.profile import time_interleaved  # noqa: E402

log = logging.getLogger("bench.precision")
BUNDLED = ("resnet_mnist", "vit_mnist")
ZOO = ("minilm", "ppocr_cls", "doc_orientation", "mnist_cntk", "ppocr_rec", "ppocr_det", "nudenet", "ddddocr_det",
       "ddddocr", "magika")
TRANSFORMERS = ("minilm", "vit_mnist")
SAMPLES = {"ppocr_det": 32, "nudenet": 32, "ddddocr_det": 24, "doc_orientation": 96, "ddddocr": 96}


# --- models and data --------------------------------------------------------------------------------------------
def sources(name: str, zoo: Path) -> tuple[Path, Path, Path] | None:
    if name in BUNDLED:
        return ROOT / "models" / f"{name}.onnx", ROOT / f"calibration/{name}_calib.npz", ROOT / f"calibration/{name}_eval.npz"
    base = zoo / name
    files = base / "model.onnx", base / "calib.npz", base / "eval.npz"
    return files if all(f.exists() for f in files) else None


def prepared(src: Path, work: Path, name: str) -> Path:
    """The model at opset >= 13 with every anonymous/'?' input dim given its own name (Paddle exports reuse '?')."""
    model = load_model(src)
    if next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13) < 13:
        model = convert_opset(model, 13)
    for inp in model.graph.input:
        for i, d in enumerate(inp.type.tensor_type.shape.dim):
            if (d.dim_param in ("?", "") and not d.dim_value) or d.dim_value < 0:
                d.Clear()
                d.dim_param = f"{inp.name}_dim{i}"
    return save_model(model, work / f"{name}.onnx")


def arrays(path: Path, model: onnx.ModelProto, limit: int | None) -> dict[str, np.ndarray]:
    """Model inputs (+ integer labels) of an .npz, at most ``limit`` samples."""
    inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    z = np.load(path)
    out = {k: z[k][:limit] for k in z.files if k in inputs}
    if "labels" in z.files and z["labels"].dtype.kind in "iu":
        out["labels"] = z["labels"][:limit]
    return out


def feeds_of(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in data.items() if k != "labels"}


def batch_of(model: onnx.ModelProto) -> int:
    inits = {t.name for t in model.graph.initializer}
    static = {d.dim_value for i in model.graph.input if i.name not in inits
              for d in i.type.tensor_type.shape.dim[:1] if d.dim_value > 0}
    return next(iter(static)) if len(static) == 1 else 16


def run_all(model, data: dict[str, np.ndarray], batch: int, threads: int) -> dict[str, np.ndarray]:
    sess = make_session(model, SessionOptions(providers="cpu", threads=threads))
    feeds = feeds_of(data)
    n = len(next(iter(feeds.values())))
    names = [o.name for o in sess.get_outputs()]
    parts: dict[str, list] = {k: [] for k in names}
    for i in range(0, n, batch):
        for k, v in zip(names, sess.run(names, {k: v[i:i + batch] for k, v in feeds.items()})):
            parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


# --- measures ---------------------------------------------------------------------------------------------------
def loo_neighbours(emb: np.ndarray) -> np.ndarray:
    """Index of each sample's nearest other sample (cosine)."""
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return sim.argmax(1)


def loo_1nn(emb: np.ndarray, labels: np.ndarray) -> float:
    return float((labels[loo_neighbours(emb)] == labels).mean())


def task_agreement(name: str, ref: dict[str, np.ndarray], outs: dict[str, np.ndarray],
                   labels: np.ndarray | None) -> float | None:
    """Task-aware fidelity: the share of samples whose task prediction equals the float32 model's (top-1 class;
    minilm: the label of the leave-one-out nearest neighbour)."""
    if name == "minilm" and labels is not None:
        a = labels[loo_neighbours(ref["sentence_embedding"].astype(np.float64))]
        b = labels[loo_neighbours(outs["sentence_embedding"].astype(np.float64))]
        return float((a == b).mean())
    return None


def task_metric(name: str, outs: dict[str, np.ndarray], labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    if name == "minilm":
        return loo_1nn(outs["sentence_embedding"].astype(np.float64), labels)
    first = next(iter(outs.values()))
    return float((first.reshape(len(first), -1).argmax(1) == labels).mean()) if first.ndim == 2 else None


def fidelity(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray]) -> dict[str, float | None]:
    cos, sqnr, bad, agree = [], [], 0, None
    for i, (k, r) in enumerate(ref.items()):
        c = cand[k].astype(np.float64)
        bad += int((~np.isfinite(c)).sum())
        acc = FidelityAccumulator()
        acc.update(r.astype(np.float64), np.nan_to_num(c, nan=0.0, posinf=1e30, neginf=-1e30))
        f = acc.result()
        cos.append(f.cosine)
        sqnr.append(f.sqnr_db)
        if i == 0 and r.ndim == 2 and r.shape[1] >= 2:
            agree = f.top1_agreement
    return {"cosine": min(cos), "sqnr_db": min(sqnr), "agreement": agree, "nonfinite": bad}


def latency(ref_path: Path, cand_path: Path, data: dict, threads: int, iterations: int) -> dict[str, float] | None:
    one = {k: v[:1] for k, v in feeds_of(data).items()}
    opts = SessionOptions(providers="cpu", threads=threads)
    try:
        a, b = make_session(ref_path, opts), make_session(cand_path, opts)
    except oc.OnnxCompressError as e:
        log.warning("latency not measured: %s", e)
        return None
    samples = time_interleaved({"fp32": lambda: a.run(None, one), "cand": lambda: b.run(None, one)},
                               warmup=5, iterations=iterations)
    ref_ms, cand_ms = (statistics.median(samples[k]) * 1e3 for k in ("fp32", "cand"))
    return {"fp32_ms": ref_ms, "ms": cand_ms, "ratio": ref_ms / cand_ms}


def create_ms(path: Path, threads: int) -> float:
    start = time.perf_counter()
    make_session(path, SessionOptions(providers="cpu", threads=threads))
    return (time.perf_counter() - start) * 1e3


def sizes(path: Path) -> dict[str, float]:
    model = onnx.load(str(path))
    formats = weight_formats(model)
    return {"file_mb": sum(file_size(path)) / 1e6, "const_mb": sum(v["bytes"] for v in formats.values()) / 1e6,
            "formats": {k: v["bytes"] for k, v in formats.items()}}


class Case:
    """One model: paths, data, fp32 outputs, and the rows measured for it."""

    def __init__(self, name: str, files: tuple[Path, Path, Path], work: Path, args):
        self.name, self.args, self.work = name, args, work
        self.path = prepared(files[0], work, name)
        self.model = load_model(self.path)
        limit = SAMPLES.get(name, args.samples)
        self.calib = arrays(files[1], self.model, min(limit, 128))
        self.eval = arrays(files[2], self.model, limit)
        self.batch = batch_of(self.model)
        self.ref = run_all(self.model, self.eval, self.batch, args.threads)
        self.task_ref = task_metric(name, self.ref, self.eval.get("labels"))
        self.size = sizes(self.path)

    def measure(self, variant: str, path: Path, *, judged: onnx.ModelProto | None = None, timed: bool = True,
                **extra) -> dict:
        outs = run_all(judged if judged is not None else path, self.eval, self.batch, self.args.threads)
        row = {"model": self.name, "variant": variant, **sizes(path), **fidelity(self.ref, outs),
               "task": task_metric(self.name, outs, self.eval.get("labels")), "task_fp32": self.task_ref, **extra}
        row["cosines"] = {k: fidelity({k: v}, {k: outs[k]})["cosine"] for k, v in self.ref.items()}
        row["task_agreement"] = task_agreement(self.name, self.ref, outs, self.eval.get("labels"))
        if row["agreement"] is None and row["task_agreement"] is not None:
            row["agreement"] = row["task_agreement"]
        row["weights_ratio"] = row["const_mb"] / self.size["const_mb"]
        if timed:
            row["latency"] = latency(self.path, path, self.eval, self.args.threads, self.args.iterations)
            row["create_ms"] = create_ms(path, self.args.threads)
        log.info("%s %s: %s", self.name, variant, {k: v for k, v in row.items() if k != "formats"})
        return row


# --- fp16 / bf16 ------------------------------------------------------------------------------------------------
def convert(case: Case, to: str, calib: bool) -> tuple[Path, onnx.ModelProto, oc.PrecisionResult]:
    """The pipeline's pre-processing and precision stage (what convert-precision runs), keeping the float32 twin."""
    config = oc.PrecisionConfig(to=to, verify=False, calibration_samples=64)
    ctx = PassContext(calibration=load_input_data(feeds_of(case.calib)) if calib else None)
    out = pipeline.build(oc.Recipe(quantize=None, distill=None, precision=config)).run(case.model, ctx)
    path = save_model(out, case.work / f"{case.name}.{to}{'' if calib else '.nocalib'}.onnx")
    return path, ctx.require(EmulatedModel, "bench").model, ctx.require(oc.PrecisionResult, "bench")


def peer_fp16(case: Case) -> tuple[Path, onnx.ModelProto] | None:
    """onnxconverter-common's fp16 conversion, and the float32 twin of the placement it chose."""
    try:
        from onnxconverter_common import float16
    except ImportError:
        return None
    try:
        out = float16.convert_float_to_float16(onnx.load(str(case.path)), keep_io_types=True)
        path = save_model(out, case.work / f"{case.name}.peer16.onnx")
    except Exception as e:  # deliberate: a peer failure is a row, not a crash
        log.warning("peer fp16 failed on %s: %s", case.name, e)
        return None
    try:
        return path, peer_twin(case, out)
    except Exception as e:  # deliberate: the peer's file is then judged as onnxruntime runs it
        log.warning("no float32 twin of the peer's fp16 model %s: %s", case.name, str(e).splitlines()[0])
        return path, None


def peer_twin(case: Case, peer: onnx.ModelProto) -> onnx.ModelProto:
    inferred = onnx.shape_inference.infer_shapes(peer)
    half = {v.name for v in list(inferred.graph.value_info) + list(inferred.graph.output)
            if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16}
    low = {n.name for n in peer.graph.node if n.op_type != "Cast" and half & set(n.output)}
    graph = to_graph(case.model)
    stats = collect_stats(graph, None, 2.0 ** -25)
    plan = PrecisionPlan("fp16", low={n.name for n in graph.nodes if n.name in low and rule_for(n, graph.opset)},
                         rules={n.name: rule_for(n, graph.opset) for n in graph.nodes if rule_for(n, graph.opset)})
    return to_model(emulate(graph, plan, stats))


def section_fp16(case: Case) -> list[dict]:
    rows = []
    for to, calib in (("fp16", True), ("bf16", True), ("fp16", False)):
        path, twin, result = convert(case, to, calib)
        label = f"ours {to}" + ("" if calib else " (no calib: unguarded)")
        kept = result.to_dict()["kept_float32_reasons"]
        row = case.measure(label, path, judged=twin, timed=(to == "fp16" and calib), kept=len(result.kept),
                           low=len(result.low), casts=result.casts_inserted, reasons=kept)
        if to == "fp16":
            row["cpu_run"] = fidelity(case.ref, run_all(path, case.eval, case.batch, case.args.threads))
        rows.append(row)
    peer = peer_fp16(case)
    if peer is not None:
        try:
            row = case.measure("onnxconverter-common fp16", peer[0], judged=peer[1], timed=True)
            row["cpu_run"] = fidelity(case.ref, run_all(peer[0], case.eval, case.batch, case.args.threads))
        except oc.OnnxCompressError as e:  # deliberate: the peer's model not loading is its result
            row = {"model": case.name, "variant": "onnxconverter-common fp16", "error": str(e).splitlines()[0]}
        rows.append(row)
    return rows


# --- int4 / int8 / sharing -------------------------------------------------------------------------------------
def quantized(case: Case, label: str, config: oc.QuantizeConfig, *, tune: oc.TuneConfig | None = None,
              calib: bool = True) -> dict:
    path = case.work / f"{case.name}.{label.replace(' ', '_').replace('/', '-')}.onnx"
    start = time.perf_counter()
    _, result = oc.quantize(case.path, feeds_of(case.calib) if calib else None, config, tune=tune,
                            eval=feeds_of(case.eval) if tune is not None else None, output=path)
    extra = {"seconds": time.perf_counter() - start, "kernels": result.kernel_ops}
    if result.search is not None:
        extra["higher_precision"] = result.search.higher_precision
        extra["goal_met"] = result.search.goal_met
    return case.measure(label, path, **extra)


def peer_int4(case: Case) -> dict | None:
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError:
        return None
    path = case.work / f"{case.name}.ort_nbits.onnx"
    q = MatMulNBitsQuantizer(onnx.load(str(case.path)), bits=4, block_size=32, is_symmetric=False)
    q.process()
    q.model.save_model_to_file(str(path), use_external_data_format=False)
    return case.measure("onnxruntime MatMulNBitsQuantizer int4 b32", path)


#: the output whose fidelity is the model's task-aware one (an encoder's pooled sentence embedding)
TASK_OUTPUT = {"minilm": "sentence_embedding"}


def section_int4(case: Case) -> list[dict]:
    w = dict(mode="weight_only", weight_bits=4)
    wanted = case.args.variants
    variants = [("ours int4 rtn b32", oc.QuantizeConfig(**w, block_size=32, method="rtn"), False),
                ("ours int4 gptq b32", oc.QuantizeConfig(**w, block_size=32, method="gptq"), True),
                ("ours int4 gptq b128", oc.QuantizeConfig(**w, block_size=128, method="gptq"), True),
                ("ours int4 gptq b32 acc4", oc.QuantizeConfig(**w, block_size=32, method="gptq", accuracy_level=4),
                 True)]
    dynamic = quantized(case, "ours int8 dynamic", oc.QuantizeConfig(mode="dynamic"), calib=False)
    rows = [dynamic] + [quantized(case, label, cfg, calib=c) for label, cfg, c in variants
                        if not wanted or any(v in label for v in wanted)]
    output = TASK_OUTPUT.get(case.name, next(iter(case.ref)))
    goal = max(1.0 - dynamic["cosines"][output], 1e-6)
    tune = oc.TuneConfig(metric="cosine", max_drop=goal, measure_latency=False, max_candidates=16, eval_samples=128,
                         output=output)
    label = f"ours int4 gptq b32 + search (goal: {output} cosine >= int8 dynamic's {1 - goal:.5f})"
    if not wanted or any(v in label for v in wanted):
        rows.append(quantized(case, label, oc.QuantizeConfig(**w, block_size=32, method="gptq"), tune=tune))
    peer = peer_int4(case) if not wanted or any(v in "onnxruntime" for v in wanted) else None
    return rows + ([peer] if peer else [])


def section_sharing(case: Case) -> list[dict]:
    rows = [quantized(case, "ours int8 static", oc.QuantizeConfig())]
    rows.append(quantized(case, "ours int4 weight-only b32", oc.QuantizeConfig(mode="weight_only", block_size=32),
                          calib=False))
    rows.append(quantized(case, "ours codebook 4-bit/layer", oc.QuantizeConfig(mode="codebook", weight_bits=4)))
    rows.append(quantized(case, "ours codebook 4-bit/channel",
                          oc.QuantizeConfig(mode="codebook", weight_bits=4, codebook_scope="channel")))
    rows.append(quantized(case, "ours ternary (first/last float)",
                          oc.QuantizeConfig(mode="ternary", layer_policy="skip_first_last")))
    rows.append(quantized(case, "ours binary (first/last float)",
                          oc.QuantizeConfig(mode="binary", layer_policy="skip_first_last")))
    return rows


# --- output -----------------------------------------------------------------------------------------------------
def _f(v, fmt: str = "{:.4f}") -> str:
    return "-" if v is None else (fmt.format(v) if isinstance(v, (int, float)) else str(v))


def table(rows: list[dict], section: str) -> str:
    head = ["model", "variant", "file MB", "weights MB (x fp32)", "min cosine", "agreement*", "NaN/Inf", "task fp32",
            "task", "p50 fp32 ms", "p50 ms", "x fp32"]
    if section == "fp16":
        head += ["kept fp32 / low", "casts", "CPU-run cosine / NaN"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['variant']} | error: {r['error'][:160]} |" + " |" * (len(head) - 3))
            continue
        lat = r.get("latency") or {}
        cells = [r["model"], r["variant"], _f(r["file_mb"], "{:.3f}"),
                 f"{r['const_mb']:.3f} ({r['weights_ratio']:.3f})", _f(r["cosine"], "{:.6f}"),
                 _f(r["agreement"]), str(r["nonfinite"]), _f(r["task_fp32"]), _f(r["task"]),
                 _f(lat.get("fp32_ms"), "{:.3f}"), _f(lat.get("ms"), "{:.3f}"), _f(lat.get("ratio"), "{:.2f}")]
        if section == "fp16":
            cpu = r.get("cpu_run")
            cells += [f"{r.get('kept', '-')} / {r.get('low', '-')}", _f(r.get("casts"), "{}"),
                      "-" if cpu is None else f"{cpu['cosine']:.6f} / {cpu['nonfinite']}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(BUNDLED + ZOO))
    ap.add_argument("--sections", default="fp16,int4,sharing")
    ap.add_argument("--zoo-dir", type=Path, default=ROOT / ".cache" / "third_party")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None, help="append every row here (one run can resume another)")
    ap.add_argument("--tables-from", type=Path, default=None, help="only print the tables of a --json file")
    ap.add_argument("--variants", type=lambda v: v.split(","), default=None,
                    help="int4: only the variants whose label contains one of these (int8 dynamic always runs)")
    args = ap.parse_args()
    if args.tables_from is not None:
        results = json.loads(args.tables_from.read_text())
        for s in args.sections.split(","):
            print(f"\n### {s}\n\n{table(results.get(s, []), s)}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sections = args.sections.split(",")
    results: dict[str, list[dict]] = {s: [] for s in sections}
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        for name in args.models.split(","):
            files = sources(name, args.zoo_dir)
            if files is None:
                log.warning("%s: not available (fetch the zoo: python models/third_party/fetch.py)", name)
                continue
            case = Case(name, files, Path(tmp), args)
            if "fp16" in sections:
                results["fp16"] += section_fp16(case)
            if "int4" in sections and name in TRANSFORMERS:
                results["int4"] += section_int4(case)
            if "sharing" in sections:
                results["sharing"] += section_sharing(case)
            if args.json:
                saved = json.loads(args.json.read_text()) if args.json.exists() else {}
                for s in sections:
                    fresh = [r for r in results[s] if r["model"] == name]
                    done = {r["variant"] for r in fresh}
                    saved[s] = [r for r in saved.get(s, []) if r["model"] != name or r["variant"] not in done] + fresh
                args.json.write_text(json.dumps(saved, indent=1, default=str))
    for s in sections:
        print(f"\n### {s}\n\n{table(results[s], s)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
