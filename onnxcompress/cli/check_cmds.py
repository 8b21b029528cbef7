"""CLI commands: validate, profile, gate and optimize."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from onnxcompress.cli import data_opts as D
from onnxcompress.cli import logs
from onnxcompress.cli.app import (
    MAX_DATA_MB,
    MAX_DATA_SAMPLES,
    _guarded,
    _limits,
    _plan,
    app,
    detail,
    echo,
)
from onnxcompress.cli.summary import stage_lines, write_step_summary

# --- validate / profile / gate / optimize ---------------------------------------------------------------------
_PROVIDERS_HELP = "Execution providers: auto (CUDA if available, else CPU), cpu, cuda, tensorrt."


def _validate_config(labels, metric, output_name, tolerance, check_stat, providers, threads, batch_size, max_samples,
                     base=None, output_kinds=None):
    from dataclasses import replace

    from onnxcompress.validation.config import ValidateConfig, parse_output_kind, parse_tolerance

    changes: dict[str, Any] = {"providers": providers, "threads": threads}
    for key, value in (("labels", labels), ("output", output_name), ("check_stat", check_stat),
                       ("batch_size", batch_size), ("max_samples", max_samples)):
        if value is not None:
            changes[key] = value
    if metric:
        changes["metrics"] = tuple(metric)
    if tolerance:
        changes["tolerances"] = dict(parse_tolerance(t) for t in tolerance)
    base = base or ValidateConfig()
    if output_kinds:
        changes["outputs"] = {**base.outputs, **dict(parse_output_kind(k) for k in output_kinds)}
    return replace(base, **changes)


_OUTPUT_KIND_HELP = ("NAME=KIND[,threshold=T]: what an output is, when inference should not decide (repeatable; "
                     "class_logits, class_probabilities, embedding, dense_map, sequence, regression, decision, state).")


def _finish(report, report_dir: Path | None, json_out: bool, exit_on_gate: bool = True, *, plan=None,
            written: bool = False) -> None:
    """Write the report files (as one set, through ``plan``; ``written``: the API published them already), print
    the summary (or the JSON, alone on stdout) and end with the verdict line; exit 1 on a failed gate."""
    from onnxcompress.report import REPORT_FILES

    paths = {}
    if report_dir is not None:
        paths = {k: report_dir / n for k, n in REPORT_FILES.items()} if written else report.write(report_dir, plan)
    write_step_summary(report)
    if json_out:
        typer.echo(report.to_json(), nl=False)
    else:
        _render_report(report.to_dict(json_safe=False), paths)
        echo(report.verdict)
    if exit_on_gate and report.passed is False:
        raise typer.Exit(1)


def _render_report(report: dict[str, Any], paths: dict[str, Path]) -> None:
    for w in report["warnings"]:
        detail(f"warning: {w}", err=True)
    v = report["validation"]
    if v:
        task = v.get("task") or {}
        for m in task.get("reference", {}):
            detail(f"{m:<16} {task['reference'][m]:.4f} -> {task['candidate'][m]:.4f}")
        for out, f in v["fidelity"].items():
            _render_output(out, f)
        for out, c in v["comparison"].items():
            word = "PASS" if c["passed"] else "FAIL"
            detail(f"compare {out}: {word} at atol={c['atol']:g} rtol={c['rtol']:g} ({c['check_stat']}); "
                       f"would pass with atol={c['would_pass']['atol']:.3g} or rtol={c['would_pass']['rtol']:.3g}")
        for note in v.get("notes", []):
            detail(f"note: {note}")
    for line in stage_lines(report):
        detail(line)
    if report["profile"]:
        _render_profile(report["profile"])
    for c in (report["gate"] or {}).get("criteria", []):
        detail(f"{'pass' if c['passed'] else 'FAIL'}  {c['message']}")
    for kind, path in paths.items():
        detail(f"{kind:<8} {path}")


def _render_output(out: str, f: dict[str, Any]) -> None:
    generic = f"SQNR {f['sqnr_db']:.1f} dB, max abs err {f['max_abs_error']:.3g}"
    if "kind" not in f:
        detail(f"output {out}: cosine {f['cosine']:.5f}, {generic}")
        return
    floor = f["floor"]
    word = ("meets" if floor["passed"] else "MISSES") + (" >= " if floor["higher_is_better"] else " <= ")
    others = ", ".join(f"{k} {v:.4g}" for k, v in f["kind_metrics"].items() if k != f["metric"])
    detail(f"output {out}: {f['kind']} ({f['reason']}): {f['metric']} {f['value']:.4f} ({word}"
           f"{floor['floor']:g}); {others + ', ' if others else ''}{generic}")


def _render_profile(p: dict[str, Any]) -> None:
    detail(f"providers {p['providers']}, threads {p['threads'] or 'default'}, "
               f"{p['warmup']} warm-up + {p['iterations']} interleaved runs; peak RSS {p['peak_rss_mb']:.0f} MB")
    for b in p["batches"]:
        for name, s in b["models"].items():
            detail(f"batch {b['batch_size']:<4} {name:<10} p50 {s['p50_ms']:.3f} ms  p90 {s['p90_ms']:.3f}  "
                       f"p99 {s['p99_ms']:.3f}  mean {s['mean_ms']:.3f}  {s['throughput_per_s']:.1f}/s")
        if "speedup" in b:
            e = b["speedup"]
            detail(f"batch {b['batch_size']:<4} speed-up {e['median']:.2f}x (median of {e['rounds']} A/B rounds; "
                   f"{100 * e['confidence']:.0f}% interval {e['lower']:.2f}-{e['upper']:.2f}x; {e['stopped']})")
        elif "speedup_p50" in b:
            detail(f"batch {b['batch_size']:<4} speed-up (p50) {b['speedup_p50']:.2f}x")
    for name, prof in (p.get("op_profile") or {}).items():
        top = ", ".join(f"{op} {100 * t['share']:.0f}%" for op, t in list(prof["op_type_time"].items())[:6])
        detail(f"ops {name}: {top}; nodes by provider {prof['nodes_by_provider']}")


@app.command()
def validate(
    reference: Path = typer.Argument(..., help="The reference (original) model."),
    candidate: Path = typer.Argument(..., help="The candidate (optimized) model."),
    data: str | None = typer.Option(None, "--data", help="Evaluation data: " + D.DATA_HELP + "; extra keys such "
                                    "as labels are kept."),
    labels: str | None = typer.Option(None, "--labels", help="Data key holding the labels [default: labels]."),
    metric: list[str] | None = typer.Option(None, "--metric", help="auto, top1, top5, f1, auc, cer, exact_match "
                                            "(repeatable)."),
    decoder: str | None = typer.Option(None, "--decoder", help="ctc_greedy: decode per-timestep class scores "
                                       "for string/sequence labels (CER, exact match)."),
    charset: Path | None = typer.Option(None, "--charset", help="Characters of the decoder's classes, one per "
                                        "line (blank excluded)."),
    output_name: str | None = typer.Option(None, "--output", help="Output holding the class scores."),
    tolerance: list[str] | None = typer.Option(None, "--tolerance", help="[OUTPUT:]atol=X,rtol=Y (repeatable)."),
    check_stat: str | None = typer.Option(None, "--check-stat", help="elemwise, max, mean or median."),
    output_kind: list[str] | None = typer.Option(None, "--output-kind", help=_OUTPUT_KIND_HELP),
    providers: str = typer.Option("auto", "--providers", help=_PROVIDERS_HELP),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads (0 = onnxruntime default)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Evaluation batch size [default: 32]."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Evaluate at most this many samples."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when an output exceeds its tolerances."),
    report_dir: Path | None = typer.Option(None, "--report-dir", help="Write report.json/.md/.html and junit.xml "
                                           "here."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
    image: str | None = D.IMAGE, labels_file: Path | None = D.LABELS_FILE, dim: list[str] | None = D.DIM,
    loader: str | None = D.LOADER, seed: int | None = D.SEED,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Compare a candidate with its reference: task metrics, fidelity, output tolerances (Polygraphy semantics)."""

    def work():
        from dataclasses import replace

        from onnxcompress import api

        plan = _plan([data], [reference, candidate], folder=report_dir)
        config = _validate_config(labels, metric, output_name, tolerance, check_stat, providers, threads,
                                  batch_size, max_samples, output_kinds=output_kind)
        config = replace(config, **{k: v for k, v in (("decoder", decoder), ("charset_file", D.source(charset)))
                                    if v is not None})
        source = _required(D.with_loader(data, loader, "--data"), "--data")
        data_cfg = D.data_config(image=image, labels_file=labels_file, dims=dim, seed=seed)
        with logs.progress() as progress:
            report = api.validate(reference, candidate, source, config=config, progress=progress,
                                  data_config=data_cfg, limits=_limits(max_data_mb, max_data_samples))
        _finish(report, report_dir, json_out, plan=plan)
        if strict and not report.validation.comparison_passed:
            raise typer.Exit(1)

    _guarded(work, json_out)


