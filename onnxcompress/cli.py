"""The `onnxcompress` command line: parsing, rendering and exit codes only; the work happens in the API.

Exit codes: 0 passed, 1 gate failed, 2 usage error, 3 user error (one clear message, no traceback),
4 internal error (traceback).
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer

from onnxcompress._version import __version__
from onnxcompress.errors import EXIT_INTERNAL, OnnxCompressError, UserError

app = typer.Typer(
    name="onnxcompress",
    help="Post-training optimizer for ONNX models: prune, distill, quantize, validate, gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onnxcompress {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Post-training optimizer for ONNX models."""


def _guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a user error prints one message and exits 3, anything else prints a traceback and exits 4."""
    try:
        return fn()
    except typer.Exit:
        raise
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except OnnxCompressError as e:
        if e.exit_code == 3:
            typer.echo(f"error: {e}", err=True)
        else:
            traceback.print_exc()
            typer.echo(f"internal error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as e:  # deliberate: an unexpected exception is a bug, reported as exit 4 with a traceback
        traceback.print_exc()
        typer.echo(f"internal error: {e!r} (please report it)", err=True)
        raise typer.Exit(EXIT_INTERNAL) from None


# --- inspect ----------------------------------------------------------------------------------------------------
@app.command()
def inspect(
    model: Path = typer.Argument(..., help="The .onnx model."),
    json_out: bool = typer.Option(False, "--json", help="Print the machine-readable JSON (schema onnxcompress.inspect/1)."),
    shape: Optional[list[str]] = typer.Option(None, "--shape", help="Concrete input shape NAME:1x3x224x224 (repeatable)."),
) -> None:
    """Signature, opsets, op histogram, parameters, MACs per op type and file size of a model."""

    def work():
        from onnxcompress.analysis import inspect_model
        from onnxcompress.ir.shapes import parse_shape_overrides

        info = inspect_model(model, parse_shape_overrides(shape))
        if json_out:
            typer.echo(json.dumps(info, indent=2))
        else:
            _render_inspect(info)

    _guarded(work)


def _fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def _render_inspect(info: dict[str, Any]) -> None:
    m = info["model"]
    typer.echo(f"model     {m['path']}  ({m['total_bytes'] / 1e6:.2f} MB, external data {m['external_data_bytes']} B)")
    typer.echo(f"format    IR {m['ir_version']}, opsets {m['opset_imports']}, producer {m['producer']} {m['producer_version']}")
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            typer.echo(f"{kind[:-1]:<9} {v['name']}: {v['dtype']}{v['shape']}")
    typer.echo(f"nodes     {info['nodes']}: " + ", ".join(f"{k} {v}" for k, v in info["op_histogram"].items()))
    p = info["parameters"]
    per = ", ".join(f"{k} {_fmt_count(v['count'])} ({v['bytes'] / 1e6:.2f} MB)" for k, v in p["by_dtype"].items())
    typer.echo(f"params    {_fmt_count(p['total'])} ({p['bytes'] / 1e6:.2f} MB): {per}")
    macs = info["macs"]
    per = ", ".join(f"{k} {_fmt_count(v)}" for k, v in macs["by_op_type"].items())
    typer.echo(f"MACs      {_fmt_count(macs['total'])} at {macs['input_shapes']}: {per}")
    if macs["nodes_with_unknown_shape"]:
        typer.echo(f"          (unknown shape, not counted: {', '.join(macs['nodes_with_unknown_shape'])})")
    for key, title in (("quantizable", "quantize"), ("prune_groups", "prune")):
        if key in info:
            typer.echo(f"{title:<9} {info[key]['summary']}")


# --- convert ----------------------------------------------------------------------------------------------------
@app.command()
def convert(
    model: Path = typer.Argument(..., help="The .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the converted model."),
    opset: int = typer.Option(17, "--opset", help="Target default-domain opset."),
    lift_constants: bool = typer.Option(True, "--lift-constants/--keep-constants",
                                        help="Turn Constant nodes into initializers."),
) -> None:
    """Convert a model to another opset with onnx's version converter (and lift Constant nodes to initializers)."""

    def work():
        from onnxcompress.ir.io import convert_opset, load_model, opset_of, save_model
        from onnxcompress.passes import LiftConstantsPass, PassContext, apply_to_model

        src = load_model(model)
        before = opset_of(src)
        out = convert_opset(src, opset) if before != opset else src
        lifted = 0
        if lift_constants:
            out, result = apply_to_model(out, LiftConstantsPass(), PassContext())
            lifted = result.stats["lifted"]
        save_model(out, output)
        typer.echo(f"opset {before} -> {opset}, {lifted} Constant nodes lifted -> {output}")

    _guarded(work)


