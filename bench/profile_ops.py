#!/usr/bin/env python
"""Where a model's time goes: onnxruntime's profiler, kernel time summed per op type, for one or more models on the
same input batch (CPU provider, ORT_ENABLE_ALL, identical session options; the median model_run of the timed runs).

Usage: .venv/bin/python bench/profile_ops.py --data CALIB.npz [--batch 32] [--runs 5] [--threads 1] A.onnx [B.onnx ...]
The npz's arrays are fed by input name (the first ``--batch`` samples of each); a model with a fixed batch needs
``--batch`` equal to it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import tempfile

import numpy as np
import onnxruntime as ort


def profile(path: str, feeds: dict, runs: int, threads: int) -> tuple[float, dict[str, tuple[float, int]]]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "prof")
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feed = {i.name: feeds[i.name] for i in s.get_inputs()}
    for _ in range(2 + runs):
        s.run(None, feed)
    trace = s.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    run_us = [e["dur"] for e in events if e.get("name") == "model_run"][2:]
    per: dict[str, float] = collections.defaultdict(float)
    count: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["args"]["op_name"]] += e["dur"]
            count[e["args"]["op_name"]] += 1
    n = 2 + runs
    return float(np.median(run_us)) / 1e3, {op: (us / n / 1e3, count[op] // n) for op, us in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    data = np.load(args.data)
    feeds = {k: data[k][: args.batch] for k in data.files}
    print(f"# {platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, batch {args.batch}, "
          f"{args.threads} thread(s), {args.runs} timed runs")
    for path in args.models:
        median, ops = profile(path, feeds, args.runs, args.threads)
        print(f"{path}: model_run median {median:.1f} ms")
        for op, (ms, k) in sorted(ops.items(), key=lambda kv: -kv[1][0]):
            if ms >= 0.05:
                print(f"    {op:26s} {ms:8.2f} ms  x{k}")


if __name__ == "__main__":
    main()
