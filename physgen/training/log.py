"""Training metrics as JSON lines (one object per line), with resumption that drops stale lines."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from physgen.data.atomic import atomic_output

__all__ = ["MetricsLog"]


class MetricsLog:
    """Append metric records to a JSON-lines file and keep them in memory as ``history``.

    Each record is one JSON object such as ``{"step": 100, "loss": 0.52, "lr": 0.001,
    "samples_per_s": 9120.4}``; non-finite numbers are written as ``null`` so every line is
    valid JSON. When resuming from step ``s``, lines with a step beyond ``s`` (written by the
    interrupted run after its last checkpoint) are dropped first, so the file reads as one run.

    Args:
        path: the file, or ``None`` to keep records in memory only.
        resume_step: the step a resumed run restarts from, or ``None`` for a fresh run (which
            truncates an existing file).
    """

    def __init__(self, path: str | Path | None, resume_step: int | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.history: list[dict[str, Any]] = []
        self._file = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept: list[str] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by the kill
                if record.get("step", 0) <= resume_step:
                    kept.append(line)
                    self.history.append(record)
        with atomic_output(self.path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))
        self._file = open(self.path, "a")  # noqa: SIM115 - held open for the run

    def write(self, record: dict[str, Any]) -> None:
        """Record one set of metrics."""
        clean = {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None)
            for k, v in record.items()
        }
        self.history.append(clean)
        if self._file is not None:
            self._file.write(json.dumps(clean) + "\n")
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
