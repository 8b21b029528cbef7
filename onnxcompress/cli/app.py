"""The `onnxcompress` command line: parsing, rendering and exit codes only; the work happens in the API.

This module holds the typer app and the error handling; the commands live in the sibling modules.

Exit codes: 0 passed, 1 gate failed, 2 usage error, 3 user error (one clear message, no traceback),
4 internal error (traceback).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from onnxcompress._version import __version__
from onnxcompress.cli import logs
from onnxcompress.errors import EXIT_INTERNAL, OnnxCompressError, UserError


class _RootGroup(TyperGroup):
    """Accepts the global options (-v, -q, --log-file) anywhere on the line: they are moved before the command."""

    FLAGS = ("-v", "-vv", "--verbose", "-q", "--quiet")

    def parse_args(self, ctx, args):
        front, rest, i = [], [], 0
        while i < len(args):
            a = args[i]
            if a == "--":
                rest += args[i:]
                break
            if a in self.FLAGS or a.startswith("--log-file="):
                front.append(a)
            elif a == "--log-file" and i + 1 < len(args):
                front += args[i:i + 2]
                i += 1
            else:
                rest.append(a)
            i += 1
        return super().parse_args(ctx, front + rest)


app = typer.Typer(
    name="onnxcompress",
    cls=_RootGroup,
    help="Post-training optimizer for ONNX models: prune, distill, quantize, validate, gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help is plain text: "[gate]" or "[default: ...]" must not be read as rich markup
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"onnxcompress {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, show_default=False,
                                help="Show every step (-vv: debug details)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Errors and the verdict line only; no progress."),
    log_file: Path | None = typer.Option(None, "--log-file", help="Append the log (every step, timestamped) here."),
) -> None:
    """Post-training optimizer for ONNX models. The options above go anywhere on the command line."""
    ctx.obj = logs.setup_logging(verbose, quiet, log_file)
    logs.log_command(ctx.invoked_subcommand or "")


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


def _check_outputs(outputs: list, inputs: list, dirs: list = ()) -> None:
    """Before any work: each output file is writable and is none of the inputs; each report folder is not a file."""
    from onnxcompress.ir.io import check_output, check_output_dir

    for out in outputs:
        check_output(out, *inputs)
    for folder in dirs:
        check_output_dir(folder)


def _load_recipe(path):
    """The recipe file given with --recipe (else the defaults)."""
    from onnxcompress.recipe import Recipe

    return Recipe.from_file(path) if path is not None else Recipe()


def _merged(config, **flags):
    """``config`` with every flag the user gave (not None) applied on top: the recipe file's values < flags."""
    from dataclasses import replace

    given = {k: v for k, v in flags.items() if v is not None}
    return replace(config, **given) if given else config


def _dump_recipe(recipe, path) -> None:
    """Write the effective recipe of a run (--dump-recipe), so the same command with --recipe reproduces it."""
    if path is not None:
        recipe.write(path)


def _write_json(path, payload) -> None:
    import json

    from onnxcompress.ir.io import write_text_atomic

    if path is not None:
        write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def _fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def detail(text: str = "", err: bool = False) -> None:
    """A line of a command's summary; -q leaves only the verdict line (printed with typer.echo)."""
    if not logs.quiet():
        typer.echo(text, err=err)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
