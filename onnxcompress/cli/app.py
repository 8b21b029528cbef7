"""The `onnxcompress` command line: parsing, rendering and exit codes only; the work happens in the API.

This module holds the typer app and the error handling; the commands live in the sibling modules.

Exit codes: 0 passed, 1 gate failed, 2 usage error, 3 user error (one clear message, no traceback),
4 internal error (traceback).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from onnxcompress._version import __version__
from onnxcompress.cli import logs
from onnxcompress.errors import EXIT_INTERNAL, EXIT_USER_ERROR, Interrupted, OnnxCompressError
from onnxcompress.ir.graph import route_graphsurgeon_logging
from onnxcompress.ir.outputs import handle_signal
from onnxcompress.report_text import printable


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


def echo(text: str = "", err: bool = False) -> None:
    """A human line: control characters (from model or tensor names) are shown escaped, never sent raw."""
    typer.echo(printable(text), err=err)


def _guarded(fn: Callable[[], Any], json_out: bool = False) -> Any:
    """Run ``fn``; every failure ends in one message on stderr and an exit code (see :func:`_failure`); with
    ``--json`` an ``{"error": ...}`` document is also printed on stdout, so stdout always holds one JSON document.

    SIGINT and SIGTERM raise :class:`Interrupted` (temporary files are removed on the way out; a set of outputs
    being published is finished first) and exit 128 + the signal number; a closed stdout (``| head``) ends quietly.
    """
    previous = _install_signal_handlers()
    route_graphsurgeon_logging()  # it prints to stdout, where --json output goes
    try:
        return fn()
    except typer.Exit:
        raise
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(0) from None
    except (Exception, KeyboardInterrupt) as e:  # deliberate: each is reported below; a bug as exit 4 + traceback
        failure = _failure(e)
        if failure.bug:
            traceback.print_exc()
        typer.echo(failure.line(), err=True)
        if json_out:
            typer.echo(_json_text({"error": failure.to_dict()}), nl=False)
        raise typer.Exit(failure.exit_code) from None
    finally:
        _restore_signal_handlers(previous)


@dataclass(frozen=True)
class _Failure:
    exit_code: int
    kind: str
    message: str
    hint: str | None = None
    bug: bool = False

    def line(self) -> str:
        if self.kind == "interrupted":
            return self.message
        if self.bug:
            return f"internal error: {printable(self.message)} (please report it)"
        hint = f"\n  hint: {printable(self.hint)}" if self.hint else ""
        return f"error: {printable(self.message).replace(chr(10), chr(92) + 'n')}{hint}"

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "type": self.kind, "message": self.message, "hint": self.hint}


def _failure(e: BaseException) -> _Failure:
    """Exit 3 for what the user can fix (typed user errors, files the OS refuses, memory), 128 + N for signal N,
    130 for Ctrl-C, 4 for everything else (a bug)."""
    if isinstance(e, OnnxCompressError):
        bug = e.exit_code != EXIT_USER_ERROR
        return _Failure(e.exit_code, type(e).__name__, e.message if not bug else str(e), e.hint, bug)
    if isinstance(e, Interrupted):
        return _Failure(e.exit_code, "interrupted", f"interrupted ({signal.Signals(e.signum).name})")
    if isinstance(e, KeyboardInterrupt):
        return _Failure(130, "interrupted", "interrupted")
    if isinstance(e, MemoryError):
        return _Failure(EXIT_USER_ERROR, "MemoryError", "out of memory",
                        "the model or the data is too large for this machine: use smaller data (see --max-data-mb) "
                        "or a machine with more memory")
    if isinstance(e, OSError) and e.filename is not None:
        return _Failure(EXIT_USER_ERROR, type(e).__name__, f"cannot access {e.filename}: {e.strerror or e}",
                        "check the path, its permissions and the free disk space")
    return _Failure(EXIT_INTERNAL, type(e).__name__, repr(e), bug=True)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGINT/SIGTERM -> Interrupted (the main thread only: elsewhere Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handle_signal)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _silence_stdout() -> None:
    """The reader of stdout went away: point stdout at /dev/null so the final flush cannot fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _plan(inputs: list, models: list = (), *, model: Any = None, files: dict[str, Any] | None = None,
          folder: Any = None):
    """The checked OutputPlan of a command: ``model`` (the model output), ``files`` ({role: path}), ``folder``
    (a report folder for report.json/report.md/junit.xml); ``models``/``inputs``: what the command reads."""
    from onnxcompress.ir.outputs import OutputPlan
    from onnxcompress.report import REPORT_FILES

    plan = OutputPlan(models, inputs).model(model)
    for role, path in (files or {}).items():
        plan.file(path, role)
    return plan.folder(folder, REPORT_FILES.values()).check()


MAX_DATA_MB = typer.Option(None, "--max-data-mb", help="Refuse a data file that decompresses to more than this "
                           "many MB (recipe: [limits] max_data_mb) [default: 2048].")
MAX_DATA_SAMPLES = typer.Option(None, "--max-data-samples", help="Refuse a data input with more samples than this "
                                "(recipe: [limits] max_samples) [default: 1000000].")


def _limits(max_data_mb: float | None, max_data_samples: int | None, base=None):
    """The data limits: the recipe's [limits] (else the defaults) with the flags given on top."""
    from onnxcompress.data.limits import DataLimits

    return _merged(base or DataLimits(), max_data_mb=max_data_mb, max_samples=max_data_samples)


def _load_recipe(path):
    """The recipe file given with --recipe (else the defaults)."""
    from onnxcompress.recipe import Recipe

    return Recipe.from_file(path) if path is not None else Recipe()


def _merged(config, **flags):
    """``config`` with every flag the user gave (not None) applied on top: the recipe file's values < flags."""
    from dataclasses import replace

    given = {k: v for k, v in flags.items() if v is not None}
    return replace(config, **given) if given else config


def _json_text(payload) -> str:
    """One strict JSON document (non-finite numbers as the strings "nan", "inf", "-inf", as in report.json)."""
    import json

    from onnxcompress.report import jsonable

    return json.dumps(jsonable(payload), indent=2, allow_nan=False) + "\n"


def _write_json(path, payload) -> None:
    from onnxcompress.ir.outputs import write_text

    if path is not None:
        write_text(path, _json_text(payload))


def _fmt_count(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def detail(text: str = "", err: bool = False) -> None:
    """A line of a command's summary (escaped like :func:`echo`); -q leaves only the verdict line."""
    if not logs.quiet():
        echo(text, err=err)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
