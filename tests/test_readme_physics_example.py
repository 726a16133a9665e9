"""The README's physics-informed flow-matching example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_physics_informed_example_runs(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "ResidualPenalty(darcy" in b]
    exec(compile(block, str(README), "exec"), {})
    before, after = (
        float(v)
        for v in capsys.readouterr()
        .out.replace("tensor(", "")
        .replace(", dtype=torch.float64)", "")
        .split()
    )
    assert after < 1e-8 < before  # the projection puts the residual at the solver's floor
