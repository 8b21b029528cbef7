"""CLI commands: quantize and sensitivity (parsing and rendering only; the work is in onnxcompress.api)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer

from onnxcompress.cli import data_opts as D
from onnxcompress.cli import logs
from onnxcompress.cli.app import (
    MAX_DATA_MB,
    MAX_DATA_SAMPLES,
    _guarded,
    _json_text,
    _limits,
    _load_recipe,
    _merged,
    _plan,
    _write_json,
    app,
    detail,
    echo,
)
from onnxcompress.ir.io import file_size


def trace_path_for(output: Path) -> Path:
    return output.with_name(output.stem + ".trace.json")


def _quantize_recipe(recipe_path, flags: dict[str, Any], tune_flags: dict[str, Any], check_flags: dict[str, Any],
                     output_kinds: list[str] | None = None):
    """The effective recipe of `quantize`: the --recipe file's [preprocess]/[quantize]/[tune]/[self_check] and the
    output kinds and floors of [validate], flags on top."""

    from onnxcompress.quantization.config import QuantizeConfig
    from onnxcompress.tuning.config import TuneConfig

    base = _load_recipe(recipe_path)
    quant = base.quantize if isinstance(base.quantize, QuantizeConfig) else QuantizeConfig()
    quant = _merged(quant, **flags)
    tune = base.tune
    if tune_flags.get("max_drop") is not None:
        tune = _merged(tune or TuneConfig(metric="auto"), **tune_flags)
    elif tune is not None:
        tune = _merged(tune, **{k: v for k, v in tune_flags.items() if k != "max_drop"})
    else:  # no goal of the user's own: --time-budget bounds the self-check's search
        check_flags = {**check_flags, "time_budget": tune_flags.get("time_budget")}
    return replace(base, quantize=quant, distill=None, prune=None, tune=tune,
                   self_check=_merged(base.self_check, **check_flags),
                   validate=with_output_kinds(base.validate, output_kinds))


def with_output_kinds(validate, specs: list[str] | None):
    """``validate`` with the --output-kind NAME=KIND[,threshold=T] flags added to its [outputs]."""
    from onnxcompress.validation.config import parse_output_kind

    if not specs:
        return validate
    return replace(validate, outputs={**validate.outputs, **dict(parse_output_kind(s) for s in specs)})


@app.command()
def quantize(
    model: Path = typer.Argument(..., help="The float .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the quantized model."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration data (needed by --mode static, the "
                                     "default): " + D.DATA_HELP + "."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe file: its [preprocess], [quantize] and "
                                          "[tune] sections (flags given here override them)."),
    target: str | None = typer.Option(None, "--target", help="cpu (portable, default) | cpu-avx2 | cpu-vnni | "
                                      "arm64 | cuda | tensorrt | auto (this host, recorded)."),
    calibrator: str | None = typer.Option(None, "--calibrator", help="minmax | percentile | entropy | mse."),
    percentile: float | None = typer.Option(None, "--percentile", help="Percentile for --calibrator percentile."),
    per_tensor: bool | None = typer.Option(None, "--per-tensor/--per-channel",
                                              help="Weight scales per tensor or per output channel (default)."),
    include: list[str] | None = typer.Option(None, "--include", help="Only these nodes: name, op type, glob or "
                                                "re:REGEX (repeatable)."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Keep these float: name, op type, glob or "
                                                "re:REGEX (repeatable)."),
    layer_policy: str | None = typer.Option(None, "--layer-policy",
                                               help="quantize | skip_first | skip_last | skip_first_last."),
    samples: int | None = typer.Option(None, "--samples", help="Use at most this many calibration samples."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Calibration batch size."),
    bias_correction: bool | None = typer.Option(None, "--bias-correction/--no-bias-correction",
                                                   help="Correct each quantized layer's bias so its mean output "
                                                   "matches the float model's."),
    mode: str | None = typer.Option(None, "--mode", help="static (QDQ, calibrated) | dynamic (MatMul/Gemm, "
                                       "activations quantized at run time) | weight_only (INT4/INT8 MatMulNBits) | "
                                       "codebook (k-means weight sharing) | ternary | binary."),
    weight_bits: int | None = typer.Option(None, "--weight-bits", help="weight_only: 4 or 8; codebook: index bits "
                                              "(2**bits shared values)."),
    block_size: int | None = typer.Option(None, "--block-size", help="weight_only: rows per scale along K "
                                             "(power of two >= 16)."),
    method: str | None = typer.Option(None, "--method", help="weight_only rounding: rtn | gptq (needs --calib)."),
    weight_format: str | None = typer.Option(None, "--weight-format", help="weight_only: auto | matmulnbits | qdq "
                                                "(DequantizeLinear with block_size, opset 21)."),
    weight_symmetric: bool | None = typer.Option(None, "--weight-symmetric/--weight-asymmetric",
                                                    help="weight_only: symmetric codes (no zero points)."),
    accuracy_level: int | None = typer.Option(None, "--accuracy-level", help="MatMulNBits accuracy_level 0-4 "
                                                 "(4: activations quantized to int8 inside the kernel)."),
    embeddings: bool | None = typer.Option(None, "--embeddings/--no-embeddings",
                                              help="weight_only: also quantize Gather embedding tables."),
    node_bits: list[str] | None = typer.Option(None, "--node-bits", help="weight_only: SEL=BITS, bits 4 or 8 for "
                                                  "the matching nodes (repeatable)."),
    codebook_scope: str | None = typer.Option(None, "--codebook-scope", help="codebook: layer | channel."),
    codebook_init: str | None = typer.Option(None, "--codebook-init", help="codebook: linear | kmeans++ (seeded)."),
    refine: bool | None = typer.Option(None, "--refine/--no-refine", help="codebook/ternary/binary: refit the "
                                          "shared values on the calibration data."),
    ternary_threshold: float | None = typer.Option(None, "--ternary-threshold", help="ternary: |w| > T * mean|w| "
                                                      "is nonzero [default: 0.7]."),
    min_weight_elements: int | None = typer.Option(None, "--min-weight-elements", help="Weight modes: smaller "
                                                      "weights stay float."),
    max_drop: float | None = typer.Option(None, "--max-drop", help="Accuracy goal: search a mixed-precision "
                                             "plan whose --metric drop is <= this fraction (0.005 = half a point)."),
    metric: str | None = typer.Option(None, "--metric", help="Goal metric for --max-drop: top1 | agreement | "
                                         "cosine (auto: top1 when the data has labels, else agreement)."),
    time_budget: float | None = typer.Option(None, "--time-budget", help="Seconds for the --max-drop search (or "
                                                "the self-check's search); the best model so far is always written."),
    self_check: bool | None = typer.Option(None, "--self-check/--no-self-check", help="Without --max-drop: check "
                                           "the result on held-out calibration samples against each output kind's "
                                           "fidelity floor and search a mixed-precision plan below it [default: on]."),
    holdout: float | None = typer.Option(None, "--holdout", help="Fraction of the calibration samples the "
                                         "self-check holds out [default: 0.2]."),
    output_kind: list[str] | None = typer.Option(None, "--output-kind", help="NAME=KIND[,threshold=T]: what an "
                                                 "output is, when inference should not decide (repeatable; kinds: "
                                                 "class_logits, class_probabilities, embedding, dense_map, sequence, "
                                                 "regression, decision, state)."),
    eval_data: str | None = typer.Option(None, "--eval", help="Data the --max-drop goal is checked on (same forms "
                                         "as --calib) [default: the calibration data]."),
    smooth_quant: str | None = typer.Option(None, "--smooth-quant", help="SmoothQuant for LayerNorm -> "
                                               "MatMul/Gemm: auto (where activations have outlier channels; "
                                               "default) | off | an alpha in (0, 1)."),
    placement: str | None = typer.Option(None, "--placement", help="Which nodes stay float because INT8 "
                                            "would be slower: cost-model (the target's committed cost table; "
                                            "host-independent, default) | measure (profile and time on this "
                                            "host; recorded as fixed) | fixed (only float_nodes/--exclude)."),
    placement_batch: int | None = typer.Option(None, "--placement-batch", help="Batch size the placement "
                                                  "estimates or measures at [default: 32]."),
    trace: Path | None = typer.Option(None, "--trace", help="Where the search writes its trial trace "
                                         "[default: OUTPUT's stem + .trace.json]."),
    strict: bool | None = typer.Option(None, "--strict/--no-strict", help="Calibration-data warnings (constant "
                                       "inputs, a few extreme values setting a range) are errors (exit 3)."),
    dump_recipe: Path | None = typer.Option(None, "--dump-recipe", help="Write the effective recipe "
                                               "(.toml/.json); --recipe with it reproduces this run."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Do not open the result in the target's onnxruntime "
                                   "provider (a CUDA/TensorRT target on a CPU build machine): the int8 kernel "
                                   "check is deferred, and the report and the console say so."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON report."),
    image: str | None = D.IMAGE, labels_file: Path | None = D.LABELS_FILE, dim: list[str] | None = D.DIM,
    loader: str | None = D.LOADER, seed: int | None = D.SEED,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """INT8 quantization (static QDQ from calibration data, or dynamic), verified against onnxruntime's int8 kernels."""

    def work():

        from onnxcompress import api
        from onnxcompress.recipe import Recipe

        flags = dict(mode=mode, target=target, calibrator=calibrator, percentile=percentile,
                     per_channel=None if per_tensor is None else not per_tensor,
                     include=None if not include else tuple(include), exclude=None if not exclude else tuple(exclude),
                     layer_policy=layer_policy, calibration_samples=samples, batch_size=batch_size,
                     bias_correction=bias_correction, smooth_quant=_smooth_flag(smooth_quant), weight_bits=weight_bits,
                     block_size=block_size, method=method, weight_format=weight_format,
                     weight_symmetric=weight_symmetric, accuracy_level=accuracy_level, embeddings=embeddings,
                     node_bits=_node_bits(node_bits), codebook_scope=codebook_scope, codebook_init=codebook_init,
                     refine=refine, ternary_threshold=ternary_threshold, min_weight_elements=min_weight_elements,
                     strict=strict, verify=False if no_verify else None, placement=placement,
                     placement_batch=placement_batch)
        tune_flags = dict(max_drop=max_drop, metric=metric, time_budget=time_budget)
        rec = _quantize_recipe(recipe, flags, tune_flags, dict(enabled=self_check, holdout=holdout), output_kind)
        rec = replace(rec, data=D.data_config(rec.data, image=image, labels_file=labels_file, dims=dim, seed=seed),
                      limits=_limits(max_data_mb, max_data_samples, rec.limits))
        traced = (trace or trace_path_for(output)) if rec.tune is not None else None
        calib_source = D.with_loader(calib, loader, "--calib")
        if dump_recipe is not None:
            Recipe.check_path(dump_recipe)
        plan = _plan([calib_source, eval_data, recipe], [model], model=output,
                     files={"--report": report, "--trace": traced, "--dump-recipe": dump_recipe})
        # the search writes its best model so far (and its trace) as it goes; otherwise the model is published below
        with logs.progress() as progress:
            quantized, result = api.quantize(model, calib_source, rec.quantize, tune=rec.tune, eval=eval_data,
                                             output=output if rec.tune is not None else None, trace=traced,
                                             preprocess=rec.preprocess, progress=progress, data_config=rec.data,
                                             limits=rec.limits, self_check=rec.self_check, validate=rec.validate)
        info = result.to_dict()
        info["output"] = str(output)
        if info.get("tune") is not None:
            info["tune"]["trace"] = None if traced is None else str(traced)
        with plan.stage() as staged:  # the model, its report and the recipe appear together or not at all
            staged.model(output, quantized)
            if report is not None:
                staged.text(report, _json_text(info))
            if dump_recipe is not None:
                staged.text(dump_recipe, _effective(rec, result).dumps(dump_recipe))
            staged.publish()
        if json_out:
            typer.echo(_json_text(info), nl=False)
        else:
            _render_quantize(info, model, output)
        if result.self_check is not None and not result.self_check.passed:
            _render_failed_check(result, output)
            raise typer.Exit(1)  # below a fidelity floor: the best model found is written all the same
        if result.search is not None and not result.search.goal_met:
            raise typer.Exit(1)  # the goal was not met: the best model found is written all the same
        if result.no_faster_plan:
            p = result.placement
            typer.echo(f"warning: no INT8 plan is faster than the float model on {p.cost_model} (batch {p.batch}, "
                       f"best estimate {p.estimated_int8_us / max(p.estimated_float_us, 1e-9):.2f}x the float time "
                       "for full INT8): the float model was written; --placement fixed forces INT8 anyway",
                       err=True)
            raise typer.Exit(1)
        if result.nothing_quantized:
            typer.echo("error: nothing was quantized (every node kept float; see the reasons above): the output is "
                       "the float model", err=True)
            raise typer.Exit(1)

    _guarded(work, json_out)


