"""Progress of long steps (calibration batches, reconstructed layers, search trials, profiling rounds).

The library only *reports* progress through the small :class:`Progress` protocol; the CLI implements it (a rich
bar in a terminal, periodic plain lines when stderr is not a terminal, nothing with ``-q``) and the Python API
defaults to :data:`NO_PROGRESS`. A step is opened with :func:`track`, which also writes one INFO log line when the
step ends (``-v`` shows them), so every long step is visible in a log file as well::

    with track(ctx.progress, "calibrate", total=len(batches), unit="batches") as step:
        for batch in batches:
            ...
            step.advance()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)


class ProgressTask(Protocol):
    """One running step: ``advance`` after each unit of work, ``close`` when it ends."""

    def advance(self, steps: int = 1) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    """Where progress goes: ``stage`` when a pipeline stage starts, ``task`` for a step with countable units."""

    def stage(self, name: str) -> None: ...

    def task(self, description: str, total: int | None = None, unit: str = "steps") -> ProgressTask: ...


class _NullTask:
    def advance(self, steps: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class NullProgress:
    """Reports nothing (the default of the Python API)."""

    def stage(self, name: str) -> None:
        pass

    def task(self, description: str, total: int | None = None, unit: str = "steps") -> ProgressTask:
        return _NullTask()


NO_PROGRESS: Progress = NullProgress()


class _Counted:
    """Counts the units a step did, for the closing log line."""

    def __init__(self, inner: ProgressTask):
        self.inner = inner
        self.done = 0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        self.inner.advance(steps)

    def close(self) -> None:
        self.inner.close()


@contextmanager
def track(progress: Progress | None, description: str, total: int | None = None,
          unit: str = "steps") -> Iterator[ProgressTask]:
    """A step on ``progress`` (None: nothing shown) that is closed however the block ends; logs its duration."""
    start = time.perf_counter()
    task = _Counted((progress or NO_PROGRESS).task(description, total, unit))
    try:
        yield task
    finally:
        task.close()
        log.info("%s: %d %s in %.2f s", description, task.done, unit, time.perf_counter() - start)
