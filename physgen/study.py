"""Shared scaffolding of a study script: its command line, output folder and result files."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from physgen.data.atomic import atomic_output, nonfinite_to_none, write_json_atomic
from physgen.paths import runs_root

__all__ = ["study_setup", "write_results"]


def study_setup(
    name: str,
    doc: str | None,
    configs: Mapping[str, dict[str, Any]],
    argv: Sequence[str] | None,
    parts: Sequence[str] = (),
) -> tuple[dict[str, Any], Path]:
    """Parse ``--quick``, ``--device`` and ``--out``; the chosen configuration and a new folder.

    ``configs`` holds ``"quick"`` (CPU) and ``"full"``; the folder defaults to
    ``runs/<name>-<UTC timestamp>``. A study made of ``parts`` also takes ``--parts`` (a
    subset, default all), returned as ``cfg["parts"]``.
    """
    parser = argparse.ArgumentParser(prog=f"physgen run {name}", description=doc)
    parser.add_argument("--quick", action="store_true", help="CPU configuration (minutes)")
    parser.add_argument("--device", help="override the configuration's device")
    parser.add_argument("--out", type=Path, help=f"output folder (default: runs/{name}-…)")
    if parts:
        parser.add_argument("--parts", nargs="+", choices=list(parts), default=list(parts),
                            help="the parts of the study to run (default: all)")  # fmt: skip
    args = parser.parse_args(argv)
    cfg = dict(configs["quick" if args.quick else "full"])
    if parts:
        cfg["parts"] = list(args.parts)
    if args.device:
        cfg["device"] = args.device
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or runs_root() / f"{name}-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    return cfg, out


def write_results(out: Path, cfg: dict[str, Any], results: Any, table: str) -> Path:
    """Write ``results.json`` (configuration and scores) and ``results.md`` (the table)."""
    write_json_atomic(nonfinite_to_none({"config": cfg, "results": results}), out / "results.json")
    with atomic_output(out / "results.md") as tmp:
        Path(tmp).write_text(table + "\n")
    print(f"\n{table}\n\nwrote {out / 'results.md'}")
    return out / "results.md"