def _node_bits(items: list[str] | None) -> dict[str, int] | None:
    """--node-bits SEL=BITS entries as {selector: bits}."""
    from onnxcompress.errors import RecipeError

    if not items:
        return None
    out = {}
    for item in items:
        sel, sep, bits = item.rpartition("=")
        if not sep or not sel or not bits.strip().isdigit():
            raise RecipeError(f"bad --node-bits '{item}'", hint="give SEL=BITS, e.g. --node-bits 're:attn'=8")
        out[sel] = int(bits)
    return out


def _smooth_flag(value: str | None):
    """--smooth-quant: auto | off | a number (the alpha)."""
    if value is None or value in ("auto", "off"):
        return value
    try:
        return float(value)
    except ValueError:
        from onnxcompress.errors import RecipeError

        raise RecipeError(f"--smooth-quant must be auto, off or an alpha in (0, 1), got {value!r}",
                          hint="e.g. --smooth-quant 0.5") from None


def _effective(recipe, result):
    """The recipe as it ran: the resolved quantize config (target, weight range) and the search's goal metric."""

    tune = recipe.tune
    if tune is not None and result.search is not None and result.self_check is None:
        tune = replace(tune, metric=result.search.metric)
    return replace(recipe, quantize=result.config, tune=tune)


def _render_weights(info: dict[str, Any], model: Path, output: Path) -> None:
    w = info["weights"]
    for layer in w["layers"]:
        out_sqnr = "" if layer["output_sqnr_db"] is None else f", output SQNR {layer['output_sqnr_db']} dB"
        detail(f"{layer['node']:<40} {layer['format']}: {layer['bytes_before']} -> {layer['bytes_after']} B, "
               f"weight SQNR {layer['weight_sqnr_db']} dB{out_sqnr} ({layer['method']})")
    for s in info["skipped"]:
        detail(f"kept float  {s['node']}: {s['reason']}", err=True)
    before, after = w["constant_bytes"]["before"], w["constant_bytes"]["after"]
    kernels = ", ".join(f"{k} {c}" for k, c in (info.get("kernel_ops") or {}).items())
    detail(f"onnxruntime runs the weights as: {kernels or 'not verified'}")
    echo(f"COMPRESSED | {info['mode']} | file {model.stat().st_size / 1e6:.2f}->{output.stat().st_size / 1e6:.2f} MB"
         f" | constants {before / 1e6:.2f}->{after / 1e6:.2f} MB ({after / max(before, 1):.3f}x) | "
         f"{len(w['layers'])} layers compressed, {len(info['skipped'])} kept float")


