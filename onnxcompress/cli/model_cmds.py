"""CLI commands: inspect and convert."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from onnxcompress.cli.app import _fmt_count, _guarded, _json_text, _plan, app, echo


# --- inspect ----------------------------------------------------------------------------------------------------
@app.command()
def inspect(
    model: Path = typer.Argument(..., help="The .onnx model."),
    json_out: bool = typer.Option(False, "--json", help="Print the machine-readable JSON (schema onnxcompress.inspect/1)."),
    shape: list[str] | None = typer.Option(None, "--shape", help="Concrete input shape NAME:1x3x224x224 (repeatable)."),
) -> None:
    """Signature, opsets, op histogram, parameters, MACs per op type and file size of a model."""

    def work():
        from onnxcompress import api
        from onnxcompress.ir.shapes import parse_shape_overrides

        info = api.inspect(model, parse_shape_overrides(shape))
        if json_out:
            typer.echo(_json_text(info), nl=False)
        else:
            _render_inspect(info)
        sys.stdout.flush()  # a closed pipe (`| head`) shows here, inside the guard

    _guarded(work, json_out)


def _render_inspect(info: dict[str, Any]) -> None:
    m = info["model"]
    echo(f"model     {m['path']}  ({m['total_bytes'] / 1e6:.2f} MB, external data {m['external_data_bytes']} B)")
    echo(f"format    IR {m['ir_version']}, opsets {m['opset_imports']}, producer {m['producer']} {m['producer_version']}")
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            echo(f"{kind[:-1]:<9} {v['name']}: {v['dtype']}{v['shape']}")
    echo(f"nodes     {info['nodes']}: " + ", ".join(f"{k} {v}" for k, v in info["op_histogram"].items()))
    p = info["parameters"]
    per = ", ".join(f"{k} {_fmt_count(v['count'])} ({v['bytes'] / 1e6:.2f} MB)" for k, v in p["by_dtype"].items())
    echo(f"params    {_fmt_count(p['total'])} ({p['bytes'] / 1e6:.2f} MB): {per}")
    formats = info.get("weights_by_format") or {}
    per = ", ".join(f"{k} {v['bytes'] / 1e6:.3f} MB ({v['tensors']} tensors)" for k, v in formats.items())
    echo(f"weights   by storage format: {per}")
    macs = info["macs"]
    per = ", ".join(f"{k} {_fmt_count(v)}" for k, v in macs["by_op_type"].items())
    echo(f"MACs      {_fmt_count(macs['total'])} at {macs['input_shapes']}: {per}")
    if macs["nodes_with_unknown_shape"]:
        echo(f"          (unknown shape, not counted: {', '.join(macs['nodes_with_unknown_shape'])})")
    for key, title in (("quantizable", "quantize"), ("prune_groups", "prune")):
        if key in info:
            echo(f"{title:<9} {info[key]['summary']}")


# --- convert ----------------------------------------------------------------------------------------------------
@app.command()
def convert(
    model: Path = typer.Argument(..., help="The .onnx model."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the converted model."),
    opset: int = typer.Option(17, "--opset", help="Target default-domain opset."),
    lift_constants: bool = typer.Option(True, "--lift-constants/--keep-constants",
                                        help="Turn Constant nodes into initializers."),
    json_out: bool = typer.Option(False, "--json", help="Print what was done as JSON."),
) -> None:
    """Convert a model to another opset with onnx's version converter (and lift Constant nodes to initializers)."""

    def work():
        from onnxcompress.ir.io import convert_opset, load_model, opset_of
        from onnxcompress.passes import LiftConstantsPass, PassContext, apply_to_model

        plan = _plan([], [model], model=output)
        src = load_model(model)
        before = opset_of(src)
        out = convert_opset(src, opset) if before != opset else src
        lifted = 0
        if lift_constants:
            out, result = apply_to_model(out, LiftConstantsPass(), PassContext())
            lifted = result.stats["lifted"]
        with plan.stage() as staged:
            written = staged.model(output, out)
            staged.publish()
        if json_out:
            typer.echo(_json_text({"output": str(output), "opset": {"before": before, "after": opset},
                                   "lifted_constants": lifted, "sha256": written.sha256, "bytes": written.bytes}),
                       nl=False)
        else:
            echo(f"opset {before} -> {opset}, {lifted} Constant nodes lifted -> {output}")

    _guarded(work, json_out)