# --- distill ----------------------------------------------------------------------------------------------------
from typer.core import TyperGroup  # noqa: E402


class _DistillGroup(TyperGroup):
    """`distill TEACHER STUDENT ...` runs `reconstruct`; `distill export-weights|attach ...` run those."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "reconstruct")
        return super().resolve_command(ctx, args)


distill_app = typer.Typer(cls=_DistillGroup, no_args_is_help=True,
                          help="Recover accuracy without a training loop; attach weights trained elsewhere.")
app.add_typer(distill_app, name="distill")


@distill_app.command("reconstruct")
def distill_reconstruct(
    teacher: Path = typer.Argument(..., help="The original (teacher) model."),
    student: Path = typer.Argument(..., help="The compressed (student) model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the reconstructed student."),
    calib: Path = typer.Option(..., "--calib", help="Calibration data (.npz or folder)."),
    ridge: float = typer.Option(1e-3, "--ridge", help="Ridge strength, relative to the mean diagonal of X^T X."),
    samples: int = typer.Option(256, "--samples", help="Calibration samples to use."),
    kept: Optional[Path] = typer.Option(None, "--kept", help="Kept-channel record (the prune report JSON)."),
    json_out: bool = typer.Option(False, "--json", help="Print the reconstruction report as JSON."),
) -> None:
    """Refit the student's Conv/Gemm/MatMul weights, layer by layer, to the teacher's activations."""

    def work():
        from onnxcompress.distill.api import distill, load_kept
        from onnxcompress.distill.reconstruct import DistillConfig
        from onnxcompress.ir.io import load_model, save_model

        config = DistillConfig(ridge=ridge, samples=samples)
        model, report = distill(load_model(teacher), load_model(student), calib, config, kept=load_kept(kept))
        save_model(model, output)
        if json_out:
            typer.echo(json.dumps(report, indent=2))
        typer.echo(f"reconstructed {len(report['reconstructed'])} layers, skipped {len(report['skipped'])} "
                   f"-> {output}")

    _guarded(work)


@distill_app.command("export-weights")
def distill_export(
    model: Path = typer.Argument(..., help="The (compressed) model whose weights a trainer must produce."),
    output: Path = typer.Option(..., "-o", "--output", help="The .npz to write (name -> array)."),
) -> None:
    """Write the names, shapes and current values of the model's trainable weights to an .npz."""

    def work():
        from onnxcompress.distill.attach import export_weights, save_npz_atomic
        from onnxcompress.ir.io import load_model

        weights = export_weights(load_model(model))
        save_npz_atomic(weights, output)
        typer.echo(f"{len(weights)} tensors -> {output}")

    _guarded(work)


