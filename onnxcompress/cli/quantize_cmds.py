"""CLI commands: quantize and sensitivity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from onnxcompress.cli.app import _check_outputs, _guarded, app


# --- quantize ---------------------------------------------------------------------------------------------------
@app.command()
def quantize(
    model: Path = typer.Argument(..., help="The float .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the quantized (QDQ) model."),
    calib: Path = typer.Option(..., "--calib", help="Calibration data: .npz file or directory of .npz/.npy."),
    target: str = typer.Option("cpu", "--target", help="cpu (uint8 activations) | cuda | tensorrt (int8)."),
    calibrator: str = typer.Option("minmax", "--calibrator", help="minmax | percentile | entropy | mse."),
    percentile: float = typer.Option(99.999, "--percentile", help="Percentile for --calibrator percentile."),
    per_tensor: bool = typer.Option(False, "--per-tensor", help="Per-tensor weight scales (default per-channel)."),
    include: Optional[list[str]] = typer.Option(None, "--include", help="Only these nodes: name, op type or re:REGEX."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Keep these float: name, op type or re:REGEX."),
    layer_policy: str = typer.Option("quantize", "--layer-policy", help="quantize | skip_first | skip_last | skip_first_last."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Use at most this many calibration samples."),
    batch_size: int = typer.Option(32, "--batch-size", help="Calibration batch size."),
    bias_correction: bool = typer.Option(False, "--bias-correction",
                                         help="Correct each quantized layer's bias so its mean output matches the float model's."),
    mode: str = typer.Option("static", "--mode", help="static (QDQ, calibrated) | dynamic (MatMul/Gemm, "
                             "activations quantized at run time)."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Accuracy goal: search a mixed-precision "
                                             "plan whose --metric drop is <= this fraction (0.005 = half a point)."),
    metric: str = typer.Option("auto", "--metric", help="Goal metric for --max-drop: top1 | agreement | cosine "
                               "(auto: top1 when the data has labels, else agreement)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Seconds for the --max-drop search; "
                                                "the best model so far is always written."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Data the --max-drop goal is checked on "
                                             "[default: the calibration data]."),
    smooth_quant: Optional[float] = typer.Option(None, "--smooth-quant", help="SmoothQuant scale migration "
                                                 "strength alpha in (0, 1) for LayerNorm -> MatMul/Gemm."),
    trace: Optional[Path] = typer.Option(None, "--trace", help="Where the search writes its trial trace "
                                         "[default: OUTPUT's stem + .trace.json]."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON report here."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON report."),
) -> None:
    """Static INT8 quantization (QDQ) from calibration data, verified against onnxruntime's fused int8 kernels."""

    def work():
        from onnxcompress.ir.io import load_model, save_model, write_text_atomic
        from onnxcompress.quantize import QuantizeConfig

        config = QuantizeConfig(
            target=target, calibrator=calibrator, percentile=percentile, per_channel=not per_tensor,
            include=tuple(include or ()), exclude=tuple(exclude or ()), layer_policy=layer_policy,
            calibration_samples=samples, batch_size=batch_size, bias_correction=bias_correction)
        from onnxcompress.tune.run import quantize_command, trace_path_for

        traced = (trace or trace_path_for(output)) if max_drop is not None else None
        _check_outputs([output, report, traced], [model, calib, eval_data])
        qmodel, info = quantize_command(load_model(model), calib, config, mode=mode, max_drop=max_drop, metric=metric,
                                        time_budget=time_budget, eval_data=eval_data, smooth_quant=smooth_quant,
                                        output=output, trace=trace)
        info["output"] = str(save_model(qmodel, output))
        if report is not None:
            write_text_atomic(report, json.dumps(info, indent=2) + "\n")
        if json_out:
            typer.echo(json.dumps(info, indent=2))
        else:
            _render_quantize(info)
        if info.get("tune") and not info["tune"]["goal_met"]:
            raise typer.Exit(1)  # the goal was not met: the best model found is written all the same

    _guarded(work)


def _render_quantize(info: dict[str, Any]) -> None:
    if info.get("tune"):
        _render_tune(info["tune"])
    for s in info["skipped"]:
        typer.echo(f"kept float  {s['node']}: {s['reason']}")
    v = info.get("verification")
    size = info["size"]
    line = f"QUANTIZED | {size['model_bytes_before'] / 1e6:.2f}->{size['model_bytes_after'] / 1e6:.2f} MB"
    line += f" | {len(info['quantized'])} nodes quantized, {len(info['skipped'])} kept float | {info.get('calibrator', info.get('mode'))}"
    if v:
        kernels = ", ".join(f"{k} {c}" for k, c in v["kernel_ops"].items())
        typer.echo(f"int8 kernels ({v['provider']}): {kernels}")
        for f in v["float_nodes"]:
            typer.echo(f"float kernel {f['node']} ({f['op']}): {f['reason']}")
        line += f" | int8 kernels {v['weighted_int8']}/{v['weighted_total']} weighted ops, coverage {v['coverage']:.0%}"
    typer.echo(line)


