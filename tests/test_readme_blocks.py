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


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"line{line}" for line, _ in BLOCKS])
def test_readme_block_runs(
    line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PHYSGEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PHYSGEN_RUNS_DIR", str(tmp_path / "runs"))
    exec(compile(code, f"<README.md block at line {line}>", "exec"), {"__name__": "readme"})