@distill_app.command("attach")
def distill_attach(
    model: Path = typer.Argument(..., help="The model to receive the weights."),
    weights: Path = typer.Argument(..., help="Weights: .npz, .safetensors or .onnx."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the model with the new weights."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="JSON {model_name: name_in_file}."),
    data: Optional[Path] = typer.Option(None, "--data", help="Data to validate with (default: seeded random)."),
) -> None:
    """Attach weights trained elsewhere (name/shape/dtype checked), validate by running, and save."""

    def work():
        from onnxcompress.distill.api import attach
        from onnxcompress.ir.io import load_model, save_model

        out, report = attach(load_model(model), weights, mapping, data)
        save_model(out, output)
        typer.echo(f"attached {len(report['attached'])} tensors, validated on {report['validated_on']} -> {output}")

    _guarded(work)


# --- validate / profile / gate / optimize ---------------------------------------------------------------------
_PROVIDERS_HELP = "Execution providers: auto (CUDA if available, else CPU), cpu, cuda, tensorrt."


def _validate_config(labels, metric, output_name, tolerance, check_stat, providers, threads, batch_size, max_samples,
                     base=None):
    from dataclasses import replace

    from onnxcompress.validate.compare import parse_tolerance
    from onnxcompress.validate.config import ValidateConfig

    changes: dict[str, Any] = {"providers": providers, "threads": threads}
    for key, value in (("labels", labels), ("output", output_name), ("check_stat", check_stat),
                       ("batch_size", batch_size), ("max_samples", max_samples)):
        if value is not None:
            changes[key] = value
    if metric:
        changes["metrics"] = tuple(metric)
    if tolerance:
        changes["tolerances"] = dict(parse_tolerance(t) for t in tolerance)
    return replace(base or ValidateConfig(), **changes)


def _finish(report, report_dir: Optional[Path], json_out: bool, exit_on_gate: bool = True) -> None:
    """Write the report files, print the summary (or JSON) and end with the verdict line; exit 1 on a failed gate."""
    paths = report.write(report_dir) if report_dir is not None else {}
    if json_out:
        typer.echo(report.to_json(), nl=False)
    else:
        _render_report(report, paths)
        typer.echo(report.verdict)
    if exit_on_gate and report.passed is False:
        raise typer.Exit(1)


def _render_report(report, paths: dict[str, Path]) -> None:
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    v = report.validation
    if v:
        task = v.get("task") or {}
        for m in task.get("reference", {}):
            typer.echo(f"{m:<16} {task['reference'][m]:.4f} -> {task['candidate'][m]:.4f}")
        for out, f in v["fidelity"].items():
            agree = "" if f["top1_agreement"] is None else f"agreement {100 * f['top1_agreement']:.2f}%, "
            typer.echo(f"output {out}: {agree}cosine {f['cosine']:.5f}, SQNR {f['sqnr_db']:.1f} dB, "
                       f"max abs err {f['max_abs_error']:.3g}")
        for out, c in v["comparison"].items():
            word = "PASS" if c["passed"] else "FAIL"
            typer.echo(f"compare {out}: {word} at atol={c['atol']:g} rtol={c['rtol']:g} ({c['check_stat']}); "
                       f"would pass with atol={c['would_pass']['atol']:.3g} or rtol={c['would_pass']['rtol']:.3g}")
        for note in v.get("notes", []):
            typer.echo(f"note: {note}")
    if report.profile:
        _render_profile(report.profile)
    for c in (report.gate or {}).get("criteria", []):
        typer.echo(f"{'pass' if c['passed'] else 'FAIL'}  {c['message']}")
    for kind, path in paths.items():
        typer.echo(f"{kind:<8} {path}")


def _render_profile(p: dict[str, Any]) -> None:
    typer.echo(f"providers {p['providers']}, threads {p['threads'] or 'default'}, "
               f"{p['warmup']} warm-up + {p['iterations']} interleaved runs; peak RSS {p['peak_rss_mb']:.0f} MB")
    for b in p["batches"]:
        for name, s in b["models"].items():
            typer.echo(f"batch {b['batch_size']:<4} {name:<10} p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f}  "
                       f"p99 {s['p99_ms']:.3f}  mean {s['mean_ms']:.3f}  {s['throughput_per_s']:.1f}/s")
        if "speedup_p50" in b:
            typer.echo(f"batch {b['batch_size']:<4} speed-up (p50) {b['speedup_p50']:.2f}x")
    for name, prof in (p.get("op_profile") or {}).items():
        top = ", ".join(f"{op} {100 * t['share']:.0f}%" for op, t in list(prof["op_type_time"].items())[:6])
        typer.echo(f"ops {name}: {top}; nodes by provider {prof['nodes_by_provider']}")


@app.command()
def validate(
    reference: Path = typer.Argument(..., help="The reference (original) model."),
    candidate: Path = typer.Argument(..., help="The candidate (optimized) model."),
    data: Path = typer.Option(..., "--data", help="Evaluation data (.npz or folder); extra keys such as labels."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Data key holding integer labels [default: labels]."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="auto, top1, top5, f1, auc (repeatable)."),
    output_name: Optional[str] = typer.Option(None, "--output", help="Output holding the class scores."),
    tolerance: Optional[list[str]] = typer.Option(None, "--tolerance", help="[OUTPUT:]atol=X,rtol=Y (repeatable)."),
    check_stat: Optional[str] = typer.Option(None, "--check-stat", help="elemwise, max, mean or median."),
    providers: str = typer.Option("auto", "--providers", help=_PROVIDERS_HELP),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads (0 = onnxruntime default)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Evaluation batch size [default: 32]."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Evaluate at most this many samples."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when an output exceeds its tolerances."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Write report.json/.md and junit.xml here."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Compare a candidate with its reference: task metrics, fidelity, output tolerances (Polygraphy semantics)."""

    def work():
        from onnxcompress import api

        config = _validate_config(labels, metric, output_name, tolerance, check_stat, providers, threads,
                                  batch_size, max_samples)
        report = api.validate(reference, candidate, data, config=config)
        _finish(report, report_dir, json_out)
        if strict and not report.validation["comparison_passed"]:
            raise typer.Exit(1)

    _guarded(work)


def _batch_list(spec: str) -> tuple[int, ...]:
    from onnxcompress.errors import RecipeError

    try:
        return tuple(int(b) for b in spec.split(",") if b.strip())
    except ValueError as e:
        raise RecipeError(f"bad --batch '{spec}'", hint="give batch sizes such as 1,8,32") from e


@app.command()
def profile(
    model: Path = typer.Argument(..., help="The model to time."),
    vs: Optional[Path] = typer.Option(None, "--vs", help="Time this model too, interleaved; speed-up = VS / MODEL."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, comma-separated, e.g. 1,8,32."),
    data: Optional[Path] = typer.Option(None, "--data", help="Inputs to time with (default: seeded random)."),
    providers: str = typer.Option("auto", "--providers", help=_PROVIDERS_HELP),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads (0 = onnxruntime default)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs per model and batch size."),
    iterations: int = typer.Option(50, "--iterations", help="Timed runs per model and batch size."),
    op_profile: bool = typer.Option(True, "--op-profile/--no-op-profile", help="Per-op-type time and node placement."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random inputs."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="Write report.json/.md and junit.xml here."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Latency p50/p90/p99/mean and throughput per batch size, per-op-type time, node placement, peak memory."""

    def work():
        from onnxcompress import api
        from onnxcompress.validate.config import ProfileConfig

        config = ProfileConfig(batch_sizes=_batch_list(batch), warmup=warmup, iterations=iterations,
                               op_profile=op_profile)
        report = api.profile(model, vs=vs, data=data, config=config, providers=providers, threads=threads, seed=seed)
        _finish(report, report_dir, json_out)

    _guarded(work)


@app.command()
def gate(
    reference: Path = typer.Argument(..., help="The reference (original) model."),
    candidate: Path = typer.Argument(..., help="The candidate (optimized) model."),
    policy: Path = typer.Option(..., "--policy", help="TOML file with a [gate] table (a recipe works too)."),
    data: Path = typer.Option(..., "--data", help="Evaluation data (.npz or folder), with labels for accuracy."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Data key holding integer labels [default: labels]."),
    providers: str = typer.Option("auto", "--providers", help=_PROVIDERS_HELP),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads (0 = onnxruntime default)."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Evaluate at most this many samples."),
    report_dir: Path = typer.Option(Path("onnxcompress-report"), "--report-dir",
                                    help="Where report.json, report.md and junit.xml go."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Check a candidate against a gate policy. Exit 0 pass, 1 fail (report still written), 3 bad input."""

    def work():
        from onnxcompress import api
        from onnxcompress.validate.gate import load_policy

        gate_policy = load_policy(policy)
        base = _recipe_validate(policy)
        config = _validate_config(labels, None, None, None, None, providers, threads, None, max_samples, base)
        _finish(api.gate(reference, candidate, data, gate_policy, config=config), report_dir, json_out)

    _guarded(work)


def _recipe_validate(path: Path):
    """The [validate] table of a policy file that is a whole recipe (else the defaults)."""
    import tomllib

    from onnxcompress.config import config_from_dict
    from onnxcompress.validate.config import ValidateConfig

    table = tomllib.loads(path.read_text(encoding="utf-8")).get("validate")
    return config_from_dict(ValidateConfig, table, "validate") if table is not None else None


_STAGES = ("load", "preprocess", "prune", "distill", "quantize", "validate", "profile", "gate")


@app.command()
def optimize(
    model: Path = typer.Argument(..., help="The exported .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the optimized model."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Recipe file (.toml or .json)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration data (.npz or folder)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval", help="Evaluation data [default: the calibration data]."),
    providers: Optional[str] = typer.Option(None, "--providers", help=_PROVIDERS_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice [default: recipe seed]."),
    no_profile: bool = typer.Option(False, "--no-profile", help="Skip latency profiling (unless the gate needs it)."),
    dump_recipe: Optional[Path] = typer.Option(None, "--dump-recipe", help="Write the effective recipe (.toml/.json)."),
    report_dir: Optional[Path] = typer.Option(None, "--report-dir", help="[default: OUTPUT's folder/<stem>-report]"),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """The whole pipeline: preprocess -> prune -> distill -> quantize -> validate -> profile -> gate. Exit 1 on a failed gate."""

    def work():
        from dataclasses import replace

        from rich.progress import Progress

        from onnxcompress import api
        from onnxcompress.recipe import Recipe

        rec = Recipe.from_file(recipe) if recipe is not None else Recipe()
        validate_cfg = replace(rec.validate, providers=providers or rec.validate.providers,
                               profile=replace(rec.validate.profile, enabled=rec.validate.profile.enabled and not no_profile))
        rec = replace(rec, validate=validate_cfg, seed=rec.seed if seed is None else seed)
        with Progress(transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("optimize", total=len(_STAGES))
            step = lambda stage: bar.update(task, completed=_STAGES.index(stage), description=stage)  # noqa: E731
            _, report = api.optimize(model, recipe=rec, calib=calib, eval=eval_data, output=output, progress=step)
        if dump_recipe is not None:
            Recipe.from_dict(report.recipe).write(dump_recipe)
        _finish(report, report_dir or output.parent / f"{output.stem}-report", json_out)

    _guarded(work)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


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
        from onnxcompress.quantize import QuantizeConfig, quantize_model

        config = QuantizeConfig(
            target=target, calibrator=calibrator, percentile=percentile, per_channel=not per_tensor,
            include=tuple(include or ()), exclude=tuple(exclude or ()), layer_policy=layer_policy,
            calibration_samples=samples, batch_size=batch_size, bias_correction=bias_correction)
        from onnxcompress.tune.run import quantize_command

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


# --- prune ------------------------------------------------------------------------------------------------------
def _parse_overrides(items: Optional[list[str]]) -> dict[str, float]:
    from onnxcompress.errors import RecipeError

    out: dict[str, float] = {}
    for item in items or []:
        pattern, sep, value = item.rpartition("=")
        try:
            if not sep or not pattern:
                raise ValueError
            out[pattern] = float(value)
        except ValueError as e:
            raise RecipeError(f"bad --override '{item}'", hint="write it as NODE_PATTERN=RATIO, e.g. 'block2*=0.5'") from e
    return out


@app.command()
def prune(
    model: Path = typer.Argument(..., help="The .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the pruned model."),
    ratio: float = typer.Option(0.3, "--ratio", help="Fraction of each group's channels to remove, in [0, 1)."),
    calib: Optional[Path] = typer.Option(None, "--calib", help="Calibration data (.npz or folder): needed by "
                                         "activation/reconstruction, gives shapes to models with dynamic dims."),
    criterion: str = typer.Option("l1", "--criterion", help="l1 | l2 | bn_scale | activation | reconstruction | random."),
    allocation: str = typer.Option("local", "--allocation", help="local (same ratio per group) | global."),
    min_channels: int = typer.Option(1, "--min-channels", help="Never keep fewer units than this in a group."),
    round_to: int = typer.Option(1, "--round-to", help="Kept channels per group are a multiple of this (e.g. 8)."),
    exclude: Optional[list[str]] = typer.Option(None, "--exclude", help="Node-name pattern or op type whose output "
                                                "channels are never pruned (repeatable)."),
    override: Optional[list[str]] = typer.Option(None, "--override", help="PATTERN=RATIO for the groups of "
                                                 "matching nodes (repeatable)."),
    target_macs: Optional[float] = typer.Option(None, "--target-macs", help="Keep this fraction of the MACs "
                                                "(0.5 halves them); the ratio is searched."),
    target_params: Optional[float] = typer.Option(None, "--target-params", help="Keep this fraction of the parameters."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random criterion."),
    max_samples: int = typer.Option(128, "--max-samples", help="Calibration samples for data-driven criteria."),
    bias_correction: bool = typer.Option(False, "--bias-correction", help="Fold the calibration mean of removed "
                                         "channels into the next layer's bias (needs --calib; recommended)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the pruning report (JSON) here."),
    json_out: bool = typer.Option(False, "--json", help="Print the pruning report as JSON."),
) -> None:
    """Structured channel pruning on the ONNX graph (dependency-aware: residuals, Concat, depthwise, Flatten)."""

    def work():
        from onnxcompress.data.inputs import load_input_data
        from onnxcompress.ir.io import load_model, save_model, write_text_atomic
        from onnxcompress.prune import PruneConfig, prune_model

        config = PruneConfig(ratio=ratio, criterion=criterion, allocation=allocation, min_channels=min_channels,
                             round_to=round_to, exclude=tuple(exclude or ()), overrides=_parse_overrides(override),
                             target_macs=target_macs, target_params=target_params, seed=seed, max_samples=max_samples,
                             bias_correction=bias_correction)
        data = load_input_data(calib) if calib is not None else None
        pruned, info = prune_model(load_model(model), config, data)
        save_model(pruned, output)
        info["output"] = str(output)
        if report is not None:
            write_text_atomic(report, json.dumps(info, indent=2))
        if json_out:
            typer.echo(json.dumps(info, indent=2))
        for b in info["blocked"][:8]:
            typer.echo(f"blocked   {b['units']} units at {b['slots'][0]}: {b['reasons'][0]}", err=True)
        b, a = info["before"], info["after"]
        typer.echo(f"PRUNED | MACs {_fmt_count(b['macs'])}->{_fmt_count(a['macs'])} "
                   f"(x{a['macs'] / max(b['macs'], 1):.2f}) | params {_fmt_count(b['params'])}->"
                   f"{_fmt_count(a['params'])} | {b['bytes'] / 1e6:.2f}->{a['bytes'] / 1e6:.2f} MB | "
                   f"{info['summary'].split(';')[0]} -> {output}")

    _guarded(work)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