def _render_tune(t: dict[str, Any]) -> None:
    best, goal = t["best"], t["goal"]
    for tr in t["trials"]:
        kept = ", ".join(f"{n}={p}" for n, p in tr["higher_precision"].items()) or "full int8"
        speed = f", {tr['latency']['speedup']:.2f}x fp32" if tr.get("latency") else ""
        typer.echo(f"trial {tr['trial']:<3} {tr['phase']:<11} drop {tr['drop']:.4f}{speed}  {kept}")
    verdict = "GOAL MET" if t["goal_met"] else "GOAL NOT MET"
    typer.echo(f"{verdict} | {goal['metric']} drop {best['drop']:.4f} (max {goal['max_drop']:g}, on {goal['data']}) | "
               f"{len(t['trials'])} trials, {t['elapsed_s']:.1f} s | stopped: {t['stopped']}")
    typer.echo("higher precision: " + (", ".join(f"{n}={p}" for n, p in t["higher_precision"].items()) or "none"))
    if t.get("trace"):
        typer.echo(f"trace    {t['trace']}")


@app.command()
def sensitivity(
    model: Path = typer.Argument(..., help="The float .onnx model."),
    calib: Path = typer.Option(..., "--calib", help="Calibration data (.npz or folder)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Data for the full-model metrics [default: calib]."),
    metric: str = typer.Option("auto", "--metric", help="top1 | agreement | cosine (auto: top1 with labels)."),
    mode: str = typer.Option("static", "--mode", help="static | dynamic."),
    target: str = typer.Option("cpu", "--target", help="cpu | cuda | tensorrt."),
    calibrator: str = typer.Option("minmax", "--calibrator", help="minmax | percentile | entropy | mse."),
    top_k: int = typer.Option(5, "--top-k", help="Nodes whose full-model metrics are measured."),
    prune_ratio: float = typer.Option(0.0, "--prune-ratio", help="Also rank prunable channel groups by the loss "
                                      "of pruning each at this ratio (0 = skip)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the JSON here."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON."),
) -> None:
    """Rank nodes by quantization sensitivity (one-pass SQNR proxy, then full-model metrics for the top ones)."""

    def work():
        from onnxcompress.data.inputs import load_input_data
        from onnxcompress.ir.io import load_model, write_text_atomic
        from onnxcompress.quantize import QuantizeConfig
        from onnxcompress.tune import TuneConfig, resolve_metric, sensitivity_analysis

        _check_outputs([report], [model, calib, eval_data])
        data = load_input_data(eval_data if eval_data is not None else calib)
        tune = TuneConfig(metric=resolve_metric(metric, data), mode=mode, top_k=top_k, measure_latency=False)
        info = sensitivity_analysis(load_model(model), calib, QuantizeConfig(target=target, calibrator=calibrator),
                                    tune, eval_data=eval_data, prune_ratio=prune_ratio)
        if report is not None:
            write_text_atomic(report, json.dumps(info, indent=2) + "\n")
        if json_out:
            typer.echo(json.dumps(info, indent=2))
            return
        typer.echo(f"{'rank':<5}{'node':<40}{'op':<12}{'SQNR dB':>9}{'drop if float':>15}{'drop only q':>13}")
        for r in info["nodes"]:
            cells = [f"{r[k]:.4f}" if r.get(k) is not None else "-" for k in ("drop_only_float", "drop_only_quantized")]
            sq = "-" if r["proxy_sqnr_db"] is None else f"{r['proxy_sqnr_db']:.1f}"
            typer.echo(f"{r['rank']:<5}{r['node'][:39]:<40}{r['op']:<12}{sq:>9}{cells[0]:>15}{cells[1]:>13}")
        for g in info.get("prune", []):
            typer.echo(f"prune group {g['group']} ({g['channels']} ch, via {g['node']}): "
                       + (f"drop {g['drop']:.4f}" if "drop" in g else f"error: {g.get('error')}"))
        typer.echo(f"full INT8 {info['metric']} drop {info['full_int8']['drop']:.4f} on {info['data']} "
                   f"({info['samples']} samples)")

    _guarded(work)
