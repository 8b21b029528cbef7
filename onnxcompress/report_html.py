"""report.html: one self-contained page (no network, no JavaScript library) with the report's plots as inline SVG.

Charts, each drawn only when the report has its data: size / MACs / parameters of the candidate relative to the
reference; per-layer quantization sensitivity (output SQNR when only that layer is quantized); accuracy drop vs
speed-up of every search trial with the chosen one marked; latency distributions of the reference and the
candidate (every timed run); per-op-type share of kernel time. Every chart is a ``<figure class="chart"
data-chart=NAME>`` whose marks carry ``class="mark"``; a few lines of inline script mark each figure
``data-drawn="yes"`` once its SVG has a non-empty rendered box (what the headless-browser test checks).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from onnxcompress.report_text import count, mb, pct, sig, stage_lines

W, H = 860, 300
ML, MR, MT, MB = 170, 24, 34, 46  # margins: left (labels), right, top (title), bottom (axis)
COLORS = {"reference": "#8a949e", "candidate": "#2d7dd2", "chosen": "#e8702a", "other": "#5c9e4a"}
PALETTE = ("#2d7dd2", "#8a949e", "#5c9e4a", "#b04f9e")


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


# --- scales -----------------------------------------------------------------------------------------------------
def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _linear(d0: float, d1: float, r0: float, r1: float) -> Callable[[float], float]:
    span = (d1 - d0) or 1.0
    return lambda v: r0 + (v - d0) / span * (r1 - r0)


def _svg(title: str, body: list[str], height: int = H) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {height}" width="{W}" height="{height}" '
            f'role="img" aria-label="{_esc(title)}"><text x="{W / 2}" y="20" class="title">{_esc(title)}</text>'
            + "".join(body) + "</svg>")


def _x_axis(ticks: list[float], x: Callable[[float], float], y0: float, label: str, fmt=sig) -> list[str]:
    out = [f'<line x1="{x(ticks[0]):.1f}" y1="{y0}" x2="{x(ticks[-1]):.1f}" y2="{y0}" class="axis"/>']
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y0 + 4}" class="axis"/>'
                   f'<text x="{x(t):.1f}" y="{y0 + 16}" class="tick">{_esc(fmt(t))}</text>')
    out.append(f'<text x="{(x(ticks[0]) + x(ticks[-1])) / 2:.1f}" y="{y0 + 34}" class="label">{_esc(label)}</text>')
    return out


def _y_axis(ticks: list[float], y: Callable[[float], float], x0: float, label: str, height: int = H) -> list[str]:
    out = [f'<line x1="{x0}" y1="{y(ticks[0]):.1f}" x2="{x0}" y2="{y(ticks[-1]):.1f}" class="axis"/>']
    for t in ticks:
        out.append(f'<line x1="{x0 - 4}" y1="{y(t):.1f}" x2="{W - MR}" y2="{y(t):.1f}" class="grid"/>'
                   f'<text x="{x0 - 7}" y="{y(t) + 4:.1f}" class="tick end">{_esc(sig(t))}</text>')
    out.append(f'<text x="14" y="{(y(ticks[0]) + y(ticks[-1])) / 2:.1f}" class="label" '
               f'transform="rotate(-90 14 {(y(ticks[0]) + y(ticks[-1])) / 2:.1f})">{_esc(label)}</text>')
    return out


def _legend(names: Sequence[str], colors: Sequence[str]) -> list[str]:
    out, x = [], ML
    for name, color in zip(names, colors):
        out.append(f'<rect x="{x}" y="28" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="37" class="tick start">{_esc(name)}</text>')
        x += 34 + 7 * len(name)
    return out


# --- chart kinds ------------------------------------------------------------------------------------------------
def hbars(title: str, labels: list[str], series: dict[str, list[float]], axis_label: str,
          notes: dict[str, list[str]] | None = None) -> str:
    """Horizontal grouped bars: one row per label, one bar per series."""
    names = list(series)
    colors = [COLORS.get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    row = max(14 * len(names) + 8, 20)
    height = MT + 20 + row * len(labels) + MB
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    lo, hi = min([0.0, *values]), max([0.0, *values])
    ticks = nice_ticks(lo, hi)
    x = _linear(ticks[0], ticks[-1], ML, W - MR - (190 if notes else 0))  # room for the value labels
    top = MT + 20
    body = _legend(names, colors) if len(names) > 1 else []
    body += _x_axis(ticks, x, height - MB, axis_label)
    for i, label in enumerate(labels):
        y = top + i * row
        body.append(f'<text x="{ML - 6}" y="{y + row / 2 + 4:.1f}" class="tick end">'
                    f'{_esc(label[:28])}</text>')
        for j, name in enumerate(names):
            v = series[name][i]
            if not math.isfinite(v):
                continue
            x0, x1 = sorted((x(0.0), x(v)))
            note = (notes or {}).get(name, [""] * len(labels))[i]
            body.append(f'<rect class="mark" x="{x0:.1f}" y="{y + 4 + 14 * j}" width="{max(x1 - x0, 1):.1f}" '
                        f'height="12" fill="{colors[j]}"><title>{_esc(f"{label} {name}: {sig(v)} {note}")}'
                        f'</title></rect>')
            if note:
                body.append(f'<text x="{x1 + 4:.1f}" y="{y + 14 + 14 * j}" class="tick start">'
                            f'{_esc(note)}</text>')
    return _svg(title, body, height)


def scatter(title: str, points: list[tuple[float, float, str, bool]], xlabel: str, ylabel: str,
            goal: float | None = None) -> str:
    """Points (x, y, tooltip, chosen); the chosen point is drawn larger, in its own color; ``goal``: a dashed
    horizontal line."""
    xs, ys = [p[0] for p in points], [p[1] for p in points] + ([goal] if goal is not None else [])
    xt, yt = nice_ticks(min(xs), max(xs)), nice_ticks(min([0.0, *ys]), max(ys))
    x = _linear(xt[0], xt[-1], ML, W - MR)
    y = _linear(yt[0], yt[-1], H - MB, MT + 20)
    body = _legend(["trial", "chosen"], [COLORS["candidate"], COLORS["chosen"]])
    body += _y_axis(yt, y, ML, ylabel) + _x_axis(xt, x, H - MB, xlabel)
    if goal is not None:
        body.append(f'<line x1="{ML}" y1="{y(goal):.1f}" x2="{W - MR}" y2="{y(goal):.1f}" stroke="{COLORS["chosen"]}" '
                    f'stroke-dasharray="5 4"/><text x="{W - MR}" y="{y(goal) - 4:.1f}" class="tick" '
                    f'text-anchor="end">goal</text>')
    for px, py, tip, chosen in sorted(points, key=lambda p: p[3]):
        color, r = (COLORS["chosen"], 7) if chosen else (COLORS["candidate"], 4)
        body.append(f'<circle class="mark{" chosen" if chosen else ""}" cx="{x(px):.1f}" cy="{y(py):.1f}" r="{r}" '
                    f'fill="{color}" fill-opacity="0.85"><title>{_esc(tip)}</title></circle>')
    return _svg(title, body)


def histogram(title: str, series: dict[str, list[float]], xlabel: str, bins: int = 30) -> str:
    """Overlaid histograms on shared bins (counts per bin)."""
    values = [v for vs in series.values() for v in vs]
    lo, hi = min(values), max(values)
    if hi <= lo:
        hi = lo + max(abs(lo) * 0.01, 1e-6)
    width = (hi - lo) / bins
    counts = {n: [0] * bins for n in series}
    for n, vs in series.items():
        for v in vs:
            counts[n][min(int((v - lo) / width), bins - 1)] += 1
    xt = nice_ticks(lo, hi)
    yt = nice_ticks(0, max(max(c) for c in counts.values()))
    x = _linear(xt[0], xt[-1], ML, W - MR)
    y = _linear(yt[0], yt[-1], H - MB, MT + 20)
    names = list(series)
    colors = [COLORS.get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    body = _legend(names, colors) + _y_axis(yt, y, ML, "runs") + _x_axis(xt, x, H - MB, xlabel)
    for name, color in zip(names, colors):
        for i, c in enumerate(counts[name]):
            if c:
                x0, x1 = x(lo + i * width), x(lo + (i + 1) * width)
                body.append(f'<rect class="mark" x="{x0:.1f}" y="{y(c):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                            f'height="{y(0) - y(c):.1f}" fill="{color}" fill-opacity="0.6"><title>{_esc(name)}: '
                            f'{c} runs in {sig(lo + i * width)}-{sig(lo + (i + 1) * width)} ms</title></rect>')
    return _svg(title, body)


# --- the charts of a report -------------------------------------------------------------------------------------
def size_chart(report: dict[str, Any]) -> str | None:
    m = report["models"]
    ref, cand = m.get("reference"), m.get("candidate")
    if not ref or not cand:
        return None
    rows = [("size", "bytes", mb), ("MACs", "macs", count), ("parameters", "params", count)]
    rows = [r for r in rows if ref.get(r[1]) and cand.get(r[1]) is not None]
    labels = [r[0] for r in rows]
    series = {"reference": [100.0] * len(rows), "candidate": [100.0 * cand[k] / ref[k] for _, k, _ in rows]}
    notes = {"reference": [f(ref[k]) for _, k, f in rows], "candidate": [f(cand[k]) for _, k, f in rows]}
    return hbars("Size, MACs and parameters (reference = 100%)", labels, series, "% of the reference", notes)


def sensitivity_chart(report: dict[str, Any], limit: int = 30) -> str | None:
    tune = ((report["stages"].get("quantize") or {}).get("tune") or {})
    nodes = (tune.get("sensitivity") or {}).get("nodes") or []
    nodes = [n for n in nodes if isinstance(n.get("proxy_sqnr_db"), (int, float))][:limit]
    if not nodes:
        return None
    values = [min(float(n["proxy_sqnr_db"]), 120.0) for n in nodes]
    notes = [f"rank {n['rank']}" + (f", gain if float {sig(n['gain_if_float'], 3)}" if "gain_if_float" in n else "")
             for n in nodes]
    labels = [f"{n['node']} ({n['op']})" for n in nodes]
    return hbars(f"Per-layer sensitivity ({len(nodes)} most sensitive first)", labels, {"SQNR dB": values},
                 "SQNR dB (lower = more sensitive)", {"SQNR dB": notes})


def trials_chart(report: dict[str, Any]) -> str | None:
    tune = ((report["stages"].get("quantize") or {}).get("tune") or {})
    trials = tune.get("trials") or []
    if not trials:
        return None
    best = (tune.get("best") or {}).get("trial")
    speeds = [float(t["latency"]["speedup"]) for t in trials if t.get("latency")]
    # the search times only the trials that meet the goal: the others stand in a column left of the timed ones
    untimed_x = (min(speeds) - 0.15 * (max(speeds) - min(speeds) or max(speeds) or 1.0)) if speeds else None
    points = []
    for t in trials:
        timed = bool(t.get("latency"))
        xv = float(t["latency"]["speedup"]) if timed else (untimed_x if speeds else float(t["trial"]))
        kept = ", ".join(f"{n}={p}" for n, p in t["higher_precision"].items()) or "full int8"
        speed = f", {sig(t['latency']['speedup'], 3)}x fp32" if timed else ", not timed (missed the goal)"
        points.append((xv, float(t["drop"]), f"trial {t['trial']} {t['phase']}: drop {sig(t['drop'])}{speed}; "
                       f"{kept}", t["trial"] == best))
    if speeds:
        xlabel = "speed-up over fp32 (p50); trials that missed the goal are not timed (left column)"
    else:
        xlabel = "trial (latency not measured in this search)"
    return scatter(f"Search trials: {tune['goal']['metric']} drop vs {'speed-up' if speeds else 'trial'} "
                   f"(goal: drop <= {sig(tune['goal']['max_drop'])})", points, xlabel,
                   f"{tune['goal']['metric']} drop", goal=float(tune["goal"]["max_drop"]))


def latency_charts(report: dict[str, Any]) -> list[str]:
    out = []
    for b in (report.get("profile") or {}).get("batches", []):
        samples = b.get("samples_ms") or {}
        if samples:
            out.append(histogram(f"Latency of every timed run, batch {b['batch_size']}", samples, "ms per run"))
    return out


def op_share_chart(report: dict[str, Any], limit: int = 12) -> str | None:
    profiles = (report.get("profile") or {}).get("op_profile") or {}
    if not profiles:
        return None
    totals: dict[str, float] = {}
    for prof in profiles.values():
        for op, t in prof["op_type_time"].items():
            totals[op] = totals.get(op, 0.0) + float(t["share"])
    ops = sorted(totals, key=lambda o: -totals[o])[:limit]
    series = {name: [100.0 * float(prof["op_type_time"].get(op, {}).get("share", 0.0)) for op in ops]
              for name, prof in profiles.items()}
    return hbars("Share of kernel time per op type", ops, series, "% of the model's kernel time")


# --- the page ---------------------------------------------------------------------------------------------------
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:980px;color:#1d2329}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:26px 0 8px;border-bottom:1px solid #dde2e6}
.verdict{font:600 15px ui-monospace,monospace;padding:8px 12px;border-radius:6px;background:#eef2f5}
.PASSED{background:#e3f4e1} .FAILED{background:#fbe4e2}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #dde2e6;padding:3px 8px;text-align:left}
th{background:#f4f6f8} .fail{color:#b42318;font-weight:600} .pass{color:#27692b}
figure.chart{margin:10px 0 18px;padding:6px;border:1px solid #e6eaed;border-radius:6px}
figcaption{color:#58636e;font-size:12px}
svg .title{font-size:13px;font-weight:600;text-anchor:middle} svg .tick{font-size:11px;fill:#444;text-anchor:middle}
svg .label{font-size:12px;fill:#333;text-anchor:middle} svg .axis{stroke:#555} svg .grid{stroke:#e3e6e8}
svg .tick.end{text-anchor:end} svg .tick.start{text-anchor:start}
"""