def _batch_list(spec: str) -> tuple[int, ...]:
    from onnxcompress.errors import RecipeError

    try:
        return tuple(int(b) for b in spec.split(",") if b.strip())
    except ValueError as e:
        raise RecipeError(f"bad --batch '{spec}'", hint="give batch sizes such as 1,8,32") from e


@app.command()
def profile(
    model: Path = typer.Argument(..., help="The model to time."),
    vs: Path | None = typer.Option(None, "--vs", help="Time this model too, interleaved; speed-up = VS / MODEL."),
    batch: str = typer.Option("1", "--batch", help="Batch sizes, comma-separated, e.g. 1,8,32."),
    data: str | None = typer.Option(None, "--data", help="Inputs to time with: " + D.DATA_HELP +
                                    " [default: random]."),
    providers: str = typer.Option("auto", "--providers", help=_PROVIDERS_HELP),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads (0 = onnxruntime default)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs per model and batch size."),
    iterations: int = typer.Option(50, "--iterations", help="Timed runs per model and batch size."),
    op_profile: bool = typer.Option(True, "--op-profile/--no-op-profile", help="Per-op-type time and node placement."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random inputs."),
    report_dir: Path | None = typer.Option(None, "--report-dir", help="Write report.json/.md/.html and junit.xml "
                                           "here."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
    image: str | None = D.IMAGE, dim: list[str] | None = D.DIM, loader: str | None = D.LOADER,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Latency p50/p90/p99/mean and throughput per batch size, per-op-type time, node placement, peak memory."""

    def work():
        from onnxcompress import api
        from onnxcompress.validation.config import ProfileConfig

        plan = _plan([data], [model, vs], folder=report_dir)
        config = ProfileConfig(batch_sizes=_batch_list(batch), warmup=warmup, iterations=iterations,
                               op_profile=op_profile)
        data_cfg = D.data_config(image=image, dims=dim, seed=seed)
        with logs.progress() as progress:
            report = api.profile(model, vs=vs, data=D.with_loader(data, loader, "--data"), config=config,
                                 providers=providers, threads=threads, seed=seed, progress=progress,
                                 data_config=data_cfg, limits=_limits(max_data_mb, max_data_samples))
        _finish(report, report_dir, json_out, plan=plan)

    _guarded(work, json_out)


@app.command()
def gate(
    reference: Path = typer.Argument(..., help="The reference (original) model."),
    candidate: Path = typer.Argument(..., help="The candidate (optimized) model."),
    policy: Path = typer.Option(..., "--policy", help="TOML file with a [gate] table (a recipe works too)."),
    data: str | None = typer.Option(None, "--data", help="Evaluation data, with labels for accuracy: "
                                    + D.DATA_HELP + "."),
    labels: str | None = typer.Option(None, "--labels", help="Data key holding the labels [default: labels]."),
    output_kind: list[str] | None = typer.Option(None, "--output-kind", help=_OUTPUT_KIND_HELP),
    providers: str = typer.Option("auto", "--providers", help=_PROVIDERS_HELP),
    threads: int = typer.Option(0, "--threads", help="Intra-op threads (0 = onnxruntime default)."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Evaluate at most this many samples."),
    report_dir: Path = typer.Option(Path("onnxcompress-report"), "--report-dir",
                                    help="Where report.json, report.md, report.html and junit.xml go."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
    image: str | None = D.IMAGE, labels_file: Path | None = D.LABELS_FILE, dim: list[str] | None = D.DIM,
    loader: str | None = D.LOADER, seed: int | None = D.SEED,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Check a candidate against a gate policy. Exit 0 pass, 1 fail (report still written), 3 bad input."""

    def work():
        from onnxcompress import api
        from onnxcompress.validation.gate import load_policy

        plan = _plan([data, policy], [reference, candidate], folder=report_dir)
        gate_policy = load_policy(policy)
        base, limits = _recipe_sections(policy)
        config = _validate_config(labels, None, None, None, None, providers, threads, None, max_samples, base,
                                  output_kinds=output_kind)
        source = _required(D.with_loader(data, loader, "--data"), "--data")
        data_cfg = D.data_config(image=image, labels_file=labels_file, dims=dim, seed=seed)
        with logs.progress() as progress:
            report = api.gate(reference, candidate, source, gate_policy, config=config, progress=progress,
                              data_config=data_cfg, limits=_limits(max_data_mb, max_data_samples, limits))
        _finish(report, report_dir, json_out, plan=plan)

    _guarded(work, json_out)


def _recipe_sections(path: Path):
    """The [validate] and [limits] tables of a policy file that is a whole recipe (else None: the defaults)."""
    import tomllib

    from onnxcompress.config import config_from_dict
    from onnxcompress.data.limits import DataLimits
    from onnxcompress.validation.config import ValidateConfig

    data = tomllib.loads(path.read_text(encoding="utf-8"))  # load_policy read and parsed it already
    validate, limits = data.get("validate"), data.get("limits")
    return (config_from_dict(ValidateConfig, validate, "validate") if validate is not None else None,
            config_from_dict(DataLimits, limits, "limits") if limits is not None else None)


def _required(value, option: str):
    from onnxcompress.errors import RecipeError

    if value is None:
        raise RecipeError(f"missing {option} (or --data-loader-script)", hint=f"give {option} " + D.DATA_HELP)
    return value


def _without_verification(rec, has_calib: bool):
    """The recipe with the quantize stage's verification off (--no-verify); ``auto`` (which quantizes when there is
    calibration data) becomes the default config with verification off."""
    from dataclasses import replace

    from onnxcompress.quantization.config import QuantizeConfig

    quant = rec.quantize
    if quant == "auto" and has_calib:
        quant = QuantizeConfig()
    return replace(rec, quantize=replace(quant, verify=False)) if isinstance(quant, QuantizeConfig) else rec


@app.command()
def optimize(
    model: Path = typer.Argument(..., help="The exported .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the optimized model."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe file (.toml or .json)."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration data: " + D.DATA_HELP + "."),
    eval_data: str | None = typer.Option(None, "--eval", help="Evaluation data (same forms) [default: the "
                                         "calibration data]."),
    providers: str | None = typer.Option(None, "--providers", help=_PROVIDERS_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Seed of every random choice [default: recipe seed]."),
    no_profile: bool = typer.Option(False, "--no-profile", help="Skip latency profiling (unless the gate needs it)."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Write the model without opening it in the target's "
                                   "onnxruntime provider (e.g. a CUDA/TensorRT target on a CPU build machine); "
                                   "the int8 kernel check is deferred and the report says so."),
    output_kind: list[str] | None = typer.Option(None, "--output-kind", help=_OUTPUT_KIND_HELP),
    dump_recipe: Path | None = typer.Option(None, "--dump-recipe", help="Write the effective recipe (.toml/.json)."),
    report_dir: Path | None = typer.Option(None, "--report-dir", help="Report folder [default: OUTPUT's "
                                           "folder/<stem>-report]."),
    json_out: bool = typer.Option(False, "--json", help="Print the report JSON."),
    image: str | None = D.IMAGE, labels_file: Path | None = D.LABELS_FILE, dim: list[str] | None = D.DIM,
    loader: str | None = D.LOADER,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """The whole pipeline: preprocess -> prune -> distill -> quantize -> validate -> profile -> gate. Exit 1 on a failed gate."""

    def work():
        from dataclasses import replace

        from onnxcompress import api
        from onnxcompress.recipe import Recipe

        reports = report_dir or output.parent / f"{output.stem}-report"
        calib_source = D.with_loader(calib, loader, "--calib")
        if dump_recipe is not None:
            Recipe.check_path(dump_recipe)
        _plan([recipe, calib_source, eval_data], [model], model=output, files={"--dump-recipe": dump_recipe},
              folder=reports)
        rec = Recipe.from_file(recipe) if recipe is not None else Recipe()
        validate_cfg = replace(_validate_config(None, None, None, None, None, providers or rec.validate.providers,
                                                rec.validate.threads, None, None, rec.validate, output_kind),
                               profile=replace(rec.validate.profile, enabled=rec.validate.profile.enabled and not no_profile))
        rec = replace(rec, validate=validate_cfg, seed=rec.seed if seed is None else seed,
                      data=D.data_config(rec.data, image=image, labels_file=labels_file, dims=dim, seed=seed),
                      limits=_limits(max_data_mb, max_data_samples, rec.limits))
        if no_verify:
            rec = _without_verification(rec, calib_source is not None)
        with logs.progress() as progress:
            _, report = api.optimize(model, recipe=rec, calib=calib_source, eval=eval_data, output=output,
                                     progress=progress, report_dir=reports, dump_recipe=dump_recipe)
        _finish(report, reports, json_out, written=True)

    _guarded(work, json_out)
