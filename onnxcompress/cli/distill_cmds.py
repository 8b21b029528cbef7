"""CLI commands: distill: reconstruct, export-weights, attach."""

from __future__ import annotations

from pathlib import Path

import typer

# --- distill ----------------------------------------------------------------------------------------------------
from typer.core import TyperGroup

from onnxcompress.cli import data_opts as D
from onnxcompress.cli import logs
from onnxcompress.cli.app import MAX_DATA_MB, MAX_DATA_SAMPLES, _guarded, _json_text, _limits, _plan, app, echo


class _DistillGroup(TyperGroup):
    """`distill TEACHER STUDENT ...` runs `reconstruct`; `distill export-weights|attach ...` run those."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args.insert(0, "reconstruct")
        return super().resolve_command(ctx, args)


distill_app = typer.Typer(cls=_DistillGroup, no_args_is_help=True, rich_markup_mode=None,
                          help="Recover accuracy without a training loop; attach weights trained elsewhere.")
app.add_typer(distill_app, name="distill")


@distill_app.command("reconstruct")
def distill_reconstruct(
    teacher: Path = typer.Argument(..., help="The original (teacher) model."),
    student: Path = typer.Argument(..., help="The compressed (student) model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the reconstructed student."),
    calib: str | None = typer.Option(None, "--calib", help="Calibration data: " + D.DATA_HELP + "."),
    ridge: float = typer.Option(1e-3, "--ridge", help="Ridge strength, relative to the mean diagonal of X^T X."),
    samples: int = typer.Option(256, "--samples", help="Calibration samples to use."),
    memory_mb: int = typer.Option(1024, "--memory-mb", help="Memory (each) for the teacher's target rows (layers "
                                  "whose rows fit together share one teacher pass) and the student's stored "
                                  "activations (later layers start from them)."),
    kept: Path | None = typer.Option(None, "--kept", help="Kept-channel record (the prune report JSON)."),
    json_out: bool = typer.Option(False, "--json", help="Print the reconstruction report as JSON."),
    image: str | None = D.IMAGE, dim: list[str] | None = D.DIM, loader: str | None = D.LOADER,
    seed: int | None = D.SEED,
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Refit the student's Conv/Gemm/MatMul weights, layer by layer, to the teacher's activations."""

    def work():
        from onnxcompress import api
        from onnxcompress.distillation.config import DistillConfig
        from onnxcompress.distillation.weights_io import load_kept
        from onnxcompress.errors import RecipeError

        calib_source = D.with_loader(calib, loader, "--calib")
        if calib_source is None:
            raise RecipeError("missing --calib (or --data-loader-script)", hint="give --calib " + D.DATA_HELP)
        _plan([calib_source, kept], [teacher, student], model=output)
        config = DistillConfig(ridge=ridge, samples=samples, memory_mb=memory_mb)
        with logs.progress() as progress:
            _, result = api.distill(teacher, student, calib_source, config, kept=load_kept(kept), output=output,
                                    progress=progress, data_config=D.data_config(image=image, dims=dim, seed=seed),
                                    limits=_limits(max_data_mb, max_data_samples))
        if json_out:
            typer.echo(_json_text({**result.to_dict(), "output": str(output)}), nl=False)
            return
        echo(f"reconstructed {len(result.reconstructed)} layers, skipped {len(result.skipped)} -> {output}")

    _guarded(work, json_out)


@distill_app.command("export-weights")
def distill_export(
    model: Path = typer.Argument(..., help="The (compressed) model whose weights a trainer must produce."),
    output: Path = typer.Option(..., "-o", "--output", help="The .npz to write (name -> array)."),
    json_out: bool = typer.Option(False, "--json", help="Print the exported names, shapes and dtypes as JSON."),
) -> None:
    """Write the names, shapes and current values of the model's trainable weights to an .npz."""

    def work():
        from onnxcompress.distillation.weights_io import export_weights, npz_bytes
        from onnxcompress.ir.io import load_model

        plan = _plan([], [model], files={"output": output})
        weights = export_weights(load_model(model))
        with plan.stage() as staged:
            staged.bytes(output, npz_bytes(weights))
            staged.publish()
        if json_out:
            typer.echo(_json_text({"output": str(output), "tensors": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in weights.items()}}), nl=False)
        else:
            echo(f"{len(weights)} tensors -> {output}")

    _guarded(work, json_out)


@distill_app.command("attach")
def distill_attach(
    model: Path = typer.Argument(..., help="The model to receive the weights."),
    weights: Path = typer.Argument(..., help="Weights: .npz, .safetensors or .onnx."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the model with the new weights."),
    mapping: Path | None = typer.Option(None, "--mapping", help="JSON {model_name: name_in_file}."),
    data: str | None = typer.Option(None, "--data", help="Data to validate with: " + D.DATA_HELP +
                                    " [default: random]."),
    json_out: bool = typer.Option(False, "--json", help="Print the attach report as JSON."),
    max_data_mb: float | None = MAX_DATA_MB,
    max_data_samples: int | None = MAX_DATA_SAMPLES,
) -> None:
    """Attach weights trained elsewhere (name/shape/dtype checked), validate by running, and save."""

    def work():
        from onnxcompress import api

        _plan([weights, mapping, data], [model], model=output)
        _, result = api.attach(model, weights, mapping, data, output, limits=_limits(max_data_mb, max_data_samples))
        if json_out:
            typer.echo(_json_text({**result.to_dict(), "output": str(output)}), nl=False)
            return
        echo(f"attached {len(result.attached)} tensors, validated on {result.validated_on} -> {output}")

    _guarded(work, json_out)
