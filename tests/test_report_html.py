"""report.html (every chart, self-contained, rendered by headless Chromium) and report.md (complete, rounded)."""

import itertools
import json
import re
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from onnxcompress import api
from onnxcompress.recipe import Recipe
from onnxcompress.report_html import charts, nice_ticks, render_html
from onnxcompress.report_text import seconds, sig
from support import fragile

CHARTS = {"size", "sensitivity", "trials", "latency-0", "op-share"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    """A real optimize run whose report has every plottable measurement: a search that ranks layers by sensitivity
    and times the trials that meet the goal, and a profile with raw per-run latencies and per-op time."""
    d = tmp_path_factory.mktemp("html")
    model = fragile.fragile_mlp()
    onnx.save(model, d / "model.onnx")
    np.savez(d / "calib.npz", **fragile.fragile_data(model))
    recipe = Recipe.from_dict({"tune": {"max_drop": 0.02, "metric": "top1", "measure_latency": True,
                                        "latency_iterations": 5, "top_k": 3},
                               "quantize": {"placement": "fixed"},  # the search's trials, not the placement
                               "validate": {"profile": {"iterations": 20, "warmup": 2, "max_rounds": 5}}})
    _, report = api.optimize(d / "model.onnx", recipe=recipe, calib=d / "calib.npz", output=d / "out.onnx")
    report.write(d / "report")
    return d / "report"


def test_every_chart_is_in_the_page_and_nothing_is_fetched(report_dir):
    page = (report_dir / "report.html").read_text()
    names = set(re.findall(r'data-chart="([^"]+)"', page))
    assert names == CHARTS
    for name in CHARTS:  # each chart has marks of its own
        figure = page.split(f'data-chart="{name}"', 1)[1].split("</figure>", 1)[0]
        assert figure.count('class="mark') >= 2, name
    assert 'class="mark chosen"' in page  # the chosen trial is marked
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page) and "<link" not in page  # self-contained
    data = json.loads((report_dir / "report.json").read_text())
    samples = data["profile"]["batches"][0]["samples_ms"]
    assert set(samples) == {"reference", "candidate"} and len(samples["candidate"]) == 20


def _browser():
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(*args, profile):
    browser = _browser()
    if browser is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium; .ci/run does it)")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_html_renders_in_headless_chromium_with_every_chart_drawn(report_dir, tmp_path):
    url = (report_dir / "report.html").resolve().as_uri()
    dom = _chromium("--virtual-time-budget=5000", "--dump-dom", url, profile=tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    figures = re.findall(r'<figure class="chart" data-chart="([^"]+)"[^>]*>', dom.stdout)
    assert set(figures) == CHARTS
    for tag in re.findall(r'<figure class="chart"[^>]*>', dom.stdout):  # set by the page's script after layout
        assert 'data-drawn="yes"' in tag, tag
        assert int(re.search(r'data-marks="(\d+)"', tag).group(1)) >= 2, tag
    shot = tmp_path / "report.png"
    r = _chromium("--window-size=1000,2600", f"--screenshot={shot}", url, profile=tmp_path / "p2")
    assert r.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_markdown_is_complete_and_rounded(report_dir):
    md = (report_dir / "report.md").read_text()
    for heading in ("## Summary", "## Models", "## Quantization", "### Kept float", "### Mixed-precision search",
                    "## Latency", "## Gate"):
        assert heading in md, heading
    assert "int8 kernel coverage:" in md and "weights: 7 bits" in md
    assert re.search(r"\| MACs \|", md) and "MB" in md
    long = [n for n in re.findall(r"\d+\.\d+", md) if len(n.replace(".", "").lstrip("0")) > 4]
    assert not long, long  # rounded: no 0.510156 or 0.992188
    assert "e-06" not in md and "| False |" not in md and "| True |" not in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| y |") and ("PASS" in ln or "FAIL" in ln)]
    assert rows  # the tolerance row reads PASS/FAIL, not True/False


def test_charts_are_skipped_without_their_data():
    report = {"models": {}, "stages": {}, "profile": None}
    assert charts(report) == []
    page = render_html({**report, "kind": "validate", "created": "now", "tool": {"version": "0"}, "verdict": "DONE",
                        "passes": [], "gate": None, "validation": None, "warnings": []})
    assert "No plottable measurements" in page


def test_number_formatting():
    assert sig(0.510156) == "0.5102" and sig(8e-06) == "8e-06" and sig(123456.7) == "123457" and sig(2) == "2"
    assert seconds(8e-06) == "8 µs" and seconds(0.0123) == "12.3 ms" and seconds(75.0) == "75 s"
    ticks = nice_ticks(0.13, 0.97)
    assert ticks[0] <= 0.13 and ticks[-1] >= 0.97 and all(b > a for a, b in itertools.pairwise(ticks))
