"""The `onnxcompress` command line (typer). Importing this package registers every command on ``app``."""

from onnxcompress.cli import (  # noqa: F401  (register)
    check_cmds,
    distill_cmds,
    model_cmds,
    precision_cmds,
    prune_cmds,
    quantize_cmds,
)
from onnxcompress.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
