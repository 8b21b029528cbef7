#!/usr/bin/env python
"""Zoo benchmark: onnxcompress (through its CLI only, in subprocesses) vs onnxruntime.quantization on every
fetched third-party zoo model (models/third_party/fetch.py) and the bundled MNIST models.

Per model: exit code, wall time, peak RSS and one-line error of `onnxcompress quantize`, `prune --ratio 0.3` and
`optimize`; onnxruntime's own quantize_static (QDQ, per-channel, MinMax; activations uint8 and int8; after
quant_pre_process where it works) in a subprocess too; task-aware fidelity of every result vs fp32 (by the output
kinds in info.json) plus the member's task metric; latency speed-up over fp32 at batch 32 (or the model's fixed
batch / batch 1, said in the row), all variants interleaved in one process with identical session options
(medians over rounds).  A failing command never stops the run.  Writes bench/out/zoo.json.

Usage: .venv/bin/python bench/zoo.py [--models a,b] [--rounds 5] [--skip-optimize] [--out bench/out/zoo.json]
       .venv/bin/python bench/zoo.py --table bench/out/zoo.json     # print the table of a saved run again
       .venv/bin/python bench/zoo.py --after bench/out/zoo.json     # kinds, self-check and gate of a saved run
In the table, "0!" is an exit code 0 whose written model then failed to load or run in onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models" / "third_party"))
import zoo_index  # noqa: E402

CLI = Path(sys.executable).with_name("onnxcompress")
TIME = shutil.which("time") if os.path.exists("/usr/bin/time") else None


# --- models -----------------------------------------------------------------------------------------------------
def bundled_entries(tmp: Path) -> list:
    out = []
    for name in ("resnet_mnist", "vit_mnist"):
        model = ROOT / "models" / f"{name}.onnx"
        if not model.exists():
            continue
        d = tmp / "bundled" / name
        d.mkdir(parents=True, exist_ok=True)
        for src, dst in ((model, "model.onnx"), (ROOT / f"calibration/{name}_calib.npz", "calib.npz"),
                         (ROOT / f"calibration/{name}_eval.npz", "eval.npz")):
            if not (d / dst).exists():
                os.symlink(src, d / dst)
        info = {"name": name, "module": None, "bundled": True, "family": "bundled MNIST model (models/)",
                "io": {"inputs": [{"name": "input", "batch_axis": 0}],
                       "outputs": [{"name": "logits", "kind": "class_logits", "batch_axis": 0}],
                       "fixed_batch": None}}
        (d / "info.json").write_text(json.dumps(info))
        out.append(zoo_index.Entry(name, d, info))
    return out


def task_metric(entry, outputs, extras) -> dict:
    try:
        if entry.info.get("bundled"):  # top-1 on labels
            return {"top1": float((outputs["logits"].argmax(1) == extras["labels"]).mean())}
        return zoo_index.task_metric(entry, outputs, extras)
    except Exception as e:  # a metric that cannot be computed is recorded, not fatal
        return {"error": f"{type(e).__name__}: {e}"[:200]}


# --- subprocesses -------------------------------------------------------------------------------------------------
def run_cmd(cmd: list[str], timeout: float, cwd: Path | None = None) -> dict:
    """Run a child; exit code, wall seconds, its own peak RSS (MB) and the last error line."""
    if TIME:
        full = [TIME, "-f", "MAXRSS_KB %M"] + cmd
    else:
        full = [sys.executable, "-c", "import resource,subprocess,sys; r=subprocess.run(sys.argv[1:]); "
                "sys.stderr.write('MAXRSS_KB %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
                "sys.exit(r.returncode)"] + cmd
    t0 = time.perf_counter()
    out = ""
    try:
        p = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd=cwd)
        rc, err, out = p.returncode, p.stderr, p.stdout
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else ""
    wall = time.perf_counter() - t0
    rss = None
    lines = [ln for ln in (err or "").splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("MAXRSS_KB"):
            rss = int(ln.split()[1]) / 1024
    msgs = [ln for ln in lines if not ln.startswith("MAXRSS_KB") and "Command exited" not in ln]
    error = None
    if rc != 0:
        errs = [ln for ln in msgs if ln.lower().startswith(("error", "internal error")) or "Error" in ln]
        outs = [ln.strip() for ln in (out or "").splitlines() if ln.strip()]
        # exit 1 without an error message is a verdict (e.g. optimize's gate): its last stdout line says why
        error = (errs[-1] if errs else (msgs[-1] if msgs else (outs[-1] if outs else f"exit {rc}")))[:300]
    return {"cmd": " ".join(str(c) for c in cmd), "rc": rc, "wall_s": round(wall, 2),
            "peak_rss_mb": None if rss is None else round(rss, 1), "error": error}


#: --placement-variants: extra `quantize` runs, timed and scored like the default one
PLACEMENT_VARIANTS = {"ours_fixed": ["--placement", "fixed"], "ours_measure": ["--placement", "measure"]}


def ours(entry, tmp: Path, skip_optimize: bool, timeout: float, placement_variants: bool = False) -> dict:
    d = tmp / entry.name
    d.mkdir(parents=True, exist_ok=True)
    res = {"quantize": run_cmd([str(CLI), "quantize", str(entry.model), "-o", str(d / "ours_q.onnx"), "--calib",
                                str(entry.calib), "--report", str(d / "q.json")], timeout),
           "prune": run_cmd([str(CLI), "prune", str(entry.model), "-o", str(d / "ours_p.onnx"), "--ratio", "0.3",
                             "--calib", str(entry.calib)], timeout)}
    for name, flags in (PLACEMENT_VARIANTS.items() if placement_variants else ()):
        res[name] = run_cmd([str(CLI), "quantize", str(entry.model), "-o", str(d / f"{name}.onnx"), "--calib",
                             str(entry.calib), "--report", str(d / f"{name}.json"), *flags], timeout)
        report = d / f"{name}.json"
        if report.exists():
            res[name]["placement"] = json.loads(report.read_text()).get("placement")
    q = d / "q.json"
    if q.exists():
        res["quantize"]["placement"] = json.loads(q.read_text()).get("placement")
    if not skip_optimize:
        res["optimize"] = run_cmd([str(CLI), "optimize", str(entry.model), "-o", str(d / "ours_o.onnx"), "--calib",
                                   str(entry.calib), "--eval", str(entry.eval), "--report-dir", str(d / "opt")],
                                  timeout)
    return res


def ort_quant(entry, tmp: Path, act: str, timeout: float) -> dict:
    out = tmp / entry.name / f"ort_{act}.onnx"
    r = run_cmd([sys.executable, str(Path(__file__).resolve()), "--_ort-worker", str(entry.dir), str(out), act,
                 str(tmp / entry.name)], timeout, cwd=tmp / entry.name)  # quant_pre_process leaks *.data into cwd
    note = tmp / entry.name / f"ort_{act}.pre.txt"
    r["pre_process"] = note.read_text().strip() if note.exists() else None
    return r


def ort_worker(entry_dir: str, out: str, act: str, work: str) -> int:
    """Child process: onnxruntime quantize_static (QDQ, per-channel, MinMax), after quant_pre_process if it works."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    info = json.loads((Path(entry_dir) / "info.json").read_text())
    entry = zoo_index.Entry(info["name"], Path(entry_dir), info)
    model = str(entry.model)
    pre = Path(work) / f"pre_{act}.onnx"
    try:
        quant_pre_process(model, str(pre))
        model, note = str(pre), "quant_pre_process: ok"
    except Exception as e:  # recorded, then the raw model is quantized
        note = f"quant_pre_process failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    Path(work, f"ort_{act}.pre.txt").write_text(note + "\n")
    arrays = zoo_index.load(entry.calib)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(zoo_index.batches(entry, arrays, 16))

        def get_next(self):
            return next(self.it, None)

    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8 if act == "u8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return 0


