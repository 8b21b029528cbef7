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


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