def _render_failed_check(result, output: Path) -> None:
    check = result.self_check
    tried = "the full INT8 plan only" if not check.searched else \
        f"the full INT8 plan and {len(result.search.trials) - 1} mixed-precision plans (stopped: {check.stopped})"
    echo(f"error: self-check FAILED: no plan reached the fidelity floor on {check.data}; tried {tried}; "
         f"best model written to {output}: " + "; ".join(check.failures), err=True)
    seven_bit = bool(result.reduce_range and result.reduce_range[0])
    echo("  hint: " + ("the portable target uses 7-bit weights (exact on x86 CPUs without VNNI); --target cpu-vnni "
                       "(8-bit, for VNNI/AMX x86 and ARM) may reach the floor; " if seven_bit else "")
         + "judge the model on evaluation data (onnxcompress validate, or optimize --eval) or relax "
           "[validate.floors] if this output's floor is too strict for it", err=True)


def _render_check(c: dict[str, Any]) -> None:
    for name, kind in c["kinds"].items():
        detail(f"output {name}: {kind['kind']} ({kind['reason']}), judged by {kind['metric']}")
    for name, f in c["final"].items():
        base = c["baseline"][name]
        word = ">=" if f["higher_is_better"] else "<="
        shown = "" if not c["searched"] else f"full INT8 {base['value']:.4f} -> "
        detail(f"check  {name}: {f['metric']} {shown}{f['value']:.4f} ({'meets' if f['passed'] else 'MISSES'} "
               f"{word} {f['floor']:g})")
    detail(f"self-check {'PASSED' if c['passed'] else 'FAILED'} on {c['data']}"
           + (f"; the accuracy-aware search ran: {c['stopped']}" if c["searched"] else ""))