# --- fidelity and latency -----------------------------------------------------------------------------------------
def fidelity(entry, ref: dict, cand: dict) -> dict:
    out = {}
    for o in entry.info["io"]["outputs"]:
        n, kind, ax = o["name"], o["kind"], o.get("batch_axis", 0) or 0
        a, b = np.moveaxis(ref[n], ax, 0), np.moveaxis(cand[n], ax, 0)
        if a.shape != b.shape:
            out[n] = {"error": f"shape {b.shape} vs fp32 {a.shape}"}
            continue
        a64, b64 = a.astype(np.float64).reshape(len(a), -1), b.astype(np.float64).reshape(len(b), -1)
        if kind in ("class_logits", "class_probabilities"):
            out[n] = {"top1_agreement": float((a64.argmax(1) == b64.argmax(1)).mean())}
        elif kind == "embedding":
            cos = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1) + 1e-12)
            out[n] = {"mean_cosine": float(cos.mean())}
        elif kind == "sequence":
            cax = -1
            out[n] = {"step_argmax_agreement": float((a.argmax(cax) == b.argmax(cax)).mean())}
        elif kind == "dense_map":
            thr = o.get("threshold", 0.5)
            inter = np.logical_and(a > thr, b > thr).sum()
            union = np.logical_or(a > thr, b > thr).sum()
            out[n] = {"mean_abs_error": float(np.abs(a64 - b64).mean()),
                      "thresholded_iou": float(inter / union) if union else 1.0}
        elif kind == "decision":
            thr = o.get("threshold")
            same = (a == b) if thr is None else ((a > thr) == (b > thr))
            out[n] = {"decision_agreement": float(same.mean())}
        else:  # regression, state
            out[n] = {"mean_abs_error": float(np.abs(a64 - b64).mean())}
    return out


