"""Helpers the pipeline tests share: copy the example specs into a workspace, write specs."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / ".agent" / "data" / "pipelines"
EXAMPLE_NAMES = ("orders_daily", "customers_dim", "clickstream")


def add_examples(ws) -> None:
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_NAMES:
        shutil.copy(EXAMPLES / f"{name}.yaml", ws.pipelines_dir / f"{name}.yaml")


def write_spec(ws, name: str, text: str) -> Path:
    ws.pipelines_dir.mkdir(parents=True, exist_ok=True)
    path = ws.pipelines_dir / f"{name}.yaml"
    path.write_text(text, "utf-8")
    return path


def chain_spec(n: int, name: str = "big", schedule: str = "@daily") -> str:
    """A linear-ish spec of n stages (each reads the previous one's output; every 10th fans in)."""
    lines = [f"name: {name}", "owner: data-engineer", f"schedule: '{schedule}'",
             "sources:", "  - {name: src, kind: file, format: csv}", "stages:"]
    for i in range(n):
        inputs = ["src"] if i == 0 else [f"d{i - 1}"] + ([f"d{i - 10}"] if i >= 10 and i % 10 == 0 else [])
        lines += [f"  - name: s{i}", "    kind: transform", f"    inputs: [{', '.join(inputs)}]",
                  f"    outputs: [d{i}]", f"    timeout: {1 + i % 7}m"]
    return "\n".join(lines) + "\n"
