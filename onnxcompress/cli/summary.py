"""The end of a run for people: the stage lines of the console summary and, on GitHub Actions, the job summary.

When ``GITHUB_STEP_SUMMARY`` names a file (GitHub Actions sets it for every step), the verdict, the stage lines
and the gate criteria are appended to it as Markdown, so a CI run shows them on its summary page.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from onnxcompress.report_text import stage_lines, table

log = logging.getLogger(__name__)

__all__ = ["stage_lines", "step_summary", "write_step_summary"]


def step_summary(report: dict[str, Any]) -> str:
    """The Markdown appended to the GitHub job summary."""
    lines = [f"### onnxcompress {report['kind']}: {report['verdict']}", ""]
    lines += [f"- {s}" for s in stage_lines(report)]
    gate = report.get("gate")
    if gate:
        lines += [""] + table(["criterion", "result", "detail"], [
            [c["name"], "PASS" if c["passed"] else "**FAIL**", c["message"]] for c in gate["criteria"]])
    lines += [f"- warning: {w}" for w in report.get("warnings", [])]
    return "\n".join(lines) + "\n\n"


def write_step_summary(report: Any) -> None:
    """Append the summary of ``report`` (a Report) to $GITHUB_STEP_SUMMARY when it is set."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(step_summary(report.to_dict()))
    except OSError as e:  # deliberate: the job summary is a convenience; the report files are the record
        log.warning("cannot append to GITHUB_STEP_SUMMARY (%s): %s", path, e)