SHORT = {"top1_agreement": "agree", "mean_cosine": "cos", "step_argmax_agreement": "step-agree",
         "thresholded_iou": "IoU", "mean_abs_error": "MAE", "decision_agreement": "agree"}


def primary_output(entry) -> str | None:
    """The output a row is summarised by: the one marked "primary" in info.json, else the first non-state one."""
    outs = entry.info["io"]["outputs"]
    marked = [o["name"] for o in outs if o.get("primary")]
    return marked[0] if marked else next((o["name"] for o in outs if o["kind"] != "state"), None)


def primary(fid: dict, entry):
    """(short metric name, value) of the primary output: agreement / cosine / IoU (dense maps with a threshold)
    or mean abs error (dense maps without one)."""
    o = next((x for x in entry.info["io"]["outputs"] if x["name"] == primary_output(entry)), None)
    if o is None or o["name"] not in fid or "error" in fid[o["name"]]:
        return None
    f = fid[o["name"]]
    key = ("thresholded_iou" if "threshold" in o else "mean_abs_error") if o["kind"] == "dense_map" else next(iter(f))
    return [SHORT.get(key, key), f[key]]


def make_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def latency(entry, paths: dict, arrays: dict, rounds: int, threads: int) -> dict:
    """Median ms per run of every variant, rounds interleaved; batch 32 unless the model cannot."""
    sessions = {k: make_session(p, threads) for k, p in paths.items()}
    batch, note = (entry.fixed_batch, "fixed batch") if entry.fixed_batch else (32, "")
    n = zoo_index.n_samples(entry, arrays)
    feeds = zoo_index.slice_feeds(entry, arrays, 0, min(batch, n))
    try:
        sessions["fp32"].run(None, feeds)
    except Exception as e:
        batch, note = 1, f"batch 32 failed ({type(e).__name__}); batch 1"
        feeds = zoo_index.slice_feeds(entry, arrays, 0, 1)
    usable = {}
    for k, s in sessions.items():
        try:
            s.run(None, feeds)
            usable[k] = s
        except Exception as e:
            note += f"; {k} failed to run: {str(e).splitlines()[0][:120]}"
    t0 = time.perf_counter()
    usable["fp32"].run(None, feeds)
    iters = max(1, min(50, int(0.25 / max(time.perf_counter() - t0, 1e-4))))
    times = {k: [] for k in usable}
    for _ in range(rounds):
        for k, s in usable.items():
            t = time.perf_counter()
            for _ in range(iters):
                s.run(None, feeds)
            times[k].append((time.perf_counter() - t) / iters * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": min(batch, n), "note": note.strip("; "), "iters_per_round": iters, "rounds": rounds,
            "median_ms": med, "speedup": {k: med["fp32"] / v for k, v in med.items()}}


