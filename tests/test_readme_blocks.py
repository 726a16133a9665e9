"""Every ``python`` block of the README runs as written, each on its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


def _blocks() -> list[tuple[int, str]]:
    """``(line number, code)`` of each python block of the README."""
    text = README.read_text()
    return [
        (text.count("\n", 0, match.start()) + 2, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    ]


BLOCKS = _blocks()


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 8


def _projection_reaches_the_floor(out: str) -> None:
    """The physics example prints RE before and after the solver projection."""
    before, after = (
        float(v) for v in out.replace("tensor(", "").replace(", dtype=torch.float64)", "").split()
    )
    assert after < 1e-8 < before  # the projection puts the residual at the solver's floor


# What a block prints, checked where the README states a result (marker in the block → check).
OUTPUT_CHECKS = {"ResidualPenalty(darcy": _projection_reaches_the_floor}


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(
    line: int,
    code: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PHYSGEN_RUNS_DIR", str(tmp_path / "runs"))
    capsys.readouterr()
    exec(compile(code, f"<README.md block at line {line}>", "exec"), {"__name__": "readme"})
    for marker, check in OUTPUT_CHECKS.items():
        if marker in code:
            check(capsys.readouterr().out)


def test_every_output_check_finds_its_block() -> None:
    assert all(any(marker in code for _, code in BLOCKS) for marker in OUTPUT_CHECKS)
