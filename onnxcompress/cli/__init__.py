"""The `onnxcompress` command line (typer). Importing this package registers every command on ``app``."""

from onnxcompress.cli import check_cmds, distill_cmds, model_cmds, prune_cmds, quantize_cmds  # noqa: F401  (register)
from onnxcompress.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