_CHECK = """
document.querySelectorAll('figure.chart').forEach(function (f) {
  var s = f.querySelector('svg'), b = s ? s.getBBox() : null;
  var marks = f.querySelectorAll('.mark').length;
  f.setAttribute('data-marks', marks);
  f.setAttribute('data-drawn', b && b.width > 0 && b.height > 0 && marks > 0 ? 'yes' : 'no');
});
"""


def _figure(name: str, svg: str | None, caption: str) -> str:
    if svg is None:
        return ""
    return f'<figure class="chart" data-chart="{name}">{svg}<figcaption>{_esc(caption)}</figcaption></figure>'


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr" + (f' class="{classes[i]}"' if classes else "") + ">" + "".join(
        f"<td>{_esc(c if isinstance(c, str) else sig(c))}</td>" for c in row) + "</tr>" for i, row in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _sections(report: dict[str, Any]) -> list[str]:
    out = []
    lines = stage_lines(report)
    if lines:
        out.append("<h2>What each stage did</h2><ul>" + "".join(f"<li>{_esc(s)}</li>" for s in lines) + "</ul>")
    gate = report.get("gate")
    if gate:
        out.append("<h2>Gate</h2>" + _table(
            ["criterion", "result", "value", "threshold", "detail"],
            [[c["name"], "PASS" if c["passed"] else "FAIL", c["value"], c["threshold"], c["message"]]
             for c in gate["criteria"]], ["pass" if c["passed"] else "fail" for c in gate["criteria"]]))
    v = report.get("validation")
    if v and v.get("task"):
        task = v["task"]
        out.append(f"<h2>Task metrics ({v['samples']} samples)</h2>" + _table(
            ["metric", "reference", "candidate"], [[m, task["reference"][m], task["candidate"].get(m)]
                                                   for m in task["reference"]]))
    if v:
        out.append("<h2>Fidelity</h2>" + _table(
            ["output", "top-1 agreement", "cosine", "SQNR dB", "max abs err"],
            [[o, pct(f.get("top1_agreement"), 2), f["cosine"], f["sqnr_db"], f["max_abs_error"]]
             for o, f in v["fidelity"].items()]))
    if report.get("warnings"):
        out.append("<h2>Warnings</h2><ul>" + "".join(f"<li>{_esc(w)}</li>" for w in report["warnings"]) + "</ul>")
    return out


