"""CLI commands: prune."""

from __future__ import annotations

from pathlib import Path

import typer

from onnxcompress.cli import data_opts as D
from onnxcompress.cli import logs
from onnxcompress.cli.app import (
    MAX_DATA_MB,
    MAX_DATA_SAMPLES,
    _fmt_count,
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


# --- prune ------------------------------------------------------------------------------------------------------
def _round_to(value: str | None) -> int | str | None:
    """--round-to: an integer or auto (checked by PruneConfig)."""
    if value is None or value.strip().lower() == "auto":
        return None if value is None else "auto"
    try:
        return int(value)
    except ValueError:
        return value  # PruneConfig names the bad value and the choices


def _parse_overrides(items: list[str] | None) -> dict[str, float]:
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
    ratio: float | None = typer.Option(None, "--ratio", help="Fraction of each group's channels to remove, in "
                                          "[0, 1) (default 0.3 when no target is given)."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration data (" + D.DATA_HELP + "): needed by "
                                     "activation/reconstruction, gives shapes to models with dynamic dims."),
    recipe: Path | None = typer.Option(None, "--recipe", help="Recipe file: its [preprocess] and [prune] "
                                          "sections (flags given here override them)."),
    criterion: str | None = typer.Option(None, "--criterion",
                                            help="l1 | l2 | bn_scale | activation | reconstruction | random."),
    allocation: str | None = typer.Option(None, "--allocation", help="local (same ratio per group) | global."),
    min_channels: int | None = typer.Option(None, "--min-channels", help="Never keep fewer units than this."),
    round_to: str | None = typer.Option(None, "--round-to", help="Kept channels per group are a multiple of "
                                           "this: an integer, or auto (8 for groups of >= 16 channels)."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Node name, op type, glob or re:REGEX "
                                                "whose output channels are never pruned (repeatable)."),
    override: list[str] | None = typer.Option(None, "--override", help="SELECTOR=RATIO for the groups of "
                                                 "matching nodes (repeatable)."),
    target_macs: float | None = typer.Option(None, "--target-macs", help="Keep this fraction of the MACs "
                                                "(0.5 halves them); the ratio is searched."),
    target_params: float | None = typer.Option(None, "--target-params", help="Keep this fraction of the "
                                                  "parameters."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the random criterion."),
    max_samples: int | None = typer.Option(None, "--max-samples", help="Calibration samples for data-driven "
                                              "criteria."),
    bias_correction: bool | None = typer.Option(None, "--bias-correction/--no-bias-correction",
                                                   help="Fold the calibration mean of removed channels into the "
                                                   "next layer's bias (needs --calib; recommended)."),
    dump_recipe: Path | None = typer.Option(None, "--dump-recipe", help="Write the effective recipe "
                                               "(.toml/.json); --recipe with it reproduces this run."),
    report: Path | None = typer.Option(None, "--report", help="Write the pruning report (JSON) here."),
    json_out: bool = typer.Option(False, "--json", help="Print the pruning report as JSON."),
    image: str | None = D.IMAGE, dim: list[str] | None = D.DIM, loader: str | None = D.LOADER,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Structured channel pruning on the ONNX graph (dependency-aware: residuals, Concat, depthwise, Flatten)."""

    def work():
        from dataclasses import replace

        from onnxcompress import api
        from onnxcompress.errors import RecipeError
        from onnxcompress.pruning.config import PruneConfig
        from onnxcompress.recipe import Recipe

        if ratio is not None and (target_macs is not None or target_params is not None):
            raise RecipeError("give --ratio or a target (--target-macs/--target-params), not both",
                              hint="a target searches the ratio itself; drop --ratio")
        base = _load_recipe(recipe)
        config = _merged(base.prune or PruneConfig(), ratio=ratio, criterion=criterion, allocation=allocation,
                         min_channels=min_channels, round_to=_round_to(round_to),
                         exclude=None if not exclude else tuple(exclude),
                         overrides=None if not override else _parse_overrides(override),
                         target_macs=target_macs, target_params=target_params, seed=seed, max_samples=max_samples,
                         bias_correction=bias_correction)
        rec = replace(base, prune=config, distill=None, quantize=None, tune=None, seed=config.seed,
                      data=D.data_config(base.data, image=image, dims=dim, seed=seed),
                      limits=_limits(max_data_mb, max_data_samples, base.limits))
        calib_source = D.with_loader(calib, loader, "--calib")
        if dump_recipe is not None:
            Recipe.check_path(dump_recipe)
        plan = _plan([calib_source, recipe], [model], model=output,
                     files={"--report": report, "--dump-recipe": dump_recipe})
        with logs.progress() as progress:
            pruned, result = api.prune(model, config, calib_source, preprocess=rec.preprocess, progress=progress,
                                       data_config=rec.data, limits=rec.limits)
        info = result.to_dict()
        info["output"] = str(output)
        with plan.stage() as staged:  # the model, its report and the recipe appear together or not at all
            staged.model(output, pruned)
            if report is not None:
                staged.text(report, _json_text(info))
            if dump_recipe is not None:
                staged.text(dump_recipe, rec.dumps(dump_recipe))
            staged.publish()
        if json_out:
            typer.echo(_json_text(info), nl=False)
            return
        for b in info["blocked"][:8]:
            detail(f"blocked   {b['units']} units at {b['slots'][0]}: {b['reasons'][0]}", err=True)
        b, a = info["before"], info["after"]
        echo(f"PRUNED | MACs {_fmt_count(b['macs'])}->{_fmt_count(a['macs'])} "
                   f"(x{a['macs'] / max(b['macs'], 1):.2f}) | params {_fmt_count(b['params'])}->"
                   f"{_fmt_count(a['params'])} | {b['bytes'] / 1e6:.2f}->{a['bytes'] / 1e6:.2f} MB | "
                   f"{info['summary'].split(';')[0]} -> {output}")

    _guarded(work, json_out)
