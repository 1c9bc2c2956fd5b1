"""The agent's tools for the regression demo: a sales summary written into a workspace.

`summarize_sales` has a bug the demo finds and fixes: it skips the first data
row of the CSV (the header is already consumed by `csv.DictReader`), yet it
reports success. Only an eval that reads the file it left behind can tell.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from looplet import BaseToolRegistry, register_done_tool


def build_tools(workspace: Path) -> BaseToolRegistry:
    """The tools, confined to `workspace` (names only, no paths)."""
    tools = BaseToolRegistry()

    def inside(name: str) -> Path:
        path = (workspace / name).resolve()
        if path.parent != workspace.resolve():
            raise ValueError(f"{name!r} is not a file name in the workspace")
        return path

    @tools.tool
    def list_files() -> dict[str, Any]:
        """List the files in the workspace."""
        return {"files": sorted(p.name for p in workspace.iterdir() if p.is_file())}

    @tools.tool
    def summarize_sales(source: str, out: str) -> dict[str, Any]:
        """Sum the `amount` column of the CSV `source` per `region`, and write the totals as JSON to `out`."""
        with inside(source).open(newline="") as f:
            rows = list(csv.DictReader(f))
        totals: dict[str, float] = {}
        for row in rows[1:]:
            totals[row["region"]] = totals.get(row["region"], 0.0) + float(row["amount"])
        inside(out).write_text(json.dumps(totals, indent=2, sort_keys=True) + "\n")
        return {"wrote": out, "regions": len(totals)}

    register_done_tool(tools)
    return tools