def _render_quantize(info: dict[str, Any], model: Path, output: Path) -> None:
    from onnxcompress.report_text import quantize_line

    for w in info.get("warnings", []):
        detail(f"warning: {w}", err=True)
    if info.get("tune"):
        _render_tune(info["tune"])
    if info.get("placement"):
        _render_placement(info["placement"])
    if info.get("weights") is not None:
        _render_weights(info, model, output)
        return
    if info.get("self_check"):
        _render_check(info["self_check"])
    for s in info["skipped"]:
        detail(f"kept float  {s['node']}: {s['reason']}", err=True)
    v = info.get("verification")
    mb_in, mb_out = sum(file_size(model)) / 1e6, sum(file_size(output)) / 1e6  # external data included
    done = any(q["kind"] != "passthrough" for q in info["quantized"])
    line = f"{'QUANTIZED' if done else 'NOTHING QUANTIZED'} | {mb_in:.2f}->{mb_out:.2f} MB"
    line += f" | {len(info['quantized'])} nodes quantized, {len(info['skipped'])} kept float | "
    line += info.get("calibrator") or info.get("mode", "")
    detail(f"quantize: {quantize_line(info)}")
    if v:
        kernels = ", ".join(f"{k} {c}" for k, c in v["kernel_ops"].items()) or "none"
        detail(f"int8 kernels ({v['provider']}): {kernels}")
        for f in v["float_nodes"]:
            detail(f"float kernel {f['node']} ({f['op']}): {f['reason']}", err=True)
        cover = "n/a (nothing quantizable)" if v["coverage"] is None else f"{v['coverage']:.0%}"
        line += f" | int8 kernels {v['weighted_int8']}/{v['weighted_total']} weighted ops, coverage {cover}"
    elif not info["config"].get("verify", True):
        detail(f"note: verification deferred (--no-verify): {output} was not opened in onnxruntime's "
               f"{info['config']['target']} provider; check it on the target with onnxcompress gate/profile "
               f"--providers {info['config']['target']}", err=True)
        line += " | NOT VERIFIED (--no-verify)"
    check = info.get("self_check")
    if check:
        line += " | self-check " + ("passed" if check["passed"] else "FAILED (below the fidelity floor)")
    echo(line)