def evaluate(entry, path: Path, arrays: dict, threads: int):
    sess = make_session(path, threads)
    return zoo_index.run(entry, sess, arrays, batch=32)


# --- one model ----------------------------------------------------------------------------------------------------
def limit(entry, arrays: dict, n: int) -> dict:
    return {**zoo_index.slice_feeds(entry, arrays, 0, min(n, zoo_index.n_samples(entry, arrays))),
            **{k: v[:n] for k, v in zoo_index.extras(entry, arrays).items()}}


def bench_model(entry, tmp: Path, args) -> dict:
    t0 = time.perf_counter()
    row = {"model": entry.name, "family": entry.info.get("family"), "fixed_batch": entry.fixed_batch}
    row["ours"] = ours(entry, tmp, args.skip_optimize, args.timeout, args.placement_variants)
    row["ort"] = {act: ort_quant(entry, tmp, act, args.timeout) for act in ("u8", "s8")}
    arrays = limit(entry, zoo_index.load(entry.eval), args.max_eval)
    extras = zoo_index.extras(entry, arrays)
    d = tmp / entry.name
    variants = {"fp32": entry.model, "ours_q": d / "ours_q.onnx", **{k: d / f"{k}.onnx" for k in PLACEMENT_VARIANTS},
                "ours_p": d / "ours_p.onnx",
                "ours_o": d / "ours_o.onnx", "ort_u8": d / "ort_u8.onnx", "ort_s8": d / "ort_s8.onnx"}
    variants = {k: p for k, p in variants.items() if p.exists()}
    ref = evaluate(entry, entry.model, arrays, args.threads)
    row["fp32_task"] = task_metric(entry, ref, extras)
    row["results"] = {}
    for k, p in variants.items():
        if k == "fp32":
            continue
        try:
            out = evaluate(entry, p, arrays, args.threads)
            fid = fidelity(entry, ref, out)
            row["results"][k] = {"fidelity": fid, "primary_fidelity": primary(fid, entry),
                                 "primary_output": primary_output(entry),
                                 "task": task_metric(entry, out, extras), "size_bytes": p.stat().st_size}
        except Exception as e:
            row["results"][k] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    runnable = {k: p for k, p in variants.items() if k == "fp32" or "error" not in row["results"].get(k, {})}
    try:
        row["latency"] = latency(entry, runnable, arrays, args.rounds, args.threads)
    except Exception as e:
        row["latency"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    row["n_eval_used"] = zoo_index.n_samples(entry, arrays)
    row["checks"] = our_checks(entry, d)
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def our_checks(entry, d: Path) -> dict:
    """What onnxcompress itself said: quantize's self-check (kinds, floors, search) and optimize's gate."""
    out: dict = {"expected_kinds": {o["name"]: o["kind"] for o in entry.info["io"]["outputs"]}}
    q = _read_json(d / "q.json")
    if q and q.get("self_check"):
        c = q["self_check"]
        out["self_check"] = {"passed": c["passed"], "searched": c["searched"], "stopped": c["stopped"],
                             "data": c["data"], "trials": len((q.get("tune") or {}).get("trials", [])),
                             "kinds": {n: k["kind"] for n, k in c["kinds"].items()},
                             "baseline": {n: [f["metric"], f["value"], f["floor"]] for n, f in c["baseline"].items()},
                             "final": {n: [f["metric"], f["value"], f["floor"]] for n, f in c["final"].items()}}
    r = _read_json(d / "opt" / "report.json")
    if r:
        fid = (r.get("validation") or {}).get("fidelity") or {}
        batches = (r.get("profile") or {}).get("batches") or []
        out["optimize"] = {"passed": r.get("passed"), "verdict": r.get("verdict"),
                           "failed": (r.get("gate") or {}).get("failed", []),
                           "kinds": {n: f.get("kind") for n, f in fid.items()},
                           "speedup": batches[0].get("speedup") if batches else None}
    return out


# --- table ----------------------------------------------------------------------------------------------------
def _rc(r):
    return "-" if r is None else str(r["rc"])


def _f(v, fmt="{:.3f}"):
    return "-" if v is None else fmt.format(v)


def _fid(nv):
    if not nv:
        return "-"
    return f"{nv[0]} {nv[1]:.4f}" if nv[0] == "MAE" else f"{nv[0]} {nv[1]:.3f}"


PRIMARY_TASK = ("top1", "f1", "box_f1", "cer", "frame_accuracy", "loo_1nn_accuracy", "mean_detections_per_image")


def _task_value(task: dict):
    for k in PRIMARY_TASK:
        if isinstance(task.get(k), float):
            return k, task[k]
    for k, v in task.items():
        if isinstance(v, float):
            return k, v
    return None, None


def table_row(row: dict) -> str:
    res, lat = row["results"], row.get("latency", {})
    sp = lat.get("speedup", {})
    tk, fp = _task_value(row["fp32_task"])
    q, o = res.get("ours_q", {}), res.get("ours_o", {})
    _, qt = _task_value(q.get("task", {})) if "task" in q else (None, None)
    _, ot = _task_value(o.get("task", {})) if "task" in o else (None, None)
    ort_best = max(((k, v) for k, v in sp.items() if k.startswith("ort")), key=lambda kv: kv[1], default=(None, None))
    ort_fids = [res[k]["primary_fidelity"] for k in ("ort_u8", "ort_s8")
                if k in res and "error" not in res[k] and res[k].get("primary_fidelity")]
    lower_better = bool(ort_fids) and ort_fids[0][0] == "MAE"
    ort_fid = (min if lower_better else max)(ort_fids, key=lambda nv: nv[1]) if ort_fids else None
    oq, oo = row["ours"]["quantize"], row["ours"].get("optimize")

    def usable(rc, key):  # exit 0 but the written model does not load / run: "0!"
        return f"{rc}!" if rc == 0 and "error" in res.get(key, {"error": 1}) else str(rc)

    ours_rc = [usable(r["rc"], k) if r else "-" for r, k in ((oq, "ours_q"), (row["ours"]["prune"], "ours_p"),
                                                            (oo, "ours_o"))]
    return (f"| {row['model']} | {' | '.join(ours_rc)} | "
            f"{usable(row['ort']['u8']['rc'], 'ort_u8')}/{usable(row['ort']['s8']['rc'], 'ort_s8')} | "
            f"{tk or '-'} | {_f(fp)} | {_f(qt)} | "
            f"{_fid(q.get('primary_fidelity'))} | {_fid(ort_fid)} | {_f(sp.get('ours_q'), '{:.2f}x')} | "
            f"{_f(ort_best[1], '{:.2f}x')} {ort_best[0] or ''} | {_f(ot)} | {_f(sp.get('ours_o'), '{:.2f}x')} | "
            f"{_f(sp.get('ours_p'), '{:.2f}x')} | "
            f"{lat.get('batch', '-')} | {oq['wall_s']:.0f}s/{_f(oq['peak_rss_mb'], '{:.0f}')}MB | "
            f"{row['ort']['u8']['wall_s']:.0f}s/{_f(row['ort']['u8']['peak_rss_mb'], '{:.0f}')}MB |")


HEADER = ("| model | quantize rc | prune rc | optimize rc | ORT u8/s8 rc | task metric | fp32 | ours-q | "
          "ours-q fidelity | ORT best fidelity (u8/s8) | ours-q speed-up | ORT best speed-up | ours-o task | "
          "ours-o speed-up | pruned speed-up | batch | ours quantize wall/RSS | ORT u8 quantize wall/RSS |\n|"
          + "---|" * 18)


def placement_table(rows: list[dict]) -> str:
    """Default quantize (cost-model placement) vs --placement fixed (full INT8) vs --placement measure."""
    out = ["| model | variant | rc | int8-capable kept float | est. speed-up | measured speed-up | fidelity |",
           "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "results" not in row:
            continue
        sp = row.get("latency", {}).get("speedup", {})
        for key, cmd in (("ours_q", "quantize"), ("ours_fixed", "ours_fixed"), ("ours_measure", "ours_measure")):
            r = row["ours"].get(cmd)
            if r is None:
                continue
            p = r.get("placement") or {}
            kept = f"{len(p.get('float_nodes', []))}/{len(p.get('nodes', []))}" if p else "-"
            est = f"{p['estimated_speedup']:.2f}x" if p else "-"
            if p.get("measured"):
                est += f" (chose {p['measured']['chosen']})"
            fid = _fid(row["results"].get(key, {}).get("primary_fidelity"))
            label = {"ours_q": "default", "ours_fixed": "fixed", "ours_measure": "measure"}[key]
            out.append(f"| {row['model']} | {label} | {r['rc']} | {kept} | {est} | {_f(sp.get(key), '{:.2f}x')} | {fid} |")
    return "\n".join(out)
AFTER_HEADER = ("| model | kinds inferred (all match info.json?) | quantize rc | self-check: primary metric full INT8 -> "
                "written (floor) | searched (trials) | ours-q fidelity (bench) | ORT best fidelity | optimize rc | "
                "optimize gate: failed criteria | optimize speed-up median [90% interval] |\n|" + "---|" * 10)


def _short(message: str) -> str:
    """A failed criterion's message without its explanation: 'floor: output 'y' (kind): metric v < f'."""
    head = message.split("; kind:")[0].split(" (median")[0]
    return head.replace("|", "/")


def after_row(row: dict) -> str:
    checks, res = row.get("checks", {}), row["results"]
    expected = checks.get("expected_kinds", {})
    sc, opt = checks.get("self_check"), checks.get("optimize")
    kinds = (sc or {}).get("kinds") or (opt or {}).get("kinds") or {}
    match = "-" if not kinds else ("yes" if all(kinds.get(n) == k for n, k in expected.items()) else "NO")
    kinds_txt = ", ".join(f"{n}: {k}" for n, k in kinds.items()) or "-"
    prim = row["results"].get("ours_q", {}).get("primary_output")
    check_txt, searched = "-", "-"
    if sc:
        name = prim if prim in sc["final"] else next(iter(sc["final"]), None)
        if name:
            (m, v0, fl), (_, v1, _) = sc["baseline"][name], sc["final"][name]
            check_txt = f"{'PASS' if sc['passed'] else 'FAIL'} {m} {v0:.3f} -> {v1:.3f} ({fl:g})"
        searched = f"{'yes' if sc['searched'] else 'no'} ({sc['trials']})"
    ort_fids = [res[k]["primary_fidelity"] for k in ("ort_u8", "ort_s8")
                if k in res and "error" not in res[k] and res[k].get("primary_fidelity")]
    lower_better = bool(ort_fids) and ort_fids[0][0] == "MAE"
    ort_fid = (min if lower_better else max)(ort_fids, key=lambda nv: nv[1]) if ort_fids else None
    oo = row["ours"].get("optimize")
    failed = "-" if not opt else ("; ".join(_short(f) for f in opt["failed"]) or "none (PASSED)")
    est = (opt or {}).get("speedup")
    speed = "-" if not est else f"{est['median']:.2f}x [{est['lower']:.2f}-{est['upper']:.2f}]"
    return (f"| {row['model']} | {kinds_txt} ({match}) | {row['ours']['quantize']['rc']} | {check_txt} | {searched} | "
            f"{_fid(res.get('ours_q', {}).get('primary_fidelity'))} | {_fid(ort_fid)} | "
            f"{oo['rc'] if oo else '-'} | {failed} | {speed} |")


def cpu_info() -> dict:
    info = {"machine": platform.machine(), "cores": os.cpu_count()}
    try:
        txt = Path("/proc/cpuinfo").read_text()
        info["model"] = next(ln.split(":", 1)[1].strip() for ln in txt.splitlines() if ln.startswith("model name"))
        flags = set(next(ln.split(":", 1)[1] for ln in txt.splitlines() if ln.startswith("flags")).split())
        info["flags"] = {f: f in flags for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
                                                  "amx_tile", "amx_int8", "amx_bf16")}
    except (OSError, StopIteration):
        pass
    return info


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_ort-worker":
        return ort_worker(*sys.argv[2:6])
    if len(sys.argv) > 2 and sys.argv[1] == "--after":  # the self-check / kinds / gate table of a saved run
        print(AFTER_HEADER)
        for row in json.loads(Path(sys.argv[2]).read_text())["models"]:
            print(after_row(row) if "results" in row else f"| {row['model']} | bench error: {row.get('error')} |")
        return 0
    if len(sys.argv) > 2 and sys.argv[1] == "--table":  # re-render the table of a saved run
        print(HEADER)
        for row in json.loads(Path(sys.argv[2]).read_text())["models"]:
            if "results" not in row:
                print(f"| {row['model']} | bench error: {row.get('error')} |")
                continue
            try:  # primary output / metric from the current info.json
                e = zoo_index.get(row["model"])
                for r in row["results"].values():
                    if "fidelity" in r:
                        r["primary_fidelity"] = primary(r["fidelity"], e)
            except KeyError:
                for r in row["results"].values():
                    if "fidelity" in r and isinstance(r.get("primary_fidelity"), float):
                        r["primary_fidelity"] = ["agree", r["primary_fidelity"]]
            print(table_row(row))
        rows = json.loads(Path(sys.argv[2]).read_text())["models"]
        if any("ours_fixed" in r.get("ours", {}) for r in rows):
            print(placement_table(rows))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=None, help="comma-separated names (default: every fetched + bundled model)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of every timed / evaluated session")
    ap.add_argument("--max-eval", type=int, default=200, help="eval samples used for fidelity and task metrics")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per subprocess")
    ap.add_argument("--skip-optimize", action="store_true")
    ap.add_argument("--placement-variants", action="store_true",
                    help="also run quantize --placement fixed (full INT8) and --placement measure")
    ap.add_argument("--root", default=None, help="zoo root (default .cache/third_party)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "zoo.json"))
    args = ap.parse_args()
    import onnxruntime

    want = args.models.split(",") if args.models else None
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as td:
        tmp = Path(td)
        entries = bundled_entries(tmp) + zoo_index.entries(Path(args.root).resolve() if args.root else None)
        # the synthetic >2 GB model (models/third_party/make_big.py) only when named
        entries = [e for e in entries if (want is None and not e.info.get("synthetic")) or (want and e.name in want)]
        report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "cpu": cpu_info(),
                  "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
                  "threads": args.threads, "rounds": args.rounds, "max_eval": args.max_eval,
                  "rss_tool": TIME or "python wrapper (RUSAGE_CHILDREN of a one-child process)", "models": []}
        print(HEADER, flush=True)
        for e in entries:
            try:
                row = bench_model(e, tmp, args)
                print(table_row(row), flush=True)
            except Exception as ex:  # never stop the run
                row = {"model": e.name, "error": f"{type(ex).__name__}: {ex}"[:300]}
                print(f"| {e.name} | bench error: {row['error']} |", flush=True)
            report["models"].append(row)
            report["wall_s"] = round(time.perf_counter() - t_start, 1)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2, default=float) + "\n")
    if args.placement_variants:
        print(placement_table(report["models"]))
    print(f"wrote {args.out} ({report['wall_s']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
