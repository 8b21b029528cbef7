"""How fast, and in how little memory, hostile data is refused (issue 12's cases).

Builds, in a temporary folder: a deflated .npz whose one float32 array (an honest header) decompresses to
``--gigabytes`` GB of zeros (the issue's 4 MB -> 4.3 GB zip bomb), and a ~200-byte .npz whose header declares
10^12 float32 elements. Each is given to ``onnxcompress validate`` in a fresh process; the wall time and the peak
resident memory of that process (``ru_maxrss`` of the child) are printed, with the exit code and the error line.

    .venv/bin/python bench/data_limits.py [--gigabytes 4.3]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import graphs  # noqa: E402


def npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def zip_bomb(path: Path, gigabytes: float) -> Path:
    n = int(gigabytes * 1e9) // (3 * 8 * 8 * 4)
    left = n * 3 * 8 * 8 * 4
    chunk = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z, \
            z.open("x.npy", "w", force_zip64=True) as f:
        f.write(npy_header((n, 3, 8, 8)))
        while left:
            f.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    return path


def lying_header(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", npy_header((10**12,)) + bytes(16))
    return path


def measure(model: Path, data: Path) -> tuple[float, float, int, str]:
    """(seconds, peak RSS MB of that child alone, exit code, error line) of `onnxcompress validate` in a new process."""
    start = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", "from onnxcompress.cli import main; main()", "validate", str(model),
                          str(model), "--data", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - start
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    return seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), lines[0] if lines else err[-200:]


def check_in_process(data: Path) -> tuple[float, float, str]:
    """(milliseconds, peak MB allocated by Python, error) of load_input_data alone: the header check."""
    import tracemalloc

    from onnxcompress.data import load_input_data
    from onnxcompress.errors import DataError

    tracemalloc.start()
    start = time.perf_counter()
    try:
        load_input_data(data)
        message = "accepted"
    except DataError as e:
        message = type(e).__name__
    ms = (time.perf_counter() - start) * 1e3
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return ms, peak, message


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gigabytes", type=float, default=4.3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onnxcompress-limits-") as tmp:
        d = Path(tmp)
        onnx.save(graphs.conv_bn_head(), d / "m.onnx")
        start = time.perf_counter()
        bomb = zip_bomb(d / "bomb.npz", args.gigabytes)
        print(f"zip bomb: {bomb.stat().st_size / 1e6:.2f} MB on disk -> {args.gigabytes:g} GB decompressed "
              f"(built in {time.perf_counter() - start:.0f} s)")
        lie = lying_header(d / "lie.npz")
        print(f"lying header: {lie.stat().st_size} bytes on disk, declares 10^12 float32 (4 TB)")
        baseline = d / "good.npz"
        np.savez(baseline, x=np.zeros((8, 3, 8, 8), np.float32))
        for name, path in (("a good 8-sample npz (baseline)", baseline), ("zip bomb", bomb), ("lying header", lie)):
            seconds, rss, code, line = measure(d / "m.onnx", path)
            ms, peak, what = check_in_process(path)
            print(f"{name}: CLI exit {code} in {seconds:.2f} s (process start included), peak RSS {rss:.0f} MB; "
                  f"load_input_data alone: {what} in {ms:.1f} ms, {peak:.2f} MB allocated; {line}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