def _render_placement(p: dict[str, Any]) -> None:
    est = p["estimated_ms"]
    kept = len(p["float_nodes"])
    line = (f"placement {p['cost_model']} (batch {p['batch']}): {kept} of {len(p['nodes'])} int8-capable nodes kept "
            f"float, est. {est['float']:.1f} -> {est['plan']:.1f} ms ({p['estimated_speedup']:.2f}x)")
    if p.get("measured"):
        m = p["measured"]
        line += f"; measured: chose {m['chosen']} (" + ", ".join(f"{k} {v:.2f}x" for k, v in m["speedup"].items()) + ")"
    detail(line)


def _render_tune(t: dict[str, Any]) -> None:
    best, goal = t["best"], t["goal"]
    for tr in t["trials"]:
        kept = ", ".join(f"{n}={p}" for n, p in tr["higher_precision"].items()) or "full int8"
        speed = f", {tr['latency']['speedup']:.2f}x fp32" if tr.get("latency") else ""
        detail(f"trial {tr['trial']:<3} {tr['phase']:<11} drop {tr['drop']:.4f}{speed}  {kept}")
    verdict = "GOAL MET" if t["goal_met"] else "GOAL NOT MET"
    drop = f"{goal['metric']} drop {best['drop']:.4f} (max {goal['max_drop']:g}" if goal["metric"] != "floors" else \
        f"every output at its kind's floor: summed shortfall {best['drop']:.4f} (0 = met"
    detail(f"{verdict} | {drop}, on {goal['data']}) | {len(t['trials'])} trials, {t['elapsed_s']:.1f} s | "
           f"stopped: {t['stopped']}")
    detail("higher precision: " + (", ".join(f"{n}={p}" for n, p in t["higher_precision"].items()) or "none"))
    if t.get("trace"):
        detail(f"trace    {t['trace']}")