def charts(report: dict[str, Any]) -> list[str]:
    """Every chart this report has data for, as <figure> elements."""
    figs = [_figure("size", size_chart(report), "Candidate relative to the reference; labels give the values."),
            _figure("sensitivity", sensitivity_chart(report),
                    "Output SQNR of each layer when only that layer is INT8 (one-pass proxy of the mixed-precision "
                    "search, on the calibration data); 'gain if float' is the measured metric gain of keeping it "
                    "float."),
            _figure("trials", trials_chart(report), "Every trial of the search; the chosen plan is orange.")]
    figs += [_figure(f"latency-{i}", svg, "Interleaved runs with identical session options.")
             for i, svg in enumerate(latency_charts(report))]
    figs.append(_figure("op-share", op_share_chart(report), "From a separate onnxruntime profiling session."))
    return [f for f in figs if f]


def render_html(report: dict[str, Any]) -> str:
    verdict = report.get("verdict") or ""
    state = verdict.split(" ", 1)[0]
    figs = charts(report)
    prof = report.get("profile") or {}
    timing = f"{prof.get('iterations')} interleaved runs on {prof.get('providers')}" if prof else "not profiled"
    head = (f'<h1>onnxcompress {_esc(report["kind"])} report</h1><p>{_esc(report["created"])} · onnxcompress '
            f'{_esc(report["tool"]["version"])} · latency: {_esc(timing)}</p>'
            f'<p class="verdict {_esc(state)}">{_esc(verdict)}</p>')
    plots = "<h2>Plots</h2>" + ("".join(figs) if figs else "<p>No plottable measurements in this report.</p>")
    data = json.dumps({"charts": [f.split('data-chart="', 1)[1].split('"', 1)[0] for f in figs]})
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>onnxcompress report</title>"
            f"<style>{_STYLE}</style></head><body>{head}{plots}{''.join(_sections(report))}"
            f'<script type="application/json" id="charts">{data}</script><script>{_CHECK}</script>'
            "</body></html>\n")


__all__ = ["render_html", "charts", "nice_ticks"]
