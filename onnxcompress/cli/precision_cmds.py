"""CLI command: convert-precision (parsing and rendering only; the work is in onnxcompress.api)."""

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
    _json_text,
    _limits,
    _load_recipe,
    _merged,
    _plan,
    app,
    detail,
    echo,
)


@app.command("convert-precision")
def convert_precision(
    model: Path = typer.Argument(..., help="The float32 .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the converted model."),
    to: str | None = typer.Option(None, "--to", help="fp16 | bf16 [default: fp16]."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration data (" + D.DATA_HELP + "): the "
                                     "per-tensor ranges that decide what stays float32."),
    eval_data: str | None = typer.Option(None, "--eval", help="Data the result is checked on (same forms as "
                                         "--calib) [default: calib]."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe file: its [preprocess] and [precision] "
                                                              "sections (flags given here override them)."),
    keep_io_types: bool | None = typer.Option(None, "--keep-io-types/--convert-io-types",
                                              help="Graph inputs/outputs stay float32 [default: keep]."),
    headroom: float | None = typer.Option(None, "--headroom", help="A tensor stays float32 when max|x| x this "
                                                                   "exceeds the format's max [default: 4]."),
    max_underflow: float | None = typer.Option(None, "--max-underflow", help="Largest fraction of nonzero values "
                                                                             "allowed to round to 0 [default: 0.01]."),
    max_reduction: int | None = typer.Option(None, "--max-reduction", help="Reductions over more elements stay "
                                                                           "float32 [default: 4096]."),
    max_dot_length: int | None = typer.Option(None, "--max-dot-length", help="MatMul/Gemm/Conv with more terms "
                                                                             "per output stay float32."),
    keep_fp32: list[str] | None = typer.Option(None, "--keep-fp32", help="Keep these nodes float32: name, op "
                                                                         "type, glob or re:REGEX (repeatable)."),
    samples: int | None = typer.Option(None, "--samples", help="Calibration samples for the statistics."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size of the statistics run."),
    verify: bool | None = typer.Option(None, "--verify/--no-verify", help="Check the result against the float32 "
                                                                          "model [default: verify]."),
    min_cosine: float | None = typer.Option(None, "--min-cosine", help="Fidelity floor: mean cosine of every "
                                                                       "output [default: 0.999]."),
    min_agreement: float | None = typer.Option(None, "--min-agreement", help="Fidelity floor: top-1 agreement "
                                                                             "of the class output [default: 0.99]."),
    verify_samples: int | None = typer.Option(None, "--verify-samples", help="Samples the check runs on."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of random data (--calib random) and of the random "
                                    "inputs the check uses without data [default: 0]."),
    dump_recipe: Path | None = typer.Option(None, "--dump-recipe", help="Write the effective recipe (.toml/.json)."),
    report: Path | None = typer.Option(None, "--report", help="Write the JSON report here."),
    json_out: bool = typer.Option(False, "--json", help="Print the JSON report."),
    image: str | None = D.IMAGE, labels_file: Path | None = D.LABELS_FILE, dim: list[str] | None = D.DIM,
    loader: str | None = D.LOADER,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """fp16/bf16 conversion that keeps float32 where values or reductions would overflow or lose too much
    (decided from --calib), with casts only at region borders; exits 1 on NaN/Inf or below the fidelity floor
    (the model is written all the same)."""

    def work():
        from dataclasses import replace

        from onnxcompress import api
        from onnxcompress.precision.config import PrecisionConfig
        from onnxcompress.recipe import Recipe

        base = _load_recipe(recipe)
        config = _merged(base.precision or PrecisionConfig(), to=to, keep_io_types=keep_io_types, headroom=headroom,
                         max_underflow=max_underflow, max_reduction=max_reduction, max_dot_length=max_dot_length,
                         keep_fp32=None if not keep_fp32 else tuple(keep_fp32), calibration_samples=samples,
                         batch_size=batch_size, verify=verify, min_cosine=min_cosine,
                         min_top1_agreement=min_agreement, verify_samples=verify_samples)
        rec = replace(base, precision=config, quantize=None, distill=None, prune=None, tune=None,
                      seed=base.seed if seed is None else seed,
                      data=D.data_config(base.data, image=image, labels_file=labels_file, dims=dim, seed=seed),
                      limits=_limits(max_data_mb, max_data_samples, base.limits))
        calib_source = D.with_loader(calib, loader, "--calib")
        if dump_recipe is not None:
            Recipe.check_path(dump_recipe)
        plan = _plan([calib_source, eval_data, recipe], [model], model=output,
                     files={"--report": report, "--dump-recipe": dump_recipe})
        with logs.progress() as progress:
            converted, result = api.convert_precision(model, config, calib_source, eval=eval_data,
                                                      preprocess=rec.preprocess, seed=rec.seed, progress=progress,
                                                      data_config=rec.data, limits=rec.limits)
        info = result.to_dict()
        info["output"] = str(output)
        with plan.stage() as staged:  # the model, its report and the recipe appear together or not at all
            staged.model(output, converted)
            if report is not None:
                staged.text(report, _json_text(info))
            if dump_recipe is not None:
                staged.text(dump_recipe, rec.dumps(dump_recipe))
            staged.publish()
        if json_out:
            typer.echo(_json_text(info), nl=False)
        else:
            _render(info, model, output)
        if not result.passed:
            raise typer.Exit(1)  # NaN/Inf or below the fidelity floor: written all the same, never with exit 0

    _guarded(work, json_out)


def _render(info: dict[str, Any], model: Path, output: Path) -> None:
    for w in info["warnings"]:
        detail(f"warning: {w}", err=True)
    for k in info["kept_float32"][:40]:
        detail(f"kept float32  {k['node']} ({k['op']}): {k['reason']}", err=True)
    if len(info["kept_float32"]) > 40:
        detail(f"kept float32  ... and {len(info['kept_float32']) - 40} more (see --report)", err=True)
    before, after = info["constant_bytes"]["before"], info["constant_bytes"]["after"]
    detail("constants " + ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in before.items()) + " -> "
           + ", ".join(f"{k} {v / 1e6:.3f} MB" for k, v in after.items()))
    check = info["check"]
    for o in (check or {}).get("outputs", []):
        agree = "" if o["top1_agreement"] is None else f", agreement {100 * o['top1_agreement']:.2f}%"
        detail(f"output {o['name']}: cosine {o['cosine']:.6f}{agree}, SQNR {o['sqnr_db']:.1f} dB, max abs err "
               f"{o['max_abs_error']:.3g}, NaN/Inf {o['nonfinite']}")
    n = info["nodes"]
    line = (f"{info['to'].upper()} | {model.stat().st_size / 1e6:.2f}->{output.stat().st_size / 1e6:.2f} MB | "
            f"{n['low_precision']} nodes {info['to']}, {n['kept_float32']} kept float32 "
            f"({', '.join(f'{r} {c}' for r, c in info['kept_float32_reasons'].items()) or 'none'}), "
            f"{info['casts']['inserted']} casts")
    if check is None:
        line += " | NOT VERIFIED (--no-verify)"
    else:
        how = ", emulated" if check["emulated"] else ""
        line += f" | floor {'met' if check['passed'] else 'NOT MET: ' + '; '.join(check['reasons'])} " \
                f"(on {check['samples']} samples of {check['data']}{how})"
    echo(line)
