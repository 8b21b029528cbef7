"""Human-readable renderings of a report (its JSON form): rounded numbers, one line per stage, report.md.

Numbers are rounded for people: sizes in MB with two decimals, times in s/ms/µs with three significant digits,
fractions as percentages, everything else with four significant digits; the exact values stay in report.json.
The stage lines are what the console summary and report.md both say about each stage.
"""

from __future__ import annotations

import math
import re
from typing import Any

from onnxcompress._version import __version__


# --- numbers ----------------------------------------------------------------------------------------------------
def sig(v: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, no exponent for everyday magnitudes."""
    if isinstance(v, bool) or v is None:
        return "" if v is None else ("yes" if v else "no")
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if v == 0:
        return "0"
    if 1e-4 <= abs(v) < 1e9:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
        text = f"{v:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{v:.{digits - 1}g}"


def seconds(v: float | None) -> str:
    if v is None:
        return ""
    if v >= 1:
        return f"{sig(v, 3)} s"
    if v >= 1e-3:
        return f"{sig(v * 1e3, 3)} ms"
    return f"{sig(v * 1e6, 3)} µs"


def mb(nbytes: float | None) -> str:
    return "" if nbytes is None else f"{nbytes / 1e6:.2f} MB"


def pct(v: float | None, decimals: int = 1) -> str:
    return "" if v is None or isinstance(v, str) else f"{100 * v:.{decimals}f}%"


def count(n: float | None) -> str:
    if n is None:
        return ""
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


# --- what each stage did ----------------------------------------------------------------------------------------
def _stage_seconds(report: dict[str, Any], stage: str) -> float:
    return sum(p["seconds"] for p in report["passes"] if p.get("stage") == stage)


def quantize_line(q: dict[str, Any]) -> str:
    """One line for a quantize stage result (static or dynamic, verified or not, searched or not)."""
    cfg = q.get("config") or {}
    bits = 7 if (q.get("reduce_range") or {}).get("enabled") else 8
    parts = [f"{q['mode']} INT8 for target {cfg.get('target', '?')} ({bits}-bit weights"
             + (f", {q['activation_dtype']} activations)" if q.get("activation_dtype") else ")"),
             f"{len(q['quantized'])} nodes quantized, {len(q['skipped'])} kept float"]
    v = q.get("verification")
    if v:
        parts.append(f"int8 kernels on {v['provider']}: {v['weighted_int8']}/{v['weighted_total']} weighted layers "
                     f"({pct(q.get('weighted_coverage'), 0)})")
    elif q.get("kernel_ops"):
        parts.append("int8 kernels " + ", ".join(f"{k} {c}" for k, c in q["kernel_ops"].items()))
    elif not cfg.get("verify", True):
        parts.append("verification deferred (--no-verify): int8 kernels not checked on the target")
    c = q.get("self_check")
    if c:
        parts.append(f"self-check {'passed' if c['passed'] else 'FAILED'} on {c['data']}"
                     + (" after the search" if c["searched"] else ""))
    t = q.get("tune")
    if t:
        n = len(t["trials"])
        parts.append(f"search: {n} trial{'' if n == 1 else 's'}, goal {'met' if t['goal_met'] else 'NOT met'}"
                     f" ({t['goal']['metric']} drop {sig(t['best']['drop'], 3) if t.get('best') else '?'}"
                     f" <= {sig(t['goal']['max_drop'], 3)})")
    return "; ".join(parts)


def stage_lines(report: dict[str, Any]) -> list[str]:
    """``stage: what it did (time)`` for every stage that ran, from the pass records and stage results."""
    lines = []
    stages = report.get("stages") or {}
    passes = [p for p in report["passes"] if p.get("stage") == "preprocess"]
    if passes:
        changed = [p["name"].removesuffix("Pass") for p in passes if p["modified"]]
        lines.append(f"preprocess: {len(passes)} passes, changed by {', '.join(changed) or 'none'} "
                     f"({seconds(_stage_seconds(report, 'preprocess'))})")
    if "prune" in stages:
        p = stages["prune"]
        b, a = p["before"], p["after"]
        lines.append(f"prune: MACs {count(b['macs'])} -> {count(a['macs'])}, params {count(b['params'])} -> "
                     f"{count(a['params'])}, {len(p['groups'])} groups cut, {len(p['blocked'])} blocked "
                     f"({seconds(_stage_seconds(report, 'prune'))})")
    if "distill" in stages:
        d = stages["distill"]
        lines.append(f"distill: {len(d['reconstructed'])} layers reconstructed on {d['samples']} samples, "
                     f"{len(d['skipped'])} skipped ({seconds(_stage_seconds(report, 'distill'))})")
    if "quantize" in stages:
        lines.append(f"quantize: {quantize_line(stages['quantize'])} "
                     f"({seconds(_stage_seconds(report, 'quantize'))})")
    v = report.get("validation")
    if v:
        task = v.get("task") or {}
        metrics = ", ".join(f"{m} {sig(task['reference'][m])} -> {sig(task['candidate'][m])}"
                            for m in task.get("reference", {}))
        lines.append(f"validate: {v['samples']} samples" + (f", {metrics}" if metrics else ", no task metrics"))
    p = report.get("profile")
    if p and p.get("batches"):
        b = p["batches"][0]
        speed = f", speed-up {b['speedup_p50']:.2f}x at batch {b['batch_size']}" if b.get("speedup_p50") else ""
        lines.append(f"profile: {p['iterations']} interleaved runs per model{speed}")
    g = report.get("gate")
    if g:
        ok = sum(c["passed"] for c in g["criteria"])
        lines.append(f"gate: {ok}/{len(g['criteria'])} criteria passed")
    return lines


# --- Markdown ---------------------------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    return printable(sig(v)).replace("|", "\\|").replace("\n", " ")


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (ESC, BEL, CR, ...; tab and newline kept) shown as ``\\xNN`` escapes, so
    names from a model cannot drive a terminal."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)



def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows] + [""]


def render_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [f"# onnxcompress {report['kind']} report", "", f"**{report['verdict']}**", "",
             f"onnxcompress {__version__}, onnxruntime {env.get('versions', {}).get('onnxruntime', '?')},"
             f" providers {env.get('providers')}, {report['created']}", ""]
    summary = stage_lines(report)
    if summary:
        lines += ["## Summary", ""] + [f"- {s}" for s in summary] + [""]
    lines += _models(report["models"])
    if report["gate"]:
        lines += ["## Gate", ""] + table(["criterion", "result", "value", "threshold", "detail"], [
            [c["name"], "PASS" if c["passed"] else "**FAIL**", c["value"], c["threshold"], c["message"]]
            for c in report["gate"]["criteria"]])
    lines += _weights(report["models"])
    lines += _validation(report["validation"])
    lines += _quantize(report["stages"].get("quantize"))
    lines += _self_check((report["stages"].get("quantize") or {}).get("self_check"))
    lines += _profile(report["profile"])
    if report["passes"]:
        lines += ["## Passes", ""] + table(["stage", "pass", "changed", "time"], [
            [p.get("stage", ""), p["name"], "yes" if p["modified"] else "no", seconds(p["seconds"])]
            for p in report["passes"]])
    if report["decisions"]:
        shown, n = report["decisions"][:100], len(report["decisions"])
        lines += [f"## Decisions ({n}{', the first 100 shown' if n > len(shown) else ''})", ""]
        lines += table(["pass", "subject", "action", "reason"],
                              [[d["pass"], d["subject"], d["action"], d["reason"]] for d in shown])
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    return "\n".join(lines)


def _models(models: dict[str, Any]) -> list[str]:
    if not models:
        return []
    rows = [[k, m.get("path") or "(in memory)", mb(m.get("bytes")), count(m.get("macs")), count(m.get("params")),
             (m.get("sha256") or "")[:16]] for k, m in models.items()]
    return ["## Models", ""] + table(["role", "path", "size", "MACs", "params", "sha256"], rows)


def _weights(models: dict[str, Any]) -> list[str]:
    """Bytes of the constants per storage format, one column per model (before / after)."""
    have = {k: m["weights_by_format"] for k, m in models.items() if m.get("weights_by_format")}
    if not have:
        return []
    formats = sorted({f for w in have.values() for f in w})
    rows = [[f] + [_bytes(w.get(f, {}).get("bytes", 0)) for w in have.values()] for f in formats]
    rows.append(["total"] + [_bytes(sum(v["bytes"] for v in w.values())) for w in have.values()])
    return ["## Weights by storage format", ""] + table(["format", *have], rows)


def _bytes(n: int) -> str:
    return mb(n) if n >= 1e6 else f"{n:,} B"


def _validation(v: dict[str, Any] | None) -> list[str]:
    if not v:
        return []
    lines = [f"## Validation ({v['samples']} samples)", ""]
    task = v.get("task")
    if task:
        lines += table(["metric", "reference", "candidate"], [
            [m, task["reference"].get(m), task["candidate"].get(m)] for m in task["reference"]])
    kinds = {o: f for o, f in v["fidelity"].items() if "kind" in f}
    if kinds:
        lines += table(["output", "kind", "why", "metric", "value", "floor", "meets floor"], [
            [o, f["kind"], f["reason"], f["metric"], f["value"], f["floor"]["floor"],
             "yes" if f["floor"]["passed"] else "**NO**"] for o, f in kinds.items()])
    lines += table(["output", "top-1 agreement", "cosine", "SQNR dB", "max abs err", "mean abs err"], [
        [o, pct(f.get("top1_agreement"), 2), f["cosine"], f["sqnr_db"], f["max_abs_error"], f["mean_abs_error"]]
        for o, f in v["fidelity"].items()])
    lines += table(["output", "atol", "rtol", "stat", "result", "would pass with atol", "or rtol"], [
        [o, c["atol"], c["rtol"], c["check_stat"], "PASS" if c["passed"] else "FAIL", c["would_pass"]["atol"],
         c["would_pass"]["rtol"]] for o, c in v["comparison"].items()])
    return lines + [f"- {n}" for n in v.get("notes", [])] + ([""] if v.get("notes") else [])


def _quantize(q: dict[str, Any] | None) -> list[str]:
    if not q:
        return []
    cfg = q.get("config") or {}
    lines = ["## Quantization", "", f"- {quantize_line(q)}",
             f"- weights: {7 if q['reduce_range']['enabled'] else 8} bits ({q['reduce_range']['reason']}), "
             f"target {cfg.get('target')}, calibrator {q.get('calibrator') or '-'}",
             f"- constant tensors: {mb(q['size']['before_bytes'])} -> {mb(q['size']['after_bytes'])}"]
    v = q.get("verification")
    if v:
        lines.append(f"- int8 kernel coverage: {pct(v['coverage'])} of the quantizable nodes, "
                     f"{v['weighted_int8']}/{v['weighted_total']} layers with weights; kernels "
                     + ", ".join(f"{k} {c}" for k, c in v["kernel_ops"].items()))
    elif not cfg.get("verify", True):
        lines.append("- **verification deferred** (`--no-verify`): the model was not opened in the target's "
                     "onnxruntime provider; run `onnxcompress gate ... --providers` on the target to check it")
    lines.append("")
    kept = [[s["node"], s["reason"]] for s in q["skipped"]] + \
           [[f["node"], f"{f['op']}: {f['reason']}"] for f in (v or {}).get("float_nodes", [])]
    if kept:
        lines += [f"### Kept float ({len(kept)})", ""] + table(["node", "why"], kept)
    t = q.get("tune")
    if t:
        lines += [f"### Mixed-precision search: goal {'met' if t['goal_met'] else 'NOT met'} "
                  f"({t['goal']['metric']} drop <= {sig(t['goal']['max_drop'])}, stopped: {t['stopped']})", ""]
        lines += table(["trial", "phase", "mode", "drop", "speed-up", "higher precision"], [
            [tr["trial"], tr["phase"], tr["mode"], tr["drop"], (tr.get("latency") or {}).get("speedup"),
             ", ".join(f"{n}={p}" for n, p in tr["higher_precision"].items()) or "full int8"] for tr in t["trials"]])
    return lines


def _self_check(c: dict[str, Any] | None) -> list[str]:
    if not c:
        return []
    word = "passed" if c["passed"] else "**FAILED**"
    lines = [f"## Quantize self-check ({word}, on {c['data']})", ""]
    lines += table(["output", "kind", "metric", "full INT8", "written", "floor", "meets"], [
        [o, f["kind"], f["metric"], c["baseline"][o]["value"], f["value"], f["floor"], "yes" if f["passed"] else "**NO**"]
        for o, f in c["final"].items()])
    if c["searched"]:
        lines += [f"- the accuracy-aware search ran: {c['stopped']}", ""]
    return lines


def _profile(p: dict[str, Any] | None) -> list[str]:
    if not p:
        return []
    rows = []
    for b in p["batches"]:
        for name, s in b["models"].items():
            rows.append([b["batch_size"], name, s["p50_ms"], s["p90_ms"], s["p99_ms"], s["mean_ms"],
                         s["throughput_per_s"], b.get("speedup_p50")])
    lines = [f"## Latency ({p['providers']}, threads {p['threads']}, {p['iterations']} interleaved runs)", ""]
    lines += table(["batch", "model", "p50 ms", "p90 ms", "p99 ms", "mean ms", "samples/s", "speed-up p50"], rows)
    rounds = [[b["batch_size"], e["median"], e["lower"], e["upper"], e["confidence"], e["rounds"], e["stopped"]]
              for b in p["batches"] if (e := b.get("speedup"))]
    if rounds:
        lines += table(["batch", "speed-up (median of rounds)", "lower bound", "upper bound", "confidence",
                        "A/B rounds", "stopped"], rounds)
    for name, prof in (p.get("op_profile") or {}).items():
        top = list(prof["op_type_time"].items())[:10]
        lines += [f"### Time by op type: {name}", ""] + table(["op type", "share"], [
            [op, pct(t["share"])] for op, t in top])
    return lines
