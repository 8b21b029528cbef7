"""Running the CLI as a hostile user would, and checking that a failure was clean.

``run_clean_failure`` asserts what the robustness contract promises for bad input: the exit code, exactly one
``error:`` line with a ``hint:`` (for exit 3), no traceback, every watched folder exactly as it was (no temp file,
no half-written or stray output) and every input byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from onnxcompress.cli import app

runner = CliRunner()


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


def invoke(args: list):
    return runner.invoke(app, [str(a) for a in args])


def run_clean_failure(args: list, out_dir: Path, inputs: list[Path], expect: int = 3, match: str | None = None,
                      watch: list[Path] = ()) -> str:
    """Run the CLI; assert the exit code, one message with a hint, no traceback, nothing written, inputs intact.

    ``out_dir`` and every folder in ``watch`` must be unchanged afterwards; ``inputs`` byte-identical."""
    folders = [Path(out_dir), *map(Path, watch)]
    before = [listing(f) for f in folders]
    hashes = {p: sha(p) for p in inputs if Path(p).is_file()}
    result = invoke(args)
    out = result.output
    assert result.exit_code == expect, f"exit {result.exit_code} != {expect}:\n{out}"
    assert "Traceback" not in out and "internal error" not in out, out
    if expect == 3:
        assert [line.startswith("error:") for line in out.splitlines()].count(True) == 1 and "hint:" in out, out
        assert result.stdout == "", f"an error printed to stdout: {result.stdout!r}"
    if match is not None:
        assert match in out, out
    for folder, was in zip(folders, before):
        assert listing(folder) == was, f"{folder} changed: {was} -> {listing(folder)}"
    assert {p: sha(p) for p in hashes} == hashes, "an input file was modified"
    return out


def one_json_document(stdout: str) -> dict:
    """``stdout`` is exactly one JSON document (nothing before or after it)."""
    decoder = json.JSONDecoder()
    doc, end = decoder.raw_decode(stdout.lstrip())
    assert stdout.lstrip()[end:].strip() == "", f"text after the JSON document: {stdout.lstrip()[end:]!r}"
    return doc
