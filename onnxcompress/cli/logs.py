"""Logging and progress for the command line: ``-v``/``-q``/``--log-file`` and the progress of long steps.

* ``-v`` shows INFO lines (every pass, stage and long step with its duration), ``-vv`` DEBUG; the default shows
  warnings; ``-q`` shows errors only, no progress and, of a command's summary, only its last (verdict) line.
* ``--log-file PATH`` appends every INFO (DEBUG with ``-vv``) line, with timestamps, whatever the console shows.
* Progress goes to stderr: a rich bar when stderr is a terminal; otherwise (CI logs, pipes) plain lines: one when a
  step starts, one every :data:`PLAIN_INTERVAL_S` seconds while it runs and one when it ends.

The options are read by the root callback (``cli/app.py``) into a :class:`CliState` held in a context variable
that every invocation sets anew (typer may vendor its own click, so click's context stack is not used); the
handlers installed on the ``onnxcompress`` logger are replaced by every invocation too.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import typer

from onnxcompress.passes.progress import NO_PROGRESS, Progress, ProgressTask

LOGGER = "onnxcompress"
PLAIN_INTERVAL_S = 5.0
_MARK = "_onnxcompress_cli"  # tags the handlers this module installed, so a new invocation replaces them


@dataclass(frozen=True)
class CliState:
    """What the root options asked for: verbosity -1 (quiet), 0, 1 (-v), 2 (-vv) and the log file."""

    verbosity: int = 0
    log_file: Path | None = None

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0


_STATE: contextvars.ContextVar[CliState | None] = contextvars.ContextVar("onnxcompress_cli_state", default=None)


def state() -> CliState:
    """The options of the running invocation (set by the root callback; defaults before it ran)."""
    return _STATE.get() or CliState()


def quiet() -> bool:
    return state().quiet


# --- logging ----------------------------------------------------------------------------------------------------
class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test runner swaps it per invocation)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _level(verbosity: int) -> int:
    return {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


def setup_logging(verbose: int, quiet_flag: bool, log_file: Path | None) -> CliState:
    """Install the console (stderr) and file handlers on the ``onnxcompress`` logger; returns the state."""
    if quiet_flag and verbose:
        raise typer.BadParameter("-q and -v contradict each other: give one of them", param_hint="-q/-v")
    verbosity = -1 if quiet_flag else min(verbose, 2)
    logger = logging.getLogger(LOGGER)
    for h in [h for h in logger.handlers if getattr(h, _MARK, False)]:
        logger.removeHandler(h)
        h.close()
    console = _StderrHandler()
    console.setLevel(_level(verbosity))
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbosity >= 2
                                           else "%(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        try:
            file_handler = logging.FileHandler(log_file, mode="a", encoding="utf-8")
        except OSError as e:
            raise typer.BadParameter(f"cannot write the log file {log_file}: {e.strerror or e}",
                                     param_hint="--log-file") from e
        file_handler.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handlers.append(file_handler)
    for h in handlers:
        setattr(h, _MARK, True)
        logger.addHandler(h)
    logger.setLevel(min(h.level for h in handlers))
    cli_state = CliState(verbosity, log_file)
    _STATE.set(cli_state)
    return cli_state


def log_command(command: str) -> None:
    """The command and version, first in the log file, so a log says what ran."""
    from onnxcompress._version import __version__

    logging.getLogger(LOGGER).info("onnxcompress %s %s", __version__, command)


# --- progress ---------------------------------------------------------------------------------------------------
class PlainProgress:
    """Plain lines on a stream that is not a terminal: a step's start, every ``interval`` seconds, its end."""

    def __init__(self, stream: TextIO, interval: float = PLAIN_INTERVAL_S, clock=time.monotonic):
        self.stream, self.interval, self.clock = stream, interval, clock
        self.start = clock()

    def line(self, text: str) -> None:
        print(f"[{self.clock() - self.start:7.1f}s] {text}", file=self.stream, flush=True)

    def stage(self, name: str) -> None:
        self.line(f"stage {name}")

    def task(self, description: str, total: int | None = None, unit: str = "steps") -> ProgressTask:
        return _PlainTask(self, description, total, unit)


class _PlainTask:
    def __init__(self, owner: PlainProgress, description: str, total: int | None, unit: str):
        self.owner, self.description, self.total, self.unit = owner, description, total, unit
        self.done = 0
        self.started = self.last = owner.clock()
        owner.line(f"{description}: {self._count()}")

    def _count(self) -> str:
        return f"{self.done}/{self.total} {self.unit}" if self.total is not None else f"{self.done} {self.unit}"

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        now = self.owner.clock()
        if now - self.last >= self.owner.interval:
            self.last = now
            pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            self.owner.line(f"{self.description}: {self._count()}{pct}")

    def close(self) -> None:
        self.owner.line(f"{self.description}: {self._count()} in {self.owner.clock() - self.started:.1f} s")


class RichProgress:
    """A rich bar per running step on a terminal (stderr); the current stage leads every description."""

    def __init__(self, bar: Any):
        self.bar = bar
        self.current = ""

    def stage(self, name: str) -> None:
        self.current = name
        self.bar.console.print(f"[dim]stage[/dim] {name}", highlight=False)

    def task(self, description: str, total: int | None = None, unit: str = "steps") -> ProgressTask:
        label = f"{self.current}: {description}" if self.current else description
        return _RichTask(self.bar, self.bar.add_task(label, total=total, unit=unit))


class _RichTask:
    def __init__(self, bar: Any, task_id: Any):
        self.bar, self.task_id = bar, task_id

    def advance(self, steps: int = 1) -> None:
        self.bar.advance(self.task_id, steps)

    def close(self) -> None:
        self.bar.remove_task(self.task_id)


@contextmanager
def progress() -> Iterator[Progress]:
    """The progress sink of this invocation: nothing with -q, a rich bar on a terminal, else plain lines."""
    if quiet():
        yield NO_PROGRESS
        return
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield PlainProgress(sys.stderr)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[unit]}"), TimeElapsedColumn())
    with Bar(*columns, console=console, transient=True) as bar:
        yield RichProgress(bar)