@app.command()
def sensitivity(
    model: Path = typer.Argument(..., help="The float .onnx model."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration data: " + D.DATA_HELP + "."),
    eval_data: str | None = typer.Option(None, "--eval", help="Data for the full-model metrics [default: calib]."),
    metric: str = typer.Option("auto", "--metric", help="top1 | agreement | cosine (auto: top1 with labels)."),
    mode: str = typer.Option("static", "--mode", help="static | dynamic."),
    target: str = typer.Option("cpu", "--target", help="cpu | cuda | tensorrt."),
    calibrator: str = typer.Option("minmax", "--calibrator", help="minmax | percentile | entropy | mse."),
    top_k: int = typer.Option(5, "--top-k", help="Nodes whose full-model metrics are measured."),
    prune_ratio: float = typer.Option(0.0, "--prune-ratio", help="Also rank prunable channel groups by the loss "
                                      "of pruning each at this ratio (0 = skip)."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON here."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON."),
    image: str | None = D.IMAGE, labels_file: Path | None = D.LABELS_FILE, dim: list[str] | None = D.DIM,
    loader: str | None = D.LOADER, seed: int | None = D.SEED,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Rank nodes by quantization sensitivity (one-pass SQNR proxy, then full-model metrics for the top ones)."""

    def work():
        from onnxcompress import api
        from onnxcompress.errors import RecipeError
        from onnxcompress.quantization.config import QuantizeConfig
        from onnxcompress.tuning.config import TuneConfig

        calib_source = D.with_loader(calib, loader, "--calib")
        if calib_source is None:
            raise RecipeError("missing --calib (or --data-loader-script)", hint="give --calib " + D.DATA_HELP)
        _plan([calib_source, eval_data], [model], files={"--report": report})
        tune = TuneConfig(metric=metric, top_k=top_k, measure_latency=False)
        data_cfg = D.data_config(image=image, labels_file=labels_file, dims=dim, seed=seed)
        with logs.progress() as progress:
            info = api.sensitivity(model, calib_source, QuantizeConfig(mode=mode, target=target, calibrator=calibrator),
                                   tune, eval=eval_data, prune_ratio=prune_ratio, progress=progress,
                                   data_config=data_cfg, limits=_limits(max_data_mb, max_data_samples))
        _write_json(report, info)
        if json_out:
            typer.echo(_json_text(info), nl=False)
            return
        detail(f"{'rank':<5}{'node':<40}{'op':<12}{'SQNR dB':>9}{'drop if float':>15}{'drop only q':>13}")
        for r in info["nodes"]:
            cells = [f"{r[k]:.4f}" if r.get(k) is not None else "-" for k in ("drop_only_float", "drop_only_quantized")]
            sq = "-" if r["proxy_sqnr_db"] is None else f"{r['proxy_sqnr_db']:.1f}"
            detail(f"{r['rank']:<5}{r['node'][:39]:<40}{r['op']:<12}{sq:>9}{cells[0]:>15}{cells[1]:>13}")
        for g in info.get("prune", []):
            detail(f"prune group {g['group']} ({g['channels']} ch, via {g['node']}): "
                       + (f"drop {g['drop']:.4f}" if "drop" in g else f"error: {g.get('error')}"))
        echo(f"full INT8 {info['metric']} drop {info['full_int8']['drop']:.4f} on {info['data']} "
                   f"({info['samples']} samples)")

    _guarded(work, json_out)
